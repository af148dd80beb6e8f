"""The instructor's workflow on a lasting course (autograder/course.py), with a two-part toy
assignment so every step runs in seconds: create the course, collect a Canvas-style zip with a
roster, grade (sandboxed, incrementally, surviving a crash), run nbgrader's own CLI on the
course (its feedback must not leak hidden tests), hand-grade as formgrader does, release
feedback after hand grading, export for the LMS."""
from __future__ import annotations

import csv
import html
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder import course as C
from autograder.sandbox import check_bwrap

A = "t1_toy"
SECRET = "TOPSECRET judge line: add(2, 3) must be 5"
PROBE_SECRET = "hidden probe input 40, 2"


def _meta(**nbg):
    return {"nbgrader": {"schema_version": 3, "locked": False, "solution": False, "grade": False, **nbg}}


def toy_source(folder: Path) -> Path:
    cells = [
        new_markdown_cell("# Toy assignment\nPart 1: `add`. Part 2: one written answer.",
                          metadata=_meta(grade_id="t1_header", locked=True)),
        new_code_cell("from leaklab.probe import probe", metadata=_meta(grade_id="t1_setup", locked=True)),
        new_code_cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
                      metadata=_meta(grade_id="t1_p1_add_solution", solution=True)),
        new_code_cell(
            "# Hidden test, Part 1\nfrom leaklab.probe import probe\n### BEGIN HIDDEN TESTS\n"
            f"with probe(\"t1_p1_add_hidden\") as p:\n    p[\"sum\"] = add(2, 3)\n    p[\"big\"] = add(40, 2)  # {PROBE_SECRET}\n"
            f"### BEGIN JUDGE\ndef judge(obs, ref):\n    assert obs[\"sum\"] == 5 and obs[\"big\"] == 42, \"{SECRET}\"\n"
            "### END JUDGE\n### END HIDDEN TESTS",
            metadata=_meta(grade_id="t1_p1_add_hidden", grade=True, locked=True, points=2)),
        new_markdown_cell("Why does `add` commute?", metadata=_meta(grade_id="t1_p2_prompt", locked=True)),
        new_markdown_cell("### BEGIN SOLUTION\nBecause addition of integers commutes.\n### END SOLUTION",
                          metadata=_meta(grade_id="t1_p2_written", grade=True, solution=True, points=3)),
    ]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    (folder / A).mkdir(parents=True)
    nbformat.write(nb, str(folder / A / f"{A}.ipynb"))
    return folder


def handin(course: Path, body: str, answer: str) -> str:
    nb = nbformat.read(str(course / "release" / A / f"{A}.ipynb"), as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "t1_p1_add_solution":
            cell.source = f"def add(a, b):\n    {body}"
        elif gid == "t1_p2_written":
            cell.source = answer
    return nbformat.writes(nb)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    check_bwrap()
    root = tmp_path_factory.mktemp("course")
    mp = pytest.MonkeyPatch()
    mp.setenv("LEAKLAB_REFERENCE_CACHE", str(root / "reference-cache"))
    path = C.init(root / "leaklab-course", source_dir=toy_source(root / "src"))
    download = root / "canvas.zip"
    with zipfile.ZipFile(download, "w") as z:
        z.writestr(f"doejane_1001_5001_{A}.ipynb", handin(path, "return a + b", "Addition commutes."))
        z.writestr(f"roebob_late_1002_5002_{A}-1.ipynb", handin(path, "return a - b", "It does not."))
        z.writestr("notes_from_the_lms.txt", "not a hand-in")
    roster = root / "roster.csv"
    roster.write_text("id,last_name,first_name\n1001,Doe,Jane\n1002,Roe,Bob\n1003,Poe,Ann\n")
    yield path, download, roster
    mp.undo()


def test_init_writes_an_nbgrader_course(course):
    path, _, _ = course
    assert (path / "release" / A / f"{A}.ipynb").exists() and (path / "source" / A / f"{A}.ipynb").exists()
    config = (path / "nbgrader_config.py").read_text()
    assert "load_subconfig" in config and "nbgrader_config.py" in config
    released = (path / "release" / A / f"{A}.ipynb").read_text()
    assert SECRET not in released and PROBE_SECRET not in released


def test_collect_grade_handgrade_feedback_export(course, tmp_path):
    path, download, roster = course
    report = C.collect(path, A, download, roster)
    assert sorted(report.collected) == ["1001", "1002"]
    assert report.unrecognised == ["canvas/notes_from_the_lms.txt"] and report.missing == ["1003"]
    assert (path / "originals" / "1002" / A / f"{A}-1.ipynb").exists()

    results = {r.student: r for r in C.grade(path)}
    assert (results["1001"].auto_score, results["1001"].auto_max, results["1001"].manual_pending) == (2, 2, 3)
    assert results["1002"].auto_score == 0 and results["1002"].error is None
    assert C.grade(path) == [], "an unchanged hand-in is not graded again"
    again = C.grade(path, students=["1002"])
    assert [r.student for r in again] == ["1002"] and again[0].auto_score == 0

    written, skipped = C.feedback(path)
    assert not written and set(skipped) == {f"1001/{A}", f"1002/{A}"}       # feedback waits for hand grading
    _, skipped = C.feedback(path, students=["1002"], allow_pending=True)
    page = (path / "feedback" / "1002" / A / f"{A}.html").read_text()
    assert "Awaiting grading" in page

    from nbgrader.api import Gradebook                  # hand grading, saved as formgrader's grade handler does
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        for student, points in (("1001", 3), ("1002", 1)):
            g = gb.find_grade("t1_p2_written", A, A, student)
            g.manual_score, g.needs_manual_grade = points, False
        gb.db.commit()
    written, skipped = C.feedback(path)
    assert len(written) == 2 and not skipped
    page = html.unescape((path / "feedback" / "1001" / A / f"{A}.html").read_text())
    assert "Addition commutes." in page and "Awaiting grading" not in page
    assert SECRET not in page and PROBE_SECRET not in page

    long_csv, wide_csv = C.export(path, tmp_path)
    rows = {r["student"]: r for r in csv.DictReader(open(wide_csv))}
    assert set(rows) == {"1001", "1002", "1003"}
    assert (rows["1001"][f"{A} total"], rows["1001"]["total"]) == ("5.0", "5.0")
    assert (rows["1001"][f"{A} t1_p1"], rows["1001"][f"{A} t1_p2"]) == ("2.0", "3.0")
    assert rows["1002"]["total"] == "1.0" and rows["1003"]["total"] == "0.0"
    assert rows["1003"]["status"] == f"{A}: no submission" and rows["1001"]["status"] == "ok"
    cells = list(csv.DictReader(open(long_csv)))
    assert {(r["student"], r["cell"], r["points"], r["kind"]) for r in cells} >= {
        ("1001", "t1_p1_add_hidden", "2", "auto"), ("1001", "t1_p2_written", "3", "manual")}


def test_nbgraders_own_cli_on_the_course_never_leaks_hidden_tests(course):
    path, download, roster = course
    if not (path / "autograded").exists():
        C.collect(path, A, download, roster)
        C.grade(path)
    nbgrader = str(Path(sys.executable).with_name("nbgrader"))
    for cmd in (["autograde", A, "--force", "--student", "1002"], ["generate_feedback", A, "--force"]):
        run = subprocess.run([nbgrader, *cmd], cwd=path, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    pages = list((path / "feedback").rglob("*.html"))
    assert pages
    for page in pages:
        text = html.unescape(page.read_text())
        assert SECRET not in text and PROBE_SECRET not in text and "def judge" not in text, page


def test_a_crash_mid_run_loses_nothing(course, monkeypatch):
    path, download, roster = course
    C.collect(path, A, download, roster)
    real = C._import
    def crash_on_1002(course, api, task, r):             # Ctrl-C in the coordinator while it writes 1002
        if task.student == "1002":
            raise KeyboardInterrupt
        return real(course, api, task, r)
    monkeypatch.setattr(C, "_import", crash_on_1002)
    with pytest.raises(KeyboardInterrupt):
        C.grade(path, force=True, workers=0)
    monkeypatch.setattr(C, "_import", real)
    state = C._load_state(path)
    assert f"{A}/1001" in state
    state.pop(f"{A}/1002", None)                         # as if 1002 had never been graded
    C._save_state(path, state)
    assert [r.student for r in C.grade(path, workers=0)] == ["1002"]   # the next run does only the rest


def test_bad_input_says_what_to_fix(course, tmp_path):
    path, download, _ = course
    with pytest.raises(C.CourseError, match="course init"):
        C.grade(tmp_path)
    bad = tmp_path / "roster.csv"
    bad.write_text("name\nJane\n")
    with pytest.raises(C.CourseError, match="'id' column"):
        C.collect(path, A, download, bad)
    with pytest.raises(C.CourseError, match="student_id"):
        C.collect(path, A, download, pattern=r"(?P<x>.*)")
    with pytest.raises(C.CourseError, match="not an assignment"):
        C.collect(path, "a9_nothing", download)


def test_the_course_commands(course, tmp_path):
    path, download, roster = course
    run = lambda *a: subprocess.run([sys.executable, "-m", "autograder", "course", *map(str, a)], capture_output=True,
                                    text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    out = run("collect", path, A, download, "--roster", roster)
    assert out.returncode == 0 and "collected 2 hand-ins" in out.stdout and "1003" in out.stdout, out.stderr[-1500:]
    out = run("grade", path)
    assert out.returncode == 0, out.stderr[-1500:]
    out = run("export", path, "-o", tmp_path)
    assert out.returncode == 0 and (tmp_path / "grades-lms.csv").exists(), out.stderr[-1500:]
    out = run("feedback", tmp_path / "not-a-course")
    assert out.returncode == 2 and "course init" in out.stderr
