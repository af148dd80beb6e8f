"""The boundary between the sandboxed kernel and the grader: leaklab.probe writes schema 1,
autograder.judge reads it into exact types and refuses anything else; judges sit beside their
probes in the source notebooks and never reach the release; submissions are rebuilt from the
source so that nothing in the submitted file is trusted."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from autograder.judge import (ObservationError, Raised, read_observations, run_judge, same, split_judge)
from autograder.submissions import read_submission
from kernel import grade_id, is_test, read
from leaklab.probe import probe

#: Assignments whose every graded test cell is decided by a judge outside the kernel: all of them.
HARDENED = ["a1_watermarking", "a2_query_extraction", "a3_membership_inference", "a4_model_inversion",
            "a5_gpt2_extraction"]


@dataclasses.dataclass
class _Key:
    triggers: torch.Tensor
    nonces: list


def _record(tmp_path, monkeypatch, **values):
    monkeypatch.setenv("LEAKLAB_OBSERVATIONS", str(tmp_path))
    with probe("cell_1") as p:
        for k, v in values.items():
            p[k] = v
    return read_observations(tmp_path, "cell_1")


def test_round_trip_keeps_exact_types(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    obs = _record(tmp_path, monkeypatch, i=3, f=0.5, b=True, s="x", n=None, by=b"\x00\xff", nan=float("nan"),
                  t=torch.arange(6, dtype=torch.int16).reshape(2, 3), lst=(1, [2.0]), d={"k": 1},
                  model=model, key=_Key(torch.ones(2), [b"a"]))
    assert type(obs["i"]) is int and type(obs["f"]) is float and obs["b"] is True and obs["n"] is None
    assert obs["by"] == b"\x00\xff" and obs["nan"] != obs["nan"]
    assert obs["t"].dtype == torch.int16 and obs["t"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert obs["lst"] == [1, [2.0]] and obs["d"] == {"k": 1}
    assert set(obs["model"]) == {"weight", "bias"} and torch.equal(obs["model"]["weight"], model.weight.detach())
    assert obs["key"]["nonces"] == [b"a"] and torch.equal(obs["key"]["triggers"], torch.ones(2))
    with pytest.raises(ObservationError, match="recorded no 'absent'"):
        obs["absent"]


def test_calls_and_exceptions_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKLAB_OBSERVATIONS", str(tmp_path))
    with pytest.raises(KeyError):
        with probe("cell_2") as p:
            p.call("bad", int, "nope")
            p.call("good", int, "7")
            raise KeyError("stop")
    obs = read_observations(tmp_path, "cell_2")
    assert obs["bad"] == Raised("ValueError", "invalid literal for int() with base 10: 'nope'")
    assert obs["good"] == 7 and obs["__exception__"].name == "KeyError"


def test_objects_of_a_students_class_are_refused(tmp_path, monkeypatch):
    class AlwaysEqual:
        def __eq__(self, other):
            return True
    monkeypatch.setenv("LEAKLAB_OBSERVATIONS", str(tmp_path))
    with pytest.raises(TypeError, match="cannot record"):
        with probe("cell_3") as p:
            p["x"] = AlwaysEqual()


def test_without_the_grader_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("LEAKLAB_OBSERVATIONS", raising=False)
    monkeypatch.chdir(tmp_path)
    with probe("cell_4") as p:
        p["x"] = 1
    assert p["x"] == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("content, match", [
    (None, "recorded no observations"),
    ("{not json", "not valid JSON"),
    (json.dumps({"schema": "other/1", "cell": "c", "values": {}}), "not leaklab.observations/1"),
    (json.dumps({"schema": "leaklab.observations/1", "cell": "someone_else", "values": {}}), "for cell c"),
    (json.dumps({"schema": "leaklab.observations/1", "cell": "c", "values": {"x": {"$pickle": "..."}}}), "not a schema-1"),
    (json.dumps({"schema": "leaklab.observations/1", "cell": "c", "values": {"x": {"$tensor": "missing"}}}), "not in the safetensors"),
    (json.dumps({"schema": "leaklab.observations/1", "cell": "c", "values": {"x": NaN}})
     if (NaN := float("nan")) else "", "not valid JSON"),
    ('{"schema": "leaklab.observations/1", "cell": "c", "values": {"x": ' + "[" * 5000 + "]" * 5000 + "}}",
     "not valid JSON|deeper than 32"),
])
def test_malformed_observations_are_refused_with_a_reason(tmp_path, content, match):
    if content is not None:
        (tmp_path / "c.json").write_text(content)
    with pytest.raises(ObservationError, match=match):
        read_observations(tmp_path, "c")


def test_symlinks_and_oversized_files_are_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text('{"schema": "leaklab.observations/1", "cell": "c", "values": {}}')
    os.symlink(secret, tmp_path / "c.json")
    with pytest.raises(ObservationError, match="recorded no observations"):
        read_observations(tmp_path, "c")
    (tmp_path / "d.json").write_text(json.dumps({"schema": "leaklab.observations/1", "cell": "d", "values": {"x": "y" * 2000}}))
    with pytest.raises(ObservationError, match="exceed the limit"):
        read_observations(tmp_path, "d", max_bytes=1000)


def test_same_is_strict_about_types():
    assert same([True, 1.0, b"a"], [True, 1.0, b"a"])
    assert not same(1, True) and not same(1.0, 1) and not same([1], (1,))
    assert not same(torch.zeros(2), torch.zeros(2, dtype=torch.float64))
    assert same(torch.tensor([1.0]), torch.tensor([1.0 + 1e-9]), atol=1e-6)
    assert not same({"a": 1}, {"a": 1, "b": 2})


def test_run_judge_reports_the_reason_and_survives_crashes():
    code = "def judge(obs, ref):\n    assert obs['x'] == ref['x'], 'x differs'\n"
    from autograder.judge import Observations
    assert run_judge(code, Observations(x=1), Observations(x=1)) == (True, "")
    assert run_judge(code, Observations(x=2), Observations(x=1)) == (False, "x differs")
    assert run_judge(code, Observations(), Observations(x=1))[1].startswith("the probe recorded no 'x'")
    crash = "def judge(obs, ref):\n    obs['x'].nope\n"
    ok, why = run_judge(crash, Observations(x=1), Observations())
    assert not ok and "AttributeError" in why


def test_split_judge_cuts_the_region_out():
    src = "a = 1\n### BEGIN HIDDEN TESTS\np = 2\n### BEGIN JUDGE\ndef judge(obs, ref):\n    pass\n### END JUDGE\n### END HIDDEN TESTS"
    kernel, judge = split_judge(src)
    assert "judge" not in kernel and "p = 2" in kernel and judge.startswith("def judge")
    assert split_judge("x = 1") == ("x = 1", None)


def test_every_assignment_is_hardened(repo):
    from autograder.pipeline import assignments_in

    assert assignments_in(repo / "source") == HARDENED


@pytest.mark.parametrize("assignment", HARDENED)
def test_every_test_cell_of_a_hardened_assignment_has_a_judge(repo, assignment):
    src = read(repo / "source" / assignment / f"{assignment}.ipynb")
    rel = (repo / "release" / assignment / f"{assignment}.ipynb").read_text()
    tests = [c for c in src.cells if is_test(c)]
    assert tests
    for cell in tests:
        kernel, judge = split_judge(cell.source)
        assert judge, f"{grade_id(cell)} has no judge: its points would depend on the student's kernel"
        compile(judge, grade_id(cell), "exec")
        assert f'probe("{grade_id(cell)}")' in kernel, f"{grade_id(cell)} records no observations under its grade_id"
        assert "### BEGIN JUDGE" in cell.source.split("### BEGIN HIDDEN TESTS", 1)[1], \
            f"{grade_id(cell)}: the judge must sit inside a hidden region (cut from the release)"
    assert "BEGIN JUDGE" not in rel and "def judge(obs, ref)" not in rel


def test_submitted_metadata_tags_and_extra_cells_are_not_trusted(repo, tmp_path):
    a = "a1_watermarking"
    src = read(repo / "source" / a / f"{a}.ipynb")
    nb = read(repo / "release" / a / f"{a}.ipynb")
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            cell.metadata["tags"] = ["skip-execution"]
            meta["points"] = 100
            cell.source = "pass"                       # a blanked test cell
    note = nbformat.v4.new_code_cell("# ### BEGIN HIDDEN TESTS is just text here\nx = 1")
    note.metadata["tags"] = ["raises-exception"]
    nb.cells.insert(5, note)
    path = tmp_path / f"Copy of {a}.ipynb"
    nbformat.write(nb, str(path))
    out = read_submission(path, src)
    by_id = {grade_id(c): c for c in out.cells if grade_id(c)}
    for cell in src.cells:
        if is_test(cell):
            assert by_id[grade_id(cell)].source == cell.source and by_id[grade_id(cell)].metadata == cell.metadata
    plain = [c for c in out.cells if not grade_id(c)]
    assert any(c.source == note.source for c in plain)
    assert all(c.metadata == {} for c in plain), "student cells keep no metadata (tags included)"


@pytest.mark.parametrize("assignment", HARDENED)
def test_every_api_a_test_hands_out_is_served_by_the_grader(repo, assignment):
    """No test cell builds a victim or a counter in the kernel: each API comes from ``served``, for
    a victim declared in an oracle region (inside the hidden region of a hidden test)."""
    import re

    from autograder.judge import ORACLE_BEGIN, kernel_source, oracle_code

    src = read(repo / "source" / assignment / f"{assignment}.ipynb")
    tests = [c for c in src.cells if is_test(c)]
    declared = set()
    for cell in tests:
        code = oracle_code(cell.source)
        if code:
            compile(code, grade_id(cell), "exec")
            declared |= set(re.findall(r'declare_victim\("(\w+)"', code))
            if "hidden" in grade_id(cell):
                assert ORACLE_BEGIN in cell.source.split("### BEGIN HIDDEN TESTS", 1)[1], \
                    f"{grade_id(cell)}: a hidden test's victim must sit inside the hidden region"
    for cell in tests:
        kernel = kernel_source(cell.source)
        assert "PredictionAPI(" not in kernel, f"{grade_id(cell)} builds an API in the student's kernel"
        for name in re.findall(r'served\(\s*"(\w+)"', kernel):
            assert name in declared, f"{grade_id(cell)} opens victim {name!r}, declared in no oracle region"


def test_the_reference_cache_key_follows_the_library_source(tmp_path, monkeypatch):
    """A change to leaklab's code (a profile, a training function) must not reuse the reference
    observations of the old code: the key covers the library's files, not only its version."""
    import shutil

    import leaklab
    from autograder.reference import content_hash

    nb = tmp_path / "a.ipynb"
    nb.write_text('{"cells": []}')
    lib = tmp_path / "leaklab"
    shutil.copytree(Path(leaklab.__file__).parent, lib, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(leaklab, "__file__", str(lib / "__init__.py"))
    from autograder.reference import _library_digest

    before = content_hash(nb)
    assert content_hash(nb) == before                                    # deterministic
    (lib / "config.py").write_text((lib / "config.py").read_text() + "\n# a changed default\n")
    _library_digest.cache_clear()                                        # read once per process: a new process
    assert content_hash(nb) != before
