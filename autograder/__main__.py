"""Command line: `python -m autograder release | grade SUBMISSIONS_DIR | demo [-a ID]`."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from .pipeline import demo, format_table, grade, release
from .sandbox import SandboxUnavailable, check_bwrap

LOUD = ("!" * 78 + "\nWARNING: grading WITHOUT the sandbox: student code runs with the grader's rights,\n"
        "can read every file the grader can and can change grades. Never do this with real submissions.\n" + "!" * 78)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module=r"nbgrader(\.|$)")      # SQLAlchemy SAWarnings from nbgrader's gradebook
    p = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("release", help="regenerate release/ from source/ with nbgrader")
    r.add_argument("-a", "--assignment", action="append", help="only this assignment (repeatable)")
    g = sub.add_parser("grade", help="autograde <student>/<assignment>/*.ipynb, write feedback and a CSV")
    g.add_argument("submissions", type=Path)
    g.add_argument("-o", "--out", type=Path, help="output folder (default: <submissions>-graded)")
    g.add_argument("--timeout", type=int, help="per-cell limit in seconds (default: nbgrader_config.py)")
    g.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run student kernels without bubblewrap (only for a trusted local run)")
    d = sub.add_parser("demo", help="grade the reference solution and the blank release, print the table")
    d.add_argument("-a", "--assignment", action="append", help="only this assignment (repeatable)")
    d.add_argument("-o", "--out", type=Path, help="keep feedback and the CSV here")
    d.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="without bubblewrap: grade unsandboxed (refused while bubblewrap works)")
    args = p.parse_args(argv)

    start = time.perf_counter()
    if args.cmd == "release":
        for path in release(assignments=args.assignment):
            print(f"wrote {path}")
        return 0
    sandbox = not args.unsafe_no_sandbox
    if args.cmd == "demo" and not sandbox:
        try:
            check_bwrap()
        except SandboxUnavailable:
            pass
        else:
            p.error("--unsafe-no-sandbox: bubblewrap works here, so the demo runs sandboxed; drop the flag")
    if not sandbox:
        print(LOUD, file=sys.stderr)
    try:
        if args.cmd == "grade":
            if not args.submissions.is_dir():
                p.error(f"{args.submissions} is not a folder of <student>/<assignment>/*.ipynb")
            out = args.out or args.submissions.with_name(args.submissions.name + "-graded")
            results = grade(args.submissions, out, timeout=args.timeout, sandbox=sandbox)
            print(format_table(results))
            print(f"\nfeedback and grades.csv in {out}  ({time.perf_counter() - start:.0f} s)")
        else:
            results = demo(args.assignment, args.out, sandbox=sandbox)
            print(format_table(results))
            print(f"\n({time.perf_counter() - start:.0f} s)")
    except SandboxUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not sandbox:
        print(LOUD, file=sys.stderr)
    for r in results:
        if r.warning:
            print(f"warning for {r.student} / {r.assignment}: {r.warning}", file=sys.stderr)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"could not grade {r.student} / {r.assignment}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
