"""Class-scale grading: the same N hand-ins graded in this process and on a Dask LocalCluster.

Prints, for each way, the wall time, notebooks/hour and the speed-up, and the grading
machinery's overhead per notebook: a task's wall time minus a bare nbclient run of the same
(reference) notebook in an ordinary kernel. The reference is computed first (not timed).

    .venv/bin/python tests/benchmarks/bench_grading.py a1_watermarking -n 4 --workers 2
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from autograder.pipeline import grade  # noqa: E402
from autograder.judge import kernel_source  # noqa: E402


def bare_run(source: Path) -> float:
    """Seconds of a plain nbclient execution of the source notebook (judges and oracle regions cut)."""
    from nbclient import NotebookClient

    nb = nbformat.read(str(source), as_version=4)
    for cell in nb.cells:
        cell.source = kernel_source(cell.source)
    start = time.monotonic()
    NotebookClient(nb, timeout=1800, kernel_name="python3", allow_errors=True).execute()
    return time.monotonic() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("assignment")
    p.add_argument("-n", type=int, default=4, help="hand-ins (copies of the reference)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    a = args.assignment
    source = REPO / "source" / a / f"{a}.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "subs"
        for i in range(args.n):
            (subs / f"s{i:03d}" / a).mkdir(parents=True)
            shutil.copyfile(source, subs / f"s{i:03d}" / a / f"{a}.ipynb")
        first = Path(tmp) / "warm"
        (first / "s000" / a).mkdir(parents=True)
        shutil.copyfile(source, first / "s000" / a / f"{a}.ipynb")
        grade(first, Path(tmp) / "out-warm")                     # the reference run, cached
        shutil.rmtree(first)
        bare = bare_run(source)
        rows = []
        for name, workers in (("in this process", 0), (f"LocalCluster, {args.workers} worker{'s' * (args.workers != 1)}", args.workers)):
            start = time.monotonic()
            results = grade(subs, Path(tmp) / f"out-{workers}", workers=workers)
            wall = time.monotonic() - start
            assert all(r.error is None and r.auto_score == r.auto_max for r in results), results
            per = statistics.median(r.seconds for r in results)
            rows.append((name, wall, 3600 * args.n / wall, per))
        print(f"{a}: {args.n} hand-ins; bare nbclient run of the notebook {bare:.1f} s")
        for name, wall, rate, per in rows:
            print(f"  {name:28s} {wall:7.1f} s  {rate:6.1f} notebooks/h  median task {per:5.1f} s  "
                  f"overhead {per - bare:+5.1f} s/notebook")
        print(f"  speed-up of the LocalCluster: {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
