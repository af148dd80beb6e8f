"""Benchmark: wall time (per part and in all) and peak memory of each source notebook.

    python tests/benchmarks/bench_notebooks.py [ASSIGNMENT ...]      (or: make bench A=...)

Runs each reference notebook end to end in a fresh kernel, in the profile that
LEAKLAB_PROFILE selects (the Makefile sets ci), and prints one table per notebook:
seconds per part, total seconds, the kernel's peak resident memory (GiB) and, on a GPU,
peak CUDA memory allocated (GiB). Targets (ci: <= 3 min and <= 4 GiB per notebook on 2
cores) are compared and reported, never asserted: this is a benchmark, not a test.
"""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GPU_PROBE = ("import json, torch\n"
             "print('LEAKLAB_BENCH ' + json.dumps({'gpu_peak_gib': torch.cuda.max_memory_allocated() / 2**30 "
             "if torch.cuda.is_available() else None, 'device': torch.cuda.get_device_name() "
             "if torch.cuda.is_available() else 'cpu'}))")
TARGET_S, TARGET_GIB = 180, 4.0


def run_one(path: Path) -> dict:
    """Execute one notebook (in this process's child kernel) and measure it."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(GPU_PROBE))
    part, parts, last = "setup", {}, [0.0]
    labels = []
    for cell in nb.cells:
        m = re.match(r"##\s+(Part \d+)", cell.source) if cell.cell_type == "markdown" else None
        part = m.group(1) if m else part
        labels.append(part)

    def done(cell, cell_index, **_):                    # cells run one after another: time since the last
        now = time.perf_counter()
        parts[labels[cell_index]] = parts.get(labels[cell_index], 0.0) + now - last[0]
        last[0] = now

    with tempfile.TemporaryDirectory() as tmp:
        client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": tmp}},
                                on_cell_executed=done)
        t0 = last[0] = time.perf_counter()
        client.execute()
        total = time.perf_counter() - t0
    probe = next(json.loads(o["text"].split("LEAKLAB_BENCH ", 1)[1]) for o in nb.cells[-1].outputs
                 if o.get("name") == "stdout" and "LEAKLAB_BENCH" in o.get("text", ""))
    rss_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20    # KiB -> GiB (Linux)
    return {"parts": parts, "total_s": total, "kernel_peak_rss_gib": rss_gib, **probe}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print("LEAKLAB_RESULT " + json.dumps(run_one(Path(argv[1]))))
        return 0
    names = argv or sorted(p.name for p in (REPO / "source").iterdir() if p.is_dir())
    profile = os.environ.get("LEAKLAB_PROFILE", "(auto)")
    print(f"profile={profile}  cores={os.cpu_count()}  python={sys.version.split()[0]}")
    for name in names:
        path = REPO / "source" / name / f"{name}.ipynb"
        proc = subprocess.run([sys.executable, __file__, "--one", str(path)], capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LEAKLAB_RESULT ")), None)
        if proc.returncode or line is None:
            print(f"\n{name}: FAILED\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(line.split(" ", 1)[1])
        print(f"\n{name}  ({r['device']})")
        for part, secs in r["parts"].items():
            print(f"  {part:10s} {secs:8.1f} s")
        gpu = "" if r["gpu_peak_gib"] is None else f"   peak GPU memory {r['gpu_peak_gib']:.2f} GiB"
        print(f"  {'total':10s} {r['total_s']:8.1f} s   peak kernel memory {r['kernel_peak_rss_gib']:.2f} GiB{gpu}")
        if profile == "ci":
            ok = r["total_s"] <= TARGET_S and r["kernel_peak_rss_gib"] <= TARGET_GIB
            print(f"  ci target (<= {TARGET_S} s, <= {TARGET_GIB} GiB): {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
