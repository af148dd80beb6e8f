"""The grading pipeline: release, grade (collect, rebuild, autograde, feedback, export), demo.

Driven through nbgrader's Python API (``NbGraderAPI``), which is far faster than one
CLI process per step. Trusted grading lives in nbgrader's own extension points, configured in
``nbgrader_config.py``: each submission is rebuilt from the source (``submissions.py``), its
kernel runs in a bubblewrap sandbox (``sandbox.py``), and every test cell is decided in this
process by its judge from the kernel's recorded observations against the reference solution's
(``judge.py``, ``reference.py``); feedback is redacted (``feedback.py``). Each submission is
one task of ``cluster.py`` (in this process, on a Dask LocalCluster or on a Dask cluster),
graded in a scratch nbgrader course of its own.
"""
from __future__ import annotations

import contextlib
import csv
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import nbformat

from .publish import read_settings, stamp_file
from .reference import GRADING_ENV
from .submissions import SubmissionError, collect, find_notebook

REPO = Path(__file__).resolve().parent.parent
CONFIG_FILE = Path(__file__).resolve().parent / "nbgrader_config.py"

#: Environment of the grader's own process (the judges load data and build models in it): the
#: kernels' environment, with a non-interactive plotting backend.
GRADER_ENV = {**GRADING_ENV, "MPLBACKEND": "Agg"}


@dataclass
class GradeResult:
    """One student's result on one assignment.

    auto_score / auto_max: points of the automatically graded test cells; manual_pending:
    points of written answers that await a human (0 when the answer was left blank);
    cells: grade_id -> (score, max) for every graded cell; reasons: grade_id -> why a test
    cell earned 0 (the judge's message, the limit that stopped the kernel, or the error);
    error: why grading failed;
    warning: something the instructor should see although the grade stands (no feedback).
    seconds: wall time of the grading task; worker: ``host:pid`` that graded it; notebook,
    submitted, feedback_html: the autograded notebook, the rebuilt hand-in and the feedback
    (text) a task returns to the coordinator (:mod:`autograder.cluster`).
    """

    student: str
    assignment: str
    auto_score: float | None = None
    auto_max: float | None = None
    manual_pending: float | None = None
    cells: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    feedback: Path | None = None
    warning: str | None = None
    seconds: float | None = None
    worker: str | None = None
    notebook: str | None = field(default=None, repr=False)
    submitted: str | None = field(default=None, repr=False)
    feedback_html: str | None = field(default=None, repr=False)


def assignments_in(source_dir: Path) -> list[str]:
    """Assignment ids: the folders of ``source_dir`` that hold a notebook."""
    return sorted(p.name for p in source_dir.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def _config(course_root: Path, timeout: int | None = None, sandbox: bool = True):
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    cfg.CourseDirectory.root = str(course_root)
    cfg.SandboxedExecute.sandbox = sandbox
    if timeout is not None:
        cfg.Execute.timeout = timeout
    return cfg


@contextlib.contextmanager
def _grading_env() -> Iterator[None]:
    """Put the venv's bin/ on PATH (nbgrader runs `alembic`) and set :data:`GRADER_ENV`."""
    saved = dict(os.environ)
    os.environ.update(GRADER_ENV)
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _api(course_root: Path, timeout: int | None = None, sandbox: bool = True):
    from nbgrader.apps import NbGraderAPI

    return NbGraderAPI(config=_config(course_root, timeout, sandbox))


def _reason(result: dict) -> str:
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for key in ("SandboxUnavailable", "DeadKernelError", "Kernel died", "CellTimeoutError", "Error"):
        for ln in reversed(lines):
            if key in ln:
                return ln[:300]
    return lines[-1][:300] if lines else "nbgrader failed without a message"


def _prepare_course(course_root: Path, source_dir: Path, assignments: list[str], settings):
    """Copy the source notebooks into a course directory, stamp them with the course repository
    (:func:`autograder.publish.stamp`) and register them with nbgrader."""
    api = _api(course_root)
    for a in assignments:
        shutil.copytree(source_dir / a, course_root / "source" / a, dirs_exist_ok=True)
        stamp_file(course_root / "source" / a / f"{a}.ipynb", a, settings)
        res = api.generate_assignment(a, force=True)
        if not res["success"]:
            raise RuntimeError(f"nbgrader could not generate {a}: {_reason(res)}")
    return api


def release(source_dir: Path = REPO / "source", release_dir: Path = REPO / "release",
            assignments: list[str] | None = None, *, draft: bool = False, settings=None) -> list[Path]:
    """Regenerate ``release/<a>/`` from ``source/<a>/`` with nbgrader (idempotent).

    The notebooks are stamped with the course repository of ``course.toml``
    (:mod:`autograder.publish`: the first cell's install line, an "Open in Colab" badge).

    Args:
        source_dir: the instructor notebooks.
        release_dir: where ``<a>/`` folders are written (each replaced).
        assignments: which (default: all in ``source_dir``).
        draft: accept ``course.toml``'s placeholder address and build a draft release (no badge,
            a "Draft release" line, no install address).
        settings: an :class:`autograder.publish.Settings` to use instead of ``course.toml``'s.

    Returns:
        The written release folders.

    Raises:
        autograder.publish.CourseSettingsError: ``course.toml`` is missing or malformed, or holds the
            placeholder and ``draft`` is false.
        RuntimeError: nbgrader rejected a source notebook (the message says why).
    """
    settings = settings or read_settings(draft=draft)
    assignments = assignments or assignments_in(source_dir)
    written = []
    with tempfile.TemporaryDirectory(prefix="leaklab-release-") as tmp, _grading_env():
        course = Path(tmp)
        _prepare_course(course, source_dir, assignments, settings)
        for a in assignments:
            out = release_dir / a
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(course / "release" / a, out)
            written.append(out)
    return written


def _scores(course_root: Path, student: str, assignment: str) -> GradeResult:
    from nbgrader.api import Gradebook

    res = GradeResult(student, assignment, 0.0, 0.0, 0.0)
    with Gradebook(f"sqlite:///{course_root / 'gradebook.db'}") as gb:
        sub = gb.find_submission(assignment, student)
        for nb in sub.notebooks:
            for g in nb.grades:
                res.cells[g.name] = (None if g.needs_manual_grade else g.score, g.max_score)
                if g.needs_manual_grade:                      # a written answer awaiting a human
                    res.manual_pending += g.max_score
                elif g.cell.cell_type == "code":              # an automatically graded test cell
                    res.auto_score += g.score
                    res.auto_max += g.max_score
    return res


def grade(submissions: Path, out_dir: Path, source_dir: Path = REPO / "source",
          timeout: int | None = None, sandbox: bool = True, workers: int = 0,
          scheduler: str | None = None, progress: bool = False) -> list[GradeResult]:
    """Autograde every ``<student>/<assignment>/*.ipynb`` under ``submissions``.

    Each submission is one task (:func:`autograder.cluster.grade_submission`): rebuilt from the
    source (:func:`~autograder.submissions.read_submission`), executed in its own sandboxed
    kernel (:mod:`autograder.sandbox`) in a scratch nbgrader course, and every judged test cell
    decided in the grader from the kernel's observations against the reference's
    (:mod:`autograder.judge`, :mod:`autograder.reference`; the reference runs first, here, once
    per content hash). Writes ``out_dir/feedback/<student>/<assignment>.html`` (no hidden-test
    source or tracebacks), ``out_dir/grades.csv`` and ``out_dir/verdicts.csv``. A submission
    that cannot be graded (no or several notebooks, corrupt file, unknown assignment) is
    reported with its reason; a kernel stopped by a limit costs only the cells that did not
    run; everyone else is graded.

    Args:
        submissions: the collected submissions folder.
        out_dir: where feedback and the CSV go (created).
        source_dir: the instructor's source notebooks.
        timeout: per-cell wall-clock backstop in seconds (default: nbgrader_config.py's).
        sandbox: run kernels in bubblewrap; ``False`` only for a trusted local run.
        workers: 0 grades in this process; N > 0 on a LocalCluster of N processes.
        scheduler: a Dask scheduler's address (``tcp://HOST:PORT``) to grade on instead.
        progress: show a progress bar.

    Returns:
        One :class:`GradeResult` per (student, assignment) folder, sorted.

    Raises:
        SandboxUnavailable: ``sandbox`` and bubblewrap is missing or cannot run here.
        autograder.reference.ReferenceFailure: the reference solution fails its own judges (grading stops
            before anyone).
    """
    from .cluster import Task, run, source_files
    from .reference import lm_cache, readable, reference_for
    from .sandbox import check_bwrap

    if sandbox:
        check_bwrap()
    known = set(assignments_in(source_dir))
    found = collect(Path(submissions), known)
    out_dir = Path(out_dir)
    tasks, results = [], {}
    for n, (student, a, where, problem) in enumerate(found):
        if problem is None and a not in known:
            problem = f"unknown assignment {a!r}; expected one of {sorted(known) or 'none'}"
        if problem is None:
            try:
                tasks.append((n, Task(student, a, find_notebook(where, a).read_bytes(), feedback=True)))
                continue
            except SubmissionError as err:
                problem = str(err)
        results[n] = GradeResult(student, a, error=problem)
    used = sorted({t.assignment for _, t in tasks})
    settings = read_settings(draft=True)                  # stamped as release stamps them: same checksums
    files = {a: source_files(source_dir / a, settings) for a in used}
    with tempfile.TemporaryDirectory(prefix="leaklab-grade-") as tmp, _grading_env():
        config = _config(Path(tmp), timeout, sandbox)
        readable(lm_cache())                                 # a5's trained models, read by every kernel
        for a in used:                                       # the workers' stamped source: the same reference key
            for rel, data in files[a].items():
                (Path(tmp) / "source" / a / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / "source" / a / rel).write_bytes(data)
            reference_for(a, Path(tmp) / "source" / a / f"{a}.ipynb", config)
    graded = run([t for _, t in tasks], files, workers=workers, scheduler=scheduler, timeout=timeout,
                 sandbox=sandbox, progress=progress)
    for (n, _), r in zip(tasks, graded):
        if r.feedback_html is not None:
            target = out_dir / "feedback" / r.student / f"{r.assignment}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(r.feedback_html)
            r.feedback = target
        results[n] = r
    ordered = [results[n] for n in sorted(results)]
    write_csv(ordered, out_dir / "grades.csv")
    write_verdicts(ordered, out_dir / "verdicts.csv")
    return ordered


def _outcomes(course: Path, student: str, a: str) -> tuple[dict[str, str], str | None]:
    """From the autograded notebook: grade_id -> reason of every failed test cell, and why the
    sandbox stopped the kernel early (None if it did not)."""
    from .judge import FAILED
    from .sandbox import LIMIT_NOTICE

    path = course / "autograded" / student / a / f"{a}.ipynb"
    reasons, stopped = {}, None
    if not path.exists():
        return reasons, stopped
    for cell in nbformat.read(str(path), as_version=4).cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        for o in cell.get("outputs", []):
            if o.get("output_type") != "error":
                continue
            if o.get("ename") == LIMIT_NOTICE and stopped is None:
                stopped = f"stopped early, later cells score 0: {o.get('evalue')}"
            if gid and cell.metadata["nbgrader"].get("grade") and gid not in reasons:
                why = o.get("evalue") if o.get("ename") in (FAILED, LIMIT_NOTICE) else f"{o.get('ename')}: {o.get('evalue')}"
                reasons[gid] = str(why)[:300]
    return reasons, stopped


COLUMNS = ["assignment", "student", "auto_score", "auto_max", "manual_pending", "seconds", "status"]


def _row(r: GradeResult) -> list:
    fmt = lambda v: "" if v is None else f"{v:g}"
    status = f"NOT GRADED: {r.error}" if r.error else ("ok" if r.warning is None else f"ok; {r.warning}")
    secs = "" if r.seconds is None else f"{r.seconds:.0f}"
    return [r.assignment, r.student, fmt(r.auto_score), fmt(r.auto_max), fmt(r.manual_pending), secs, status]


def write_csv(results: list[GradeResult], path: Path) -> None:
    """Export one row per result with :data:`COLUMNS`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(_row(r) for r in results)


def write_verdicts(results: list[GradeResult], path: Path) -> None:
    """One row per graded cell: assignment, student, cell, points, max, and why it earned 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["assignment", "student", "cell", "points", "max", "reason"])
        for r in sorted(results, key=lambda r: (r.assignment, r.student)):
            for gid, (score, most) in sorted(r.cells.items()):
                points = "" if score is None else f"{score:g}"
                w.writerow([r.assignment, r.student, gid, points, f"{most:g}",
                            r.reasons.get(gid, "") if score == 0 else ("awaiting manual grading" if score is None else "")])


def format_table(results: list[GradeResult]) -> str:
    """A plain-text score table, one line per (assignment, student)."""
    ordered = sorted(results, key=lambda r: (r.assignment, r.student))
    rows = [["assignment", "student", "automatic", "of", "manual pending", "time (s)", "status"]] \
        + [_row(r) for r in ordered]
    widths = [max(len(str(row[i])) for row in rows) for i in range(6)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:6], widths)) + "  " + row[6] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def demo(assignments: list[str] | None = None, out_dir: Path | None = None,
         source_dir: Path = REPO / "source", release_dir: Path = REPO / "release",
         sandbox: bool = True) -> list[GradeResult]:
    """Grade the reference solution (student ``reference``) and the untouched release
    (student ``blank``) of each assignment in a temporary course.

    Raises:
        ValueError: an assignment has no source or no committed release.
    """
    assignments = assignments or assignments_in(source_dir)
    with tempfile.TemporaryDirectory(prefix="leaklab-demo-") as tmp:
        subs = Path(tmp) / "submissions"
        for a in assignments:
            src, rel = source_dir / a / f"{a}.ipynb", release_dir / a / f"{a}.ipynb"
            for path in (src, rel):
                if not path.exists():
                    raise ValueError(f"{path} is missing; run `python -m autograder release` first")
            for student, path in (("reference", src), ("blank", rel)):
                (subs / student / a).mkdir(parents=True)
                shutil.copyfile(path, subs / student / a / f"{a}.ipynb")
        return grade(subs, out_dir or Path(tmp) / "out", source_dir, sandbox=sandbox)
