"""Grading time per notebook before and after trusted grading (sandbox + observations + judges).

before: the notebook as it was before the probe/judge split (``git show REV:source/...``),
        executed by nbgrader's plain ``Execute`` in an ordinary kernel (TCP, no sandbox);
after:  today's source notebook, judges and oracle regions cut out, executed by ``SandboxedExecute``
        (bubblewrap, ipc, limits, victims served by the grader's oracle), then every judge run in
        this process on the recorded observations and the oracle's log.

Each is run ``--repeats`` times (interleaved, after one warm-up of each); the medians and
their ratio are printed. The reference solution is graded, so every cell runs.

    .venv/bin/python tests/benchmarks/bench_trusted_grading.py a1_watermarking --before 9c5721d
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from traitlets.config import Config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from autograder.reference import discard, run_source, self_check  # noqa: E402


def _config() -> Config:
    c = Config()
    c.Execute.timeout = 600
    c.Execute.kernel_name = "python3"
    return c


def before(nb) -> float:
    from nbgrader.preprocessors import Execute

    start = time.perf_counter()
    Execute(config=_config()).preprocess(nbformat.from_dict(nb), {"metadata": {"path": str(REPO)}})
    return time.perf_counter() - start


def after(nb) -> float:
    start = time.perf_counter()
    res, judges = run_source(nb, _config())                       # sandboxed, victims served by the oracle
    failed = self_check(res, judges)
    discard(res)
    if failed or res["leaklab"].get("stopped"):
        raise SystemExit(f"the reference failed: {failed} {res['leaklab'].get('stopped')}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("assignment", nargs="?", default="a1_watermarking")
    p.add_argument("--before", default="9c5721d", help="git revision before the probe/judge split")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    a = args.assignment
    old = nbformat.reads(subprocess.run(["git", "show", f"{args.before}:source/{a}/{a}.ipynb"], cwd=REPO,
                                        capture_output=True, text=True, check=True).stdout, as_version=4)
    new = nbformat.read(str(REPO / "source" / a / f"{a}.ipynb"), as_version=4)
    before(old), after(new)                                        # warm-up: caches, page cache
    times = {"before": [], "after": []}
    for _ in range(args.repeats):
        times["before"].append(before(old))
        times["after"].append(after(new))
    b, t = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"{a}: before {b:.1f} s  after {t:.1f} s  (median of {args.repeats}; "
          f"runs before {[round(x, 1) for x in times['before']]}, after {[round(x, 1) for x in times['after']]})")
    print(f"overhead {100 * (t / b - 1):+.1f}%")


if __name__ == "__main__":
    main()
