"""Command line: `python -m autograder release | student-copy DIR | grade SUBMISSIONS_DIR | demo [-a ID] | course ...`.

`release` and `student-copy` stamp the notebooks with the course repository set in course.toml
(autograder/publish.py) and refuse its placeholder; `release --draft` builds a draft without it.

`course init|collect|grade|feedback|export COURSE ...` work on a lasting nbgrader course folder
(autograder/course.py): hand grading happens in between, in nbgrader's formgrader on that folder.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from . import course as courses
from .pipeline import demo, format_table, grade, release
from .publish import CourseSettingsError, read_settings, student_copy
from .sandbox import SandboxUnavailable, check_bwrap

LOUD = ("!" * 78 + "\nWARNING: grading WITHOUT the sandbox: student code runs with the grader's rights,\n"
        "can read every file the grader can and can change grades. Never do this with real submissions.\n" + "!" * 78)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module=r"nbgrader(\.|$)")      # SQLAlchemy SAWarnings from nbgrader's gradebook
    p = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("release", help="regenerate release/ from source/ with nbgrader")
    r.add_argument("-a", "--assignment", action="append", help="only this assignment (repeatable)")
    r.add_argument("--draft", action="store_true",
                   help="accept course.toml's placeholder repository: no Colab badge, no install address")
    sc = sub.add_parser("student-copy", help="build the public student copy (release/, lib/, README) in DIR")
    sc.add_argument("dir", type=Path, help="a new or empty folder (or a clone holding only .git)")
    sc.add_argument("-a", "--assignment", action="append", help="only this assignment (repeatable)")
    g = sub.add_parser("grade", help="autograde <student>/<assignment>/*.ipynb, write feedback and a CSV")
    g.add_argument("submissions", type=Path)
    g.add_argument("-o", "--out", type=Path, help="output folder (default: <submissions>-graded)")
    g.add_argument("--timeout", type=int, help="per-cell wall-clock backstop in seconds (default: nbgrader_config.py)")
    g.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run student kernels without bubblewrap (only for a trusted local run)")
    _parallel(g, default=0)
    d = sub.add_parser("demo", help="grade the reference solution and the blank release, print the table")
    d.add_argument("-a", "--assignment", action="append", help="only this assignment (repeatable)")
    d.add_argument("-o", "--out", type=Path, help="keep feedback and the CSV here")
    d.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="without bubblewrap: grade unsandboxed (refused while bubblewrap works)")
    k = sub.add_parser("course", help="a lasting nbgrader course: init, collect, grade, feedback, export")
    ksub = k.add_subparsers(dest="step", required=True)
    ki = ksub.add_parser("init", help="create the course folder from source/ (nbgrader layout, released)")
    ki.add_argument("course", type=Path)
    ki.add_argument("-a", "--assignment", action="append", help="only this assignment (repeatable)")
    kc = ksub.add_parser("collect", help="collect an LMS download (zip or folder) of one assignment")
    kc.add_argument("course", type=Path)
    kc.add_argument("assignment")
    kc.add_argument("download", type=Path)
    kc.add_argument("--roster", type=Path, help="CSV with an 'id' column: the class (non-submitters get 0)")
    kc.add_argument("--pattern", default=courses.CANVAS,
                    help="regex with (?P<student_id>...) and (?P<file_id>...) (default: Canvas's names)")
    kg = ksub.add_parser("grade", help="autograde new or changed hand-ins into the course's gradebook")
    kg.add_argument("course", type=Path)
    kg.add_argument("-a", "--assignment", action="append")
    kg.add_argument("--student", action="append", help="re-grade this student (repeatable)")
    kg.add_argument("--force", action="store_true", help="re-grade every hand-in")
    kg.add_argument("--timeout", type=int, help="per-cell wall-clock backstop in seconds (default: nbgrader_config.py)")
    kg.add_argument("--unsafe-no-sandbox", action="store_true",
                    help="run student kernels without bubblewrap (only for a trusted local run)")
    _parallel(kg, default=None)
    kf = ksub.add_parser("feedback", help="write feedback (after hand grading in formgrader)")
    kf.add_argument("course", type=Path)
    kf.add_argument("-a", "--assignment", action="append")
    kf.add_argument("--student", action="append")
    kf.add_argument("--allow-pending", action="store_true",
                    help="also for submissions with answers not yet hand-graded (marked 'awaiting grading')")
    ke = ksub.add_parser("export", help="grades-long.csv and grades-lms.csv (one row per student)")
    ke.add_argument("course", type=Path)
    ke.add_argument("-o", "--out", type=Path, help="folder for the CSVs (default: COURSE/export)")
    args = p.parse_args(argv)

    start = time.perf_counter()
    if args.cmd == "course" and args.step != "grade":
        return _course_step(args)
    if args.cmd in ("release", "student-copy"):
        try:
            if args.cmd == "release":
                for path in release(assignments=args.assignment, draft=args.draft):
                    print(f"wrote {path}")
            else:
                settings = read_settings()
                out = student_copy(args.dir, settings, assignments=args.assignment)
                print(f"wrote the student copy to {out}: commit and push it to {settings.repository} "
                      f"(branch {settings.branch})")
        except (CourseSettingsError, FileExistsError) as err:
            p.error(str(err))
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
        if args.cmd == "course":
            try:
                results = courses.grade(args.course, args.assignment, args.student, args.force, args.timeout, sandbox,
                                        workers=args.workers, scheduler=args.scheduler, progress=True)
            except courses.CourseError as err:
                p.error(str(err))
            print(format_table(results) if results else "nothing new to grade (use --student ID or --force to re-grade)")
            print(f"\n({time.perf_counter() - start:.0f} s); hand-grade in formgrader, then "
                  f"`python -m autograder course feedback {args.course}`")
        elif args.cmd == "grade":
            if not args.submissions.is_dir():
                p.error(f"{args.submissions} is not a folder of <student>/<assignment>/*.ipynb")
            out = args.out or args.submissions.with_name(args.submissions.name + "-graded")
            results = grade(args.submissions, out, timeout=args.timeout, sandbox=sandbox, workers=args.workers,
                            scheduler=args.scheduler, progress=True)
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


def _default_help() -> str:
    from .cluster import default_workers
    from .reference import KERNEL_THREADS

    return f"the cores / the {KERNEL_THREADS} threads of one kernel = {default_workers()} here"


def _parallel(parser, default: int | None) -> None:
    parser.add_argument("--workers", type=int, default=default,
                        help="grade on a Dask LocalCluster of N worker processes; 0 grades in this process "
                             f"(default: {_default_help() if default is None else default})")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="grade on an existing Dask cluster (its workers need this repository, bubblewrap, "
                             "the data and DASK_DISTRIBUTED__WORKER__DAEMON=False)")


def _course_step(args) -> int:
    try:
        if args.step == "init":
            path = courses.init(args.course, assignments=args.assignment)
            print(f"course ready in {path}: release/ holds what students get; collect hand-ins with "
                  f"`python -m autograder course collect {args.course} ASSIGNMENT DOWNLOAD --roster ROSTER.csv`")
        elif args.step == "collect":
            print(courses.collect(args.course, args.assignment, args.download, args.roster, args.pattern).summary())
        elif args.step == "feedback":
            written, skipped = courses.feedback(args.course, args.assignment, args.student, args.allow_pending)
            print(f"wrote {len(written)} feedback files under {Path(args.course) / 'feedback'}")
            for key, why in sorted(skipped.items()):
                print(f"  not written for {key}: {why}")
        elif args.step == "export":
            for path in courses.export(args.course, args.out or Path(args.course) / "export"):
                print(f"wrote {path}")
    except courses.CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
