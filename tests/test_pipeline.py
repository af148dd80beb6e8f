"""The autograder on a batch of real-looking submissions, graded once (module fixture).

Invariant 2 (the blank release earns 0 on every test cell) and invariant 1 through
nbgrader (the reference, even renamed, with a duplicated cell, a deleted test cell, a
foreign kernelspec and stderr noise in test cells, earns every point),
plus a kernel that dies (graded on the cells that ran, with the reason) and the submissions
that cannot be graded: a corrupt file, no notebook.
"""
from __future__ import annotations

import copy
import csv
import html as _html
import subprocess
import sys

import nbformat
import pytest

from kernel import grade_id, is_test, read

A = "a1_watermarking"


def _messy_reference(src: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(src)
    nb.metadata["kernelspec"] = {"name": "conda-env-old-py", "display_name": "Old", "language": "python"}
    i = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "a1_p1_commitment_solution")
    sol = nb.cells[i]
    # commit warns on stderr every call: test cells that call it print to stderr
    sol.source = sol.source.replace('    ### BEGIN SOLUTION\n    if nonce is None:',
                                    '    ### BEGIN SOLUTION\n    import sys, warnings; warnings.warn("slow hash"); '
                                    'print("note", file=sys.stderr)\n    if nonce is None:', 1)
    nb.cells.insert(i + 1, copy.deepcopy(sol))                       # a duplicated cell (same grade_id)
    nb.cells = [c for c in nb.cells if grade_id(c) != "a1_p5_finetune_visible"]   # a deleted test cell
    return nb


@pytest.fixture(scope="module")
def graded(repo, tmp_path_factory):
    from autograder.pipeline import grade

    subs = tmp_path_factory.mktemp("submissions")
    src = read(repo / "source" / A / f"{A}.ipynb")
    def put(student, name, nb=None, text=None):
        d = subs / student / A
        d.mkdir(parents=True)
        if nb is not None:
            nbformat.write(nb, str(d / name))
        else:
            (d / name).write_text(text)
    put("reference", f"Copy of {A}.ipynb", _messy_reference(src))
    put("blank", f"{A}.ipynb", read(repo / "release" / A / f"{A}.ipynb"))
    dies = copy.deepcopy(src)
    dies.cells.insert(2, nbformat.v4.new_code_cell("import os\nos._exit(1)"))
    put("dies", f"{A}.ipynb", dies)
    put("corrupt", f"{A}.ipynb", text='{"cells": [ this is not json')
    put("nofile", "answers.txt", text="I did it on paper")
    # several quirks of real files at once, in the flat layout <student>/<notebook> (no assignment folder)
    quirky = read(repo / "release" / A / f"{A}.ipynb")
    quirky.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2}}  # Colab
    quirky.cells.insert(1, nbformat.v4.new_markdown_cell("# My notes"))
    quirky.cells[1]["cell_type"] = "heading"                                   # a v3 cell type
    bonus = nbformat.v4.new_code_cell("bonus = 1")
    bonus.metadata["nbgrader"] = {"grade_id": "my_bonus", "grade": True, "points": 5, "solution": False,
                                  "locked": False, "schema_version": 3}
    quirky.cells.append(bonus)                                                 # an unknown grade_id
    quirky.cells.append(nbformat.v4.new_code_cell("print('\\n'.join(In))"))  # prints every cell run, hidden tests too
    (subs / "quirky").mkdir()
    (subs / "quirky" / f"{A} (2).ipynb").write_bytes(b"\xef\xbb\xbf" + nbformat.writes(quirky).encode())  # BOM
    put("stale", f"{A}.ipynb", read(repo / "release" / A / f"{A}.ipynb"))
    nbformat.write(src, str(subs / "stale" / A / f"Copy of {A}.ipynb"))
    fresh = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source) for c in src.cells
                                            if c.cell_type == "code" and not is_test(c)])
    put("fresh", "hw1.ipynb", fresh)
    (subs / "__MACOSX" / "reference").mkdir(parents=True)
    out = tmp_path_factory.mktemp("graded")
    results = {r.student: r for r in grade(subs, out)}             # nbgrader_config.py's per-cell limit
    return results, out, src


def test_reference_gets_every_automatic_point(graded):
    results, _, _ = graded
    r = results["reference"]
    assert r.error is None, r.error
    assert (r.auto_score, r.auto_max) == (25, 25), r.cells
    assert r.manual_pending == 3                              # the written answer awaits a human


def test_blank_release_gets_zero_on_every_test_cell(graded):
    results, _, src = graded
    r = results["blank"]
    assert r.error is None, r.error
    tests = {grade_id(c) for c in src.cells if is_test(c)}
    assert tests <= set(r.cells)
    assert {gid: r.cells[gid][0] for gid in tests} == dict.fromkeys(tests, 0)
    assert (r.auto_score, r.manual_pending) == (0, 0)


def test_broken_submissions_are_reported_and_do_not_stop_the_batch(graded):
    results, out, _ = graded
    dies = results["dies"]
    assert dies.error is None and dies.auto_score == 0 and dies.warning.startswith("stopped early"), \
        (dies.error, dies.warning)
    assert "not a readable notebook" in results["corrupt"].error
    assert "no notebook for a1_watermarking" in results["nofile"].error
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert sorted(r["student"] for r in rows) == ["blank", "corrupt", "dies", "fresh", "nofile", "quirky",
                                                  "reference", "stale"]          # no row for __MACOSX
    statuses = {r["student"]: r["status"] for r in rows}
    assert statuses["reference"] == statuses["blank"] == statuses["quirky"] == "ok"
    assert statuses["dies"].startswith("ok; stopped early")
    assert all(statuses[s].startswith("NOT GRADED") for s in ("corrupt", "nofile", "stale", "fresh"))
    assert "several notebooks could be" in results["stale"].error
    assert "lacks the answer cells" in results["fresh"].error


def test_quirky_files_are_repaired_and_graded(graded):
    results, _, _ = graded
    r = results["quirky"]
    assert r.error is None and r.warning is None, (r.error, r.warning)
    assert (r.auto_score, r.auto_max) == (0, 25) and "my_bonus" not in r.cells
    assert r.feedback.exists()


def test_feedback_shows_no_hidden_tests(graded, repo):
    results, _, src = graded
    public = (repo / "release" / A / f"{A}.ipynb").read_text()
    hidden = [c.source for c in src.cells if "### BEGIN HIDDEN TESTS" in c.source]
    secrets = {ln.strip() for s in hidden for ln in s.split("### BEGIN HIDDEN TESTS")[1].splitlines()
               if len(ln.strip()) > 25 and "END HIDDEN" not in ln and ln.strip() not in public}
    assert len(secrets) > 20
    for student in ("reference", "blank", "quirky"):
        text = _html.unescape(results[student].feedback.read_text())
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{student}'s feedback shows hidden test lines: {leaked[:3]}"
        assert "Graded checks" in text
    assert "Graded checks failed" in _html.unescape(results["blank"].feedback.read_text())
    assert "output removed from the feedback" in _html.unescape(results["quirky"].feedback.read_text())


def test_cli_exits_nonzero_naming_the_student(repo, tmp_path):
    subs = tmp_path / "subs"
    (subs / "zoe" / A).mkdir(parents=True)
    (subs / "zoe" / A / f"{A}.ipynb").write_text("garbage")
    (subs / "max" / "a9_unknown").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(subs)], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "could not grade zoe / a1_watermarking: " in proc.stderr
    assert "could not grade max / a9_unknown: unknown assignment" in proc.stderr
    assert "automatic" in proc.stdout and (tmp_path / "subs-graded" / "grades.csv").exists()


def test_an_endless_loop_is_stopped_and_the_rest_is_graded(repo, tmp_path):
    from autograder.pipeline import grade

    nb = read(repo / "release" / A / f"{A}.ipynb")
    nb.cells.insert(3, nbformat.v4.new_code_cell("while True:\n    pass\n"))
    (tmp_path / "subs" / "looper" / A).mkdir(parents=True)
    nbformat.write(nb, str(tmp_path / "subs" / "looper" / A / f"{A}.ipynb"))
    (r,) = grade(tmp_path / "subs", tmp_path / "out", timeout=20)   # seconds per cell
    assert r.error is None and r.auto_max == 25 and r.auto_score == 0, (r.error, r.cells)
