"""A lasting nbgrader course: create it, collect from an LMS, grade incrementally, hand-grade in
formgrader, release feedback, export to the LMS.

Layout (nbgrader's own, plus two LeakLab folders)::

    COURSE/
      nbgrader_config.py          loads autograder/nbgrader_config.py: sandbox, judges, oracle,
                                  hidden-test redaction, limits, the grader's environment --
                                  so `nbgrader autograde|generate_feedback|formgrader` here are safe
      source/<a>/<a>.ipynb        copied from this repository's source/ on first use
      release/<a>/                nbgrader generate_assignment (what students get)
      downloaded/<a>/archive/     LMS downloads (a zip or the files), nbgrader zip_collect's folder
      originals/<s>/<a>/<file>    each hand-in exactly as collected (never modified)
      submitted/<s>/<a>/<a>.ipynb the hand-in rebuilt from the source by grade_id (what nbgrader grades)
      autograded/ feedback/ gradebook.db    nbgrader's
      roster.csv                  the class (student ids), if one was given
      leaklab-graded.json         SHA-256 of every original already graded (incremental runs)

Every step is a function here and a ``python -m autograder course ...`` command; hand grading
is nbgrader's formgrader on the same folder (``cd COURSE && jupyter lab``, then the Formgrader
tab, or ``nbgrader formgrader``).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .cluster import Task
from .pipeline import (
    CONFIG_FILE,
    REPO,
    GradeResult,
    _api,
    _grading_env,
    _reason,
    _scores,
    assignments_in,
)
from .publish import read_settings, stamp_file
from .submissions import SubmissionError, find_notebook

#: Canvas's download names: ``lastfirst_[late_]<user id>_<file id>_<original name>``, as
#: nbgrader's FileNameCollectorPlugin named_regexp (``student_id`` and ``file_id`` groups,
#: matched against the file's whole path).
CANVAS = r"^(?:.*/)?(?P<name>[a-z]+)_(?:late_)?(?P<student_id>\d+)_\d+_(?P<file_id>[^/]+)$"
STATE = "leaklab-graded.json"


class CourseError(RuntimeError):
    """The course folder, a download or a roster is not usable; the message says how to fix it."""


COURSE_CONFIG = '''\
# nbgrader configuration of a LeakLab course (written by `python -m autograder course init`).
# Everything that keeps grading safe -- the sandbox, the judges, the oracle, hidden-test
# redaction in feedback, limits, the grader's environment -- comes from LeakLab's own
# configuration, loaded below, so nbgrader's CLI and formgrader on this folder are as safe as
# `python -m autograder course ...`. Add course settings (late penalties, db_url, ...) after it.
import sys
sys.path.insert(0, {repo!r})
c = get_config()  # noqa: F821
load_subconfig({config!r})  # noqa: F821
c.CourseDirectory.root = {root!r}
'''


def _course(course: Path) -> Path:
    course = Path(course).resolve()
    if not (course / "nbgrader_config.py").is_file():
        raise CourseError(f"{course} is not a LeakLab course (no nbgrader_config.py); create it with "
                          f"`python -m autograder course init {course}`")
    return course


def init(course: Path, source_dir: Path = REPO / "source", assignments: list[str] | None = None) -> Path:
    """Create (or complete) the course folder ``course`` from ``source_dir``.

    Writes ``nbgrader_config.py``, copies each assignment's source that the course lacks (an
    instructor's edited copy is never overwritten), stamps the copy with the course repository of
    ``course.toml`` (:mod:`autograder.publish`; a draft while it holds the placeholder) and releases
    it with nbgrader.

    Returns:
        The course folder (absolute).

    Raises:
        CourseError: an unknown assignment. RuntimeError: nbgrader rejected a source notebook.
    """
    course = Path(course).resolve()
    known = assignments_in(source_dir)
    wanted = assignments or known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise CourseError(f"no such assignment in {source_dir}: {unknown}; expected some of {known}")
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(COURSE_CONFIG.format(repo=str(REPO), config=str(CONFIG_FILE),
                                                                     root=str(course)))
    settings = read_settings(draft=True)
    with _grading_env():
        api = _api(course)
        for a in wanted:
            if not (course / "source" / a).exists():
                shutil.copytree(source_dir / a, course / "source" / a)
                stamp_file(course / "source" / a / f"{a}.ipynb", a, settings)
            res = api.generate_assignment(a, force=True)
            if not res["success"]:
                raise RuntimeError(f"nbgrader could not release {a}: {_reason(res)}")
    return course


def read_roster(path: Path) -> list[dict[str, str]]:
    """Students from a CSV with an ``id`` (or ``student_id``) column; optional ``first_name``,
    ``last_name``, ``email``.

    Raises:
        CourseError: no id column, an empty or duplicate id.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    key = next((k for k in ("id", "student_id") if rows and k in rows[0]), None)
    if key is None:
        raise CourseError(f"{path}: a roster needs an 'id' column (one student id per row)")
    students, seen = [], set()
    for i, row in enumerate(rows, start=2):
        sid = (row.get(key) or "").strip()
        if not sid or sid in seen:
            raise CourseError(f"{path}, line {i}: {'empty' if not sid else 'duplicate'} student id {sid!r}")
        seen.add(sid)
        students.append({"id": sid, **{k: (row.get(k) or "").strip() or None
                                       for k in ("first_name", "last_name", "email")}})
    return students


@dataclass
class CollectReport:
    """What :func:`collect` did: student id -> file copied into ``originals/``; files it could not
    attribute (never silently dropped); roster students without a hand-in; hand-ins of ids not
    on the roster."""

    collected: dict[str, str] = field(default_factory=dict)
    unrecognised: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    not_on_roster: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"collected {len(self.collected)} hand-ins"]
        for what, items in (("files not recognised (not collected)", self.unrecognised),
                            ("on the roster, no hand-in", self.missing), ("not on the roster", self.not_on_roster)):
            if items:
                lines.append(f"{what}: {', '.join(items)}")
        return "\n".join(lines)


def collect(course: Path, assignment: str, download: Path, roster: Path | None = None,
            pattern: str = CANVAS) -> CollectReport:
    """Collect an LMS download of ``assignment`` (a zip, or a folder of files) into ``originals/``
    with nbgrader's ``zip_collect`` (its FileNameCollector, ``named_regexp = pattern``).

    A later download replaces a student's earlier hand-in. With ``roster``, every student on it
    is registered in the gradebook (so non-submitters are exported with 0) and a copy is kept
    as ``COURSE/roster.csv``.

    Raises:
        CourseError: not a course, an unknown assignment, a missing download, a bad roster or pattern.
    """
    from nbgrader.api import Gradebook
    from nbgrader.apps import ZipCollectApp

    course = _course(course)
    if not (course / "source" / assignment).is_dir():
        raise CourseError(f"{assignment!r} is not an assignment of {course}; "
                          f"it has {assignments_in(course / 'source')}")
    download = Path(download)
    if not download.exists():
        raise CourseError(f"{download} does not exist (expected the LMS's zip or a folder of its files)")
    try:
        named = re.compile(pattern)
    except re.error as err:
        raise CourseError(f"bad --pattern {pattern!r}: {err}") from None
    if not {"student_id", "file_id"} <= set(named.groupindex):
        raise CourseError("--pattern needs the named groups (?P<student_id>...) and (?P<file_id>...)")
    students = read_roster(roster) if roster else None
    archive = course / "downloaded" / assignment / "archive"
    shutil.rmtree(archive.parent, ignore_errors=True)
    archive.mkdir(parents=True)
    if download.is_dir():
        for f in sorted(download.rglob("*")):
            if f.is_file():
                shutil.copy2(f, archive / f.name)
    elif zipfile.is_zipfile(download):
        shutil.copy2(download, archive / download.name)
    else:
        raise CourseError(f"{download} is neither a folder nor a zip archive")
    with _grading_env():
        cfg = _api(course).config
        cfg.CourseDirectory.submitted_directory = "originals"
        cfg.ZipCollectApp.force = True
        cfg.ZipCollectApp.strict = False
        cfg.FileNameCollectorPlugin.named_regexp = pattern
        cfg.FileNameCollectorPlugin.valid_ext = [".ipynb"]
        app = ZipCollectApp(config=cfg)
        app.initialize([assignment])
        app.init_plugins()
        app.extract_archive_files()
        app.process_extracted_files()
        extracted = course / "downloaded" / assignment / "extracted"
        report = CollectReport()
        for f in sorted(p for p in extracted.rglob("*") if p.is_file()):
            info = app.collector_plugin_inst.collect(str(f))
            if info:
                report.collected[info["student_id"]] = f.name
            else:
                report.unrecognised.append(str(f.relative_to(extracted)))
        if students is not None:
            with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
                for s in students:
                    gb.update_or_create_student(s["id"], first_name=s["first_name"], last_name=s["last_name"],
                                                email=s["email"])
            shutil.copyfile(roster, course / "roster.csv")
            ids = {s["id"] for s in students}
            report.missing = sorted(ids - set(report.collected))
            report.not_on_roster = sorted(set(report.collected) - ids)
    return report


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_state(course: Path) -> dict[str, str]:
    path = course / STATE
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(course: Path, state: dict[str, str]) -> None:
    tmp = course / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, course / STATE)                      # atomic: a crash keeps the old or the new state


def handins(course: Path, assignments: list[str] | None = None) -> list[tuple[str, str, Path]]:
    """``(student, assignment, folder)`` of every hand-in in ``originals/``, sorted."""
    root = course / "originals"
    if not root.is_dir():
        return []
    out = []
    for s in sorted(p for p in root.iterdir() if p.is_dir()):
        for a in sorted(p for p in s.iterdir() if p.is_dir()):
            if assignments is None or a.name in assignments:
                out.append((s.name, a.name, a))
    return out


def grade(course: Path, assignments: list[str] | None = None, students: list[str] | None = None,
          force: bool = False, timeout: int | None = None, sandbox: bool = True, workers: int | None = None,
          scheduler: str | None = None, progress: bool = False) -> list[GradeResult]:
    """Autograde the hand-ins in ``originals/`` into the course's gradebook, incrementally and
    in parallel.

    Each hand-in is one task (:func:`autograder.cluster.grade_submission`) graded in a scratch
    course on a worker; this process is the gradebook's only writer: it imports each result
    the moment it arrives (nbgrader's ``SaveAutoGrades`` and ``AssignLatePenalties`` on the
    task's autograded notebook, which goes to ``autograded/``) and records its hash in
    ``leaklab-graded.json``, so a crash or Ctrl-C loses nothing graded and the next run does
    the rest. A hand-in whose bytes were graded before is skipped unless ``force`` or its
    student is in ``students``. nbgrader keeps one submission per (student, assignment): a
    re-grade replaces its automatic scores and keeps the hand grades of unchanged answers.

    Args:
        workers: LocalCluster worker processes (None: :func:`autograder.cluster.default_workers`;
            0: in this process). scheduler: grade on an existing Dask cluster instead.
        progress: show a progress bar with an ETA.

    Returns:
        One :class:`GradeResult` per hand-in graded in this run (skipped ones are not listed).

    Raises:
        CourseError: not a course. SandboxUnavailable: ``sandbox`` and no bubblewrap.
        autograder.reference.ReferenceFailure: the reference solution fails its own judges.
    """
    from .cluster import Task, default_workers, run, source_files
    from .reference import lm_cache, readable, reference_for
    from .sandbox import check_bwrap

    course = _course(course)
    if sandbox:
        check_bwrap()
    known = set(assignments_in(course / "source"))
    state = _load_state(course)
    tasks, results = [], []
    for s, a, folder in handins(course, assignments):
        if students and s not in students:
            continue
        if a not in known:
            results.append(GradeResult(s, a, error=f"unknown assignment {a!r}"))
            continue
        try:
            original = find_notebook(folder, a)
        except SubmissionError as err:
            results.append(GradeResult(s, a, error=str(err)))
            continue
        if not force and not students and state.get(f"{a}/{s}") == _hash(original) \
                and (course / "autograded" / s / a).is_dir():
            continue
        ts = original.parent / "timestamp.txt"
        tasks.append(Task(s, a, original.read_bytes(), ts.read_text().strip() if ts.exists() else None))
    if not tasks:
        return results
    used = sorted({t.assignment for t in tasks})
    with _grading_env():
        api = _api(course, timeout, sandbox)
        readable(lm_cache())
        for a in used:                                   # before any task: a broken reference stops everything
            reference_for(a, course / "source" / a / f"{a}.ipynb", api.config)

    def record(task: Task, r: GradeResult) -> None:
        if r.error is None:
            with _grading_env():
                imported = _import(course, api, task, r)
            state[f"{task.assignment}/{task.student}"] = hashlib.sha256(task.data).hexdigest()
            _save_state(course, state)
            r = imported
        results.append(r)

    files = {a: source_files(course / "source" / a) for a in used}
    run(tasks, files, workers=default_workers() if workers is None else workers, scheduler=scheduler,
        timeout=timeout, sandbox=sandbox, on_result=record, progress=progress)
    return results


def _import(course: Path, api, task: Task, r: GradeResult) -> GradeResult:
    """Write one task's result into the course: ``submitted/`` and ``autograded/`` notebooks and
    the gradebook's automatic scores (nbgrader's own SaveAutoGrades/AssignLatePenalties)."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import AssignLatePenalties, SaveAutoGrades
    from nbgrader.utils import parse_utc

    s, a = task.student, task.assignment
    for folder, text in (("submitted", r.submitted), ("autograded", r.notebook)):
        dest = course / folder / s / a
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        (dest / f"{a}.ipynb").write_text(text)
        if task.timestamp:
            (dest / "timestamp.txt").write_text(task.timestamp)
    db_url = f"sqlite:///{course / 'gradebook.db'}"
    with Gradebook(db_url) as gb:
        gb.update_or_create_student(s)
        stamp = {"timestamp": parse_utc(task.timestamp)} if task.timestamp else {}
        gb.update_or_create_submission(a, s, **stamp)
    nb = nbformat.reads(r.notebook, as_version=4)
    resources = {"nbgrader": {"assignment": a, "student": s, "notebook": a, "db_url": db_url}}
    for pp in (SaveAutoGrades, AssignLatePenalties):
        nb, resources = pp(config=api.config).preprocess(nb, resources)
    graded = _scores(course, s, a)
    graded.reasons, graded.warning, graded.seconds, graded.worker = r.reasons, r.warning, r.seconds, r.worker
    return graded


def feedback(course: Path, assignments: list[str] | None = None, students: list[str] | None = None,
             allow_pending: bool = False) -> tuple[list[Path], dict[str, str]]:
    """Generate feedback (nbgrader's, redacted: no hidden tests) for every autograded submission.

    Feedback waits for hand grading: a submission with answers not yet graded in formgrader is
    skipped with the reason, unless ``allow_pending`` (its pending answers then say "awaiting
    grading" in the feedback instead of showing a bare 0).

    Returns:
        ``(feedback files written, "student/assignment" -> why skipped)``.
    """
    from nbgrader.api import Gradebook

    course = _course(course)
    written, skipped = [], {}
    with _grading_env():
        api = _api(course)
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            subs = [(s.student.id, a.name, s.needs_manual_grade)
                    for a in gb.assignments for s in a.submissions
                    if (assignments is None or a.name in assignments) and (students is None or s.student.id in students)]
        for s, a, pending in sorted(subs):
            if pending and not allow_pending:
                skipped[f"{s}/{a}"] = "awaiting hand grading in formgrader (or pass --allow-pending)"
                continue
            res = api.generate_feedback(a, s, force=True)
            html = course / "feedback" / s / a / f"{a}.html"
            if res["success"] and html.exists():
                written.append(html)
            else:
                skipped[f"{s}/{a}"] = f"nbgrader could not write feedback: {_reason(res)}"
    return written, skipped


def _part(grade_id: str) -> str:
    """``a1_p4_verify_hidden`` -> ``a1_p4`` (the part a cell belongs to; the id itself otherwise)."""
    m = re.match(r"^([a-z]\d+_p\d+)_", grade_id)
    return m.group(1) if m else grade_id


def export(course: Path, out_dir: Path) -> tuple[Path, Path]:
    """Write ``grades-long.csv`` (one row per graded cell: automatic and hand points) and
    ``grades-lms.csv`` (one row per student: per-part and per-assignment points and a total,
    Canvas/Moodle-friendly) into ``out_dir``. Students of the roster without a hand-in get 0
    and the status "no submission".

    Returns:
        ``(long CSV, wide CSV)``.
    """
    from nbgrader.api import Gradebook, MissingEntry

    course = _course(course)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    long_path, wide_path = out_dir / "grades-long.csv", out_dir / "grades-lms.csv"
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assignments = sorted(a.name for a in gb.assignments)
        parts = {a: sorted({_part(c.name) for nb in gb.find_assignment(a).notebooks
                            for c in nb.grade_cells}) for a in assignments}
        rows, wide = [], {}
        for student in sorted(gb.students, key=lambda s: s.id):
            line = {"student": student.id, "last_name": student.last_name or "", "first_name": student.first_name or ""}
            total, statuses = 0.0, []
            for a in assignments:
                try:
                    sub = gb.find_submission(a, student.id)
                except MissingEntry:
                    for p in parts[a]:
                        line[f"{a} {p}"] = 0
                    line[f"{a} total"] = 0
                    statuses.append(f"{a}: no submission")
                    continue
                per = dict.fromkeys(parts[a], 0.0)
                for nb in sub.notebooks:
                    for g in nb.grades:
                        score = None if g.needs_manual_grade else g.score
                        rows.append([a, student.id, g.name, _part(g.name), "" if score is None else f"{score:g}",
                                     f"{g.max_score:g}", "manual" if g.cell.cell_type == "markdown" else "auto",
                                     "awaiting hand grading" if score is None else ""])
                        per[_part(g.name)] += score or 0.0
                for p, v in per.items():
                    line[f"{a} {p}"] = round(v, 4)
                line[f"{a} total"] = round(sum(per.values()) - (sub.late_submission_penalty or 0.0), 4)
                total += line[f"{a} total"]
                if sub.needs_manual_grade:
                    statuses.append(f"{a}: awaiting hand grading")
            line["total"] = round(total, 4)
            line["status"] = "; ".join(statuses) or "ok"
            wide[student.id] = line
    with open(long_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["assignment", "student", "cell", "part", "points", "max", "kind", "status"])
        w.writerows(rows)
    columns = ["student", "last_name", "first_name"] + [f"{a} {p}" for a in assignments for p in parts[a]] \
        + [f"{a} total" for a in assignments] + ["total", "status"]
    with open(wide_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(wide[s] for s in sorted(wide))
    return long_path, wide_path
