"""GPU check: notebooks on CUDA, and the a1 `full` profile's training cost. Prints figures.

    python tests/benchmarks/gpu_check.py [--epochs-measured N] [--notebook A --profile P]

1. Runs every code cell of the a1 source notebook (solutions, visible and hidden tests)
   in one namespace on the GPU in the `ci` profile: the same code path as on a CPU, now
   with CUDA tensors and bfloat16 autocast. Prints Table 1 and whether every test passed.
   With --notebook, runs that notebook instead in --profile and prints its tables, the
   wall time per part and the peak GPU memory.
2. Times the `full` profile's training step: ResNet-18 on CIFAR-10-shaped inputs
   (45,000 + trigger images of 3x32x32, batch 128) for a few epochs, and reports seconds
   per epoch and peak GPU memory, then the estimated GPU time of the whole a1 `full` run.
   The inputs are random tensors: CIFAR-10 cannot be downloaded on an offline machine, and
   the cost of an epoch does not depend on the pixel values. Accuracy is not measured here.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_a1_ci_on_gpu() -> dict:
    import torch

    os.environ["LEAKLAB_PROFILE"] = "ci"
    nb = json.loads((REPO / "source" / "a1_watermarking" / "a1_watermarking.ipynb").read_text())
    ns: dict = {"display": lambda *a, **k: None}
    failed, t0 = [], time.perf_counter()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id", "")
        source = "".join(cell["source"])
        try:
            exec(compile(source, gid or "cell", "exec"), ns)
        except Exception:                                   # report and go on, like nbgrader
            failed.append((gid or source[:40], traceback.format_exc(limit=2)[-400:]))
    ev = ns["evaluate"]
    split, mk = ns["split"], ns["mk"]
    table = {name: (round(ev(m, split.test), 4), round(ev(m, (mk.triggers, mk.labels)), 4))
             for name, m in {"No-WM": ns["no_wm"], **ns["marked"]}.items()}
    return {"device": str(ns["device"]), "seconds": round(time.perf_counter() - t0, 1), "failed": failed,
            "table1_test_trigger": table, "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None}


def run_notebook(name: str, profile: str) -> dict:
    """Execute a source notebook's code cells in one namespace; tables are printed."""
    import re

    import torch

    os.environ["LEAKLAB_PROFILE"] = profile
    nb = json.loads((REPO / "source" / name / f"{name}.ipynb").read_text())
    def show(obj, *_, **__):
        print(getattr(obj, "data", obj).to_string() if hasattr(getattr(obj, "data", obj), "to_string") else obj)
    ns: dict = {"display": show}
    failed, parts, part = [], {}, "setup"
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t_all = time.perf_counter()
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        m = re.match(r"##\s+(Part \d+)", source) if cell["cell_type"] == "markdown" else None
        part = m.group(1) if m else part
        if cell["cell_type"] != "code":
            continue
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id", "")
        t = time.perf_counter()
        try:
            exec(compile(source, gid or "cell", "exec"), ns)
        except Exception:
            failed.append((gid or source[:40], traceback.format_exc(limit=2)[-400:]))
        parts[part] = round(parts.get(part, 0.0) + time.perf_counter() - t, 1)
    return {"notebook": name, "profile": profile, "seconds": round(time.perf_counter() - t_all, 1), "parts": parts,
            "failed": failed, "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)
            if torch.cuda.is_available() else None}


def time_full_profile(epochs: int) -> dict:
    import torch
    from torch.utils.data import TensorDataset

    from leaklab.config import get_profile
    from leaklab.models import build_model
    from leaklab.train import fit

    p = get_profile("full")
    n = p.n_train + p.n_triggers * p.trigger_repeats                       # marking data (examples)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
    model = build_model(p.model, 3, 10, 32, seed=0).cuda()
    torch.cuda.reset_peak_memory_stats()
    fit(model, TensorDataset(*(t[:2048] for t in data.tensors)), epochs=1, lr=p.lr, batch_size=p.batch_size)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fit(model, data, epochs=epochs, lr=p.lr, batch_size=p.batch_size)
    torch.cuda.synchronize()
    per_epoch = (time.perf_counter() - t0) / epochs
    per_example = per_epoch / n
    total_examples = ((p.epochs * p.n_train) * 2 + p.epochs * p.n_attacker   # No-WM, Clean-A, Clean-B
                      + (p.epochs * n) + (p.pretrained_epochs * n)             # FROMSCRATCH, PRETRAINED
                      + 8 * p.finetune_epochs * p.n_attacker)                  # 4 removal attacks on each
    return {"gpu": torch.cuda.get_device_name(), "examples_per_epoch": n, "seconds_per_epoch": round(per_epoch, 2),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "estimated_a1_full_training_minutes": round(per_example * total_examples / 60, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs-measured", type=int, default=2, help="0 skips the full-profile timing")
    ap.add_argument("--notebook", help="run this source notebook instead of a1 in ci")
    ap.add_argument("--profile", default="full")
    args = ap.parse_args()
    if args.notebook:
        print("NOTEBOOK " + json.dumps(run_notebook(args.notebook, args.profile)), flush=True)
        return
    print("A1_CI_ON_GPU " + json.dumps(run_a1_ci_on_gpu()), flush=True)
    if args.epochs_measured > 0:
        print("FULL_PROFILE_TIMING " + json.dumps(time_full_profile(args.epochs_measured)), flush=True)


if __name__ == "__main__":
    main()
