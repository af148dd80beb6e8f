"""A live Jupyter kernel for tests: execute a notebook once, then swap one function and
re-run only the test cells aimed at it (no retraining of everything per wrong answer).

Test cells are run as the grader runs them: the judge and oracle regions are cut out before
the kernel sees a cell, the victims are served from this process by the grader's own
``OracleServer``, and a judged cell passes only when its judge -- called here, outside the
kernel, on the cell's recorded observations and the oracle's log, against the reference
run's observations -- says so. A cell without a judge passes when it raised nothing
(nbgrader's rule)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nbformat
from jupyter_client.manager import start_new_kernel

from autograder.judge import judge_cell, kernel_source, oracles_of, split_judge
from autograder.oracle import OracleServer


@dataclass
class Outcome:
    ok: bool
    stdout: str
    error: str


class Kernel:
    """A python3 kernel; ``run(code)`` returns whether the code raised, and its output.

    The kernel records observations into :attr:`observations` (``LEAKLAB_OBSERVATIONS``);
    :attr:`reference` keeps the reference run's, once :func:`run_reference` has copied them.
    """

    def __init__(self, cwd: str | None = None, oracle_sections: dict[str, str] | None = None):
        self.scratch = Path(tempfile.mkdtemp(prefix="leaklab-test-kernel-"))
        self.observations, self.reference = self.scratch / "observations", self.scratch / "reference"
        self.reference.mkdir(parents=True)
        env = dict(os.environ, LEAKLAB_OBSERVATIONS=str(self.observations))
        self.oracle = None
        if oracle_sections:
            self.oracle = OracleServer(oracle_sections, self.scratch / "oracle")
            env["LEAKLAB_ORACLE"] = self.oracle.start()
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=cwd, env=env)

    def run_cell(self, cell) -> Outcome:
        """Run what the kernel may see of a test cell, its oracle log attributed to it."""
        gid = grade_id(cell)
        if self.oracle is not None:
            self.oracle.reset(gid)
            self.oracle.cell = gid
        try:
            return self.run(kernel_source(cell.source))
        finally:
            if self.oracle is not None:
                self.oracle.cell = None

    def run(self, code: str, timeout: float = 600) -> Outcome:
        out, err = [], ""
        def hook(msg):
            nonlocal err
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                out.append(c["text"])
            elif t == "error":
                err = f"{c['ename']}: {c['evalue']}"
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False)
        ok = reply["content"]["status"] == "ok"
        if not ok and not err:
            err = f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}"
        return Outcome(ok, "".join(out), err)

    def run_test(self, cell) -> Outcome:
        """Run a test cell as the grader does; a judged cell is decided by its judge."""
        gid = grade_id(cell)
        for old in self.observations.glob(f"{gid}.*"):
            old.unlink()
        return self.judge(cell, self.run_cell(cell))

    def judge(self, cell, out: Outcome) -> Outcome:
        """The verdict on a test cell that just ran with outcome ``out``."""
        gid = grade_id(cell)
        judge = split_judge(cell.source)[1]
        if judge is None:
            return out
        ok, why = judge_cell(judge, gid, self.observations, self.reference, self.oracle)
        return Outcome(ok, out.stdout, "" if ok else f"judge: {why} (kernel: {out.error or 'no error'})")

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
        if self.oracle is not None:
            self.oracle.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_test(cell) -> bool:
    nbg = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and nbg.get("grade", False) and not nbg.get("solution", False)


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def run_reference(kernel: Kernel, nb) -> dict[str, Outcome]:
    """Run every code cell of ``nb``; return the outcome of each test cell by grade_id.

    The reference's observations become :attr:`Kernel.reference` (each judged cell is then
    judged against itself). Raises AssertionError if a cell that is not a test fails.
    """
    outcomes = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if is_test(cell):
            gid = grade_id(cell)
            out = kernel.run_cell(cell)
            for f in kernel.observations.glob(f"{gid}.*"):
                shutil.copy(f, kernel.reference / f.name)
            outcomes[gid] = kernel.judge(cell, out)
        else:
            out = kernel.run(cell.source)
            assert out.ok, f"reference cell failed: {out.error}\n{cell.source[:300]}"
    return outcomes


def targets_passed_by(kernel: Kernel, nb, code: str, targets: list[str]) -> list[str]:
    """Swap in another definition, re-run only ``targets``, restore the reference.

    Returns the targeted test cells that still pass (none for a wrong answer, all for an equivalent one).
    """
    cells = {grade_id(c): c for c in nb.cells}
    solutions = [c.source for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
    assert kernel.run(code).ok, "the wrong answer itself does not run"
    try:
        return [gid for gid in targets if kernel.run_test(cells[gid]).ok]
    finally:
        for src in solutions:
            assert kernel.run(src).ok


@contextlib.contextmanager
def executed_reference(path, cwd: str) -> Iterator[tuple[Kernel, nbformat.NotebookNode, dict[str, Outcome]]]:
    """A kernel that has run the source notebook at ``path`` once: (kernel, notebook, test outcomes)."""
    nb = read(path)
    kernel = Kernel(cwd=cwd, oracle_sections=oracles_of(nb.cells))
    try:
        yield kernel, nb, run_reference(kernel, nb)
    finally:
        kernel.close()


def failed_tests(outcomes: dict[str, Outcome]) -> dict[str, str]:
    """grade_id -> error of every test cell that failed."""
    return {gid: o.error for gid, o in outcomes.items() if not o.ok}


def invariant_tests(assignment: str, expected: set[str], wrong: dict[str, tuple[str, list[str]]],
                    precheck=None):
    """The pytest pieces of grading invariants 1 and 3 for one assignment.

    Returns ``(fixture, test_reference_passes_every_test_cell, test_wrong_answer_loses_the_targeted_points)``;
    assign them to module-level names. ``precheck()`` may call ``pytest.skip`` (e.g. data missing).
    """
    import pytest

    @pytest.fixture(scope="module", name="reference")
    def reference(repo, tmp_path_factory):
        if precheck is not None:
            precheck()
        path = repo / "source" / assignment / f"{assignment}.ipynb"
        with executed_reference(path, str(tmp_path_factory.mktemp(assignment))) as state:
            yield state

    def test_reference_passes_every_test_cell(reference):
        _, _, outcomes = reference
        assert set(outcomes) == expected
        assert not failed_tests(outcomes), f"the reference solution fails: {failed_tests(outcomes)}"

    @pytest.mark.parametrize("name", list(wrong))
    def test_wrong_answer_loses_the_targeted_points(reference, name):
        kernel, nb, _ = reference
        code, targets = wrong[name]
        passed = targets_passed_by(kernel, nb, code, targets)
        assert not passed, f"{name!r} still passes {passed}"

    return reference, test_reference_passes_every_test_cell, test_wrong_answer_loses_the_targeted_points


def equivalent_answer_test(equivalent: dict[str, tuple[str, list[str]]]):
    """The other half of invariant 3: an answer the specification allows -- e.g. another unit that ranks
    every sample identically -- earns every targeted point. Uses the ``reference`` fixture of
    :func:`invariant_tests`; assign the returned test to a module-level name."""
    import pytest

    @pytest.mark.parametrize("name", list(equivalent))
    def test_equivalent_answer_earns_the_targeted_points(reference, name):
        kernel, nb, _ = reference
        code, targets = equivalent[name]
        passed = targets_passed_by(kernel, nb, code, targets)
        assert passed == targets, f"{name!r} loses {sorted(set(targets) - set(passed))}"

    return test_equivalent_answer_earns_the_targeted_points
