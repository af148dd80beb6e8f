"""release/ is what nbgrader makes of source/, committed, and leaks nothing."""
from __future__ import annotations

import re

import pytest

from autograder.pipeline import assignments_in, release
from kernel import read

SOLUTION = re.compile(r"### BEGIN SOLUTION(.*?)### END SOLUTION", re.S)
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", re.S)


@pytest.fixture(scope="module")
def regenerated(repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    release(repo / "source", out, draft=True)          # as configured in course.toml, a draft if it is the placeholder
    return out


def test_every_assignment_has_a_committed_release(repo):
    names = assignments_in(repo / "source")
    assert "a1_watermarking" in names
    for a in names:
        assert (repo / "release" / a / f"{a}.ipynb").exists(), f"run `make release`: release/{a} is missing"


def test_committed_release_is_up_to_date_and_regeneration_is_idempotent(repo, regenerated):
    for a in assignments_in(repo / "source"):
        fresh = (regenerated / a / f"{a}.ipynb").read_bytes()
        assert fresh == (repo / "release" / a / f"{a}.ipynb").read_bytes(), \
            f"release/{a} differs from what source/{a} generates: run `make release` (DRAFT=1 while course.toml holds the placeholder) and commit"
    again = regenerated.parent / "again"
    release(repo / "source", again, draft=True)
    for a in assignments_in(repo / "source"):
        assert (again / a / f"{a}.ipynb").read_bytes() == (regenerated / a / f"{a}.ipynb").read_bytes()


def test_release_holds_no_solution_or_hidden_test_text(repo):
    for a in assignments_in(repo / "source"):
        src = "\n".join(c.source for c in read(repo / "source" / a / f"{a}.ipynb").cells)
        rel_nb = read(repo / "release" / a / f"{a}.ipynb")
        rel = "\n".join(c.source for c in rel_nb.cells)
        assert "BEGIN SOLUTION" not in rel and "HIDDEN TESTS" not in rel
        secret_lines = {ln.strip() for block in SOLUTION.findall(src) + HIDDEN.findall(src)
                        for ln in block.splitlines() if len(ln.strip()) > 20}
        public = SOLUTION.sub("", HIDDEN.sub("", src))         # lines a visible test also uses are public
        secret_lines = {ln for ln in secret_lines if ln not in public}
        assert secret_lines, "the source notebook should have solutions and hidden tests"
        leaked = [ln for ln in secret_lines if ln in rel]
        assert not leaked, f"release/{a} contains solution or hidden-test lines: {leaked[:3]}"
        assert not any(c.get("outputs") for c in rel_nb.cells if c.cell_type == "code"), "release has outputs"


def test_release_stubs_raise_not_implemented(repo):
    for a in assignments_in(repo / "source"):
        rel_nb = read(repo / "release" / a / f"{a}.ipynb")
        sols = [c for c in rel_nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
        assert sols and all("raise NotImplementedError()" in c.source for c in sols)


#: paths and words that exist only in the instructor's repository (issue 15 item 6)
INSTRUCTOR_ONLY = re.compile(r"tests/|benchmarks/|bench_\w+\.py|gpu_pending|autograder/|source/\w|sessions that built")


def test_release_mentions_nothing_that_only_the_instructors_repository_has(repo):
    for a in assignments_in(repo / "source"):
        for i, c in enumerate(read(repo / "release" / a / f"{a}.ipynb").cells):
            found = INSTRUCTOR_ONLY.findall(c.source)
            assert not found, f"release/{a} cell {i} mentions {found} (students do not have it)"
