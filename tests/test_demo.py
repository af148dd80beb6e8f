"""`make demo` end to end: every assignment's reference earns every automatic point and
its untouched release earns 0 on every test cell (grading invariants 1 and 2 through
nbgrader); the table shows both."""
from __future__ import annotations

import pytest

from autograder.pipeline import assignments_in, demo, format_table
from kernel import grade_id, is_test, read


@pytest.fixture(scope="module")
def results(repo):
    from leaklab.data import DatasetUnavailableError, load_faces

    names = assignments_in(repo / "source")
    try:
        load_faces()
    except DatasetUnavailableError:
        names = [a for a in names if a != "a4_model_inversion"]     # it needs the AT&T faces
    return {(r.assignment, r.student): r for r in demo(names)}, names


def test_demo_grades_every_assignment(results, repo):
    by_key, names = results
    assert "a4_model_inversion" in names or not (repo.parent / "shared" / "data" / "att_faces").exists()
    for a in names:
        tests = {grade_id(c) for c in read(repo / "source" / a / f"{a}.ipynb").cells if is_test(c)}
        ref, blank = by_key[(a, "reference")], by_key[(a, "blank")]
        assert ref.error is None and blank.error is None, (ref.error, blank.error)
        assert ref.auto_score == ref.auto_max > 0, (a, ref.cells)
        assert {g: blank.cells[g][0] for g in tests} == dict.fromkeys(tests, 0), (a, blank.cells)
        assert ref.manual_pending > 0 and blank.manual_pending == 0


def test_demo_table_lists_both_students(results):
    by_key, names = results
    lines = format_table(list(by_key.values())).splitlines()
    assert lines[0].split()[:4] == ["assignment", "student", "automatic", "of"]
    rows = {tuple(line.split()[:2]): line.split()[2:4] for line in lines[2:]}
    for a in names:
        ref = by_key[(a, "reference")]
        assert rows[(a, "reference")] == [f"{ref.auto_max:g}", f"{ref.auto_max:g}"]
        assert rows[(a, "blank")] == ["0", f"{ref.auto_max:g}"]
