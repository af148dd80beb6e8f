"""Tests for leaklab.grading: the check() block and the assert_* helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leaklab.grading import (Checker, ChecksFailed, assert_between, assert_close, assert_dtype, assert_queries,
                             assert_raises, assert_shape, check)
from leaklab.oracle import PredictionAPI


# --------------------------------------------------------------------------- check()

def test_check_all_passing_prints_pass_lines_and_does_not_raise(capsys):
    with check("Part 1: commit") as c:
        with c.case("returns a str"):
            assert isinstance("x", str)
        with c.case("two plus two"):
            assert 2 + 2 == 4
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == "Part 1: commit"
    assert "PASS  returns a str" in out and "PASS  two plus two" in out
    assert "FAIL" not in out
    assert "2/2 checks passed" in lines[-1]
    assert isinstance(c, Checker) and [ok for _, ok, _ in c.results] == [True, True]


def test_check_failing_cases_print_fail_and_raise_listing_them(capsys):
    with pytest.raises(AssertionError) as info:
        with check("Part 2: verify") as c:
            with c.case("good case"):
                pass
            with c.case("shape case"):
                assert_shape(np.zeros((2, 3)), (3, 2), name="logits")
            with c.case("bare assert"):
                raise AssertionError                      # what `assert x` raises outside pytest
            with c.case("crashes"):
                1 / 0
            with c.case("runs after the failures"):
                pass
    out = capsys.readouterr().out
    msg = str(info.value)
    assert "3 check(s) failed" in msg and "Part 2: verify" in msg
    assert "shape case" in msg and "bare assert" in msg and "crashes" in msg
    assert "good case" not in msg and "runs after the failures" not in msg
    assert "PASS  good case" in out and "PASS  runs after the failures" in out
    assert "FAIL  shape case" in out and "logits should have shape (3, 2), got (2, 3)" in out
    assert "FAIL  bare assert" in out and "assertion failed" in out
    assert "FAIL  crashes" in out and "ZeroDivisionError" in out and "line " in out
    assert "2/5 checks passed" in out
    assert len(c.results) == 5


def test_not_implemented_is_reported_as_not_implemented_yet(capsys):
    def student_function():
        raise NotImplementedError

    with pytest.raises(AssertionError, match="todo"):
        with check("Part 3") as c:
            with c.case("todo"):
                student_function()
    out = capsys.readouterr().out
    assert "FAIL  todo" in out and "not implemented yet" in out


def test_report_is_printed_before_the_assertion_error(capsys):
    with pytest.raises(AssertionError):
        with check("T") as c:
            with c.case("x"):
                raise ValueError("boom")
    out = capsys.readouterr().out
    assert "ValueError: boom" in out and "0/1 checks passed" in out


def test_a_failed_check_shows_its_verdicts_without_a_library_traceback_in_ipython(capsys):
    """What a student sees in Jupyter: the verdict lines and a two-line error, no frames of
    contextlib or leaklab/grading.py; the cell still ends in an error (nbgrader gives it 0)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(colors="nocolor")
    try:
        res = shell.run_cell("from leaklab.grading import check\n"
                             "with check('Part 9: f') as c:\n"
                             "    with c.case('f(1) == 2'):\n"
                             "        assert 1 == 3, 'f(1) should be 2, got 3'\n")
    finally:
        InteractiveShell.clear_instance()
    out = capsys.readouterr().out
    assert isinstance(res.error_in_exec, ChecksFailed) and isinstance(res.error_in_exec, AssertionError)
    assert "FAIL  f(1) == 2" in out and "-> f(1) should be 2, got 3" in out
    assert "ChecksFailed: 1 check(s) failed in 'Part 9: f': f(1) == 2" in out and "Run All stops here" in out
    assert "contextlib" not in out and "grading.py" not in out and "Traceback" not in out


# --------------------------------------------------------------------------- assert_shape / dtype

def test_assert_shape():
    assert_shape(torch.zeros(2, 3), (2, 3))
    assert_shape(np.zeros((4, 5)), (None, 5))
    assert_shape(torch.zeros(()), ())
    for bad in [(3, 2), (2,), (2, 3, 1), (None, 4)]:
        with pytest.raises(AssertionError, match="should have shape"):
            assert_shape(torch.zeros(2, 3), bad)
    with pytest.raises(AssertionError, match="probs"):
        assert_shape([1, 2], (2,), name="probs")                  # a list has no shape


def test_assert_dtype():
    assert_dtype(torch.zeros(2), torch.float32)
    assert_dtype(np.zeros(2, dtype=np.int64), np.int64)
    with pytest.raises(AssertionError, match="float32"):
        assert_dtype(torch.zeros(2, dtype=torch.float64), torch.float32)
    with pytest.raises(AssertionError):
        assert_dtype(3, torch.int64)


# --------------------------------------------------------------------------- assert_close

def test_assert_close_passes_within_tolerance():
    x = torch.tensor([1.0, 2.0, 3.0])
    assert_close(x, x.numpy())
    assert_close(x + 1e-7, x)
    assert_close(x + 0.05, x, atol=0.1)
    assert_close(x * 1.01, x, atol=0, rtol=0.02)
    assert_close(np.array(3.0), 3.0)
    assert_close(torch.tensor([1.0]).requires_grad_(), [1.0])


def test_assert_close_fails_where_it_should():
    x = torch.tensor([1.0, 2.0, 3.0])
    with pytest.raises(AssertionError, match="largest difference"):
        assert_close(x + 1e-3, x)
    with pytest.raises(AssertionError, match="score"):
        assert_close(x * 1.05, x, atol=0, rtol=0.02, name="score")
    with pytest.raises(AssertionError, match="shape"):
        assert_close(x, x[:2])
    with pytest.raises(AssertionError, match="shape"):
        assert_close(x[None], x)                                  # no silent broadcasting
    with pytest.raises(AssertionError):
        assert_close(torch.tensor([float("nan")]), torch.tensor([float("nan")]))


# --------------------------------------------------------------------------- assert_between

def test_assert_between():
    assert_between(0.5, 0, 1)
    assert_between(0, 0, 1)
    assert_between(1, 0, 1)
    assert_between(torch.tensor(0.3), 0, 1)
    assert_between(np.float32(0.3), 0, 1)
    for bad in [-0.01, 1.01, float("nan"), float("inf")]:
        with pytest.raises(AssertionError):
            assert_between(bad, 0, 1, name="accuracy")
    with pytest.raises(AssertionError, match=r"accuracy should lie in \[0, 1\]"):
        assert_between(2, 0, 1, name="accuracy")
    with pytest.raises(AssertionError, match="finite"):
        assert_between(float("nan"), 0, 1)


# --------------------------------------------------------------------------- assert_raises

def test_assert_raises():
    def bad(x):
        raise ValueError(f"bad {x}")

    err = assert_raises(ValueError, bad, 3)
    assert isinstance(err, ValueError) and str(err) == "bad 3"
    assert isinstance(assert_raises(Exception, bad, x=1), ValueError)      # subclasses match
    with pytest.raises(AssertionError, match="should raise ValueError"):
        assert_raises(ValueError, lambda: None)
    with pytest.raises(AssertionError, match="int"):
        assert_raises(TypeError, int, "3")                        # returned 3 without raising
    with pytest.raises(ValueError):                               # another exception is not swallowed
        assert_raises(TypeError, bad, 1)


# --------------------------------------------------------------------------- assert_queries

def test_assert_queries_reads_the_api_counter():
    api = PredictionAPI(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2), budget=10)
    assert_queries(api, 0)
    api.query(torch.rand(3, 1, 2, 2))
    assert_queries(api, 3)
    assert_queries(api, 10)
    with pytest.raises(AssertionError, match="used 3 queries; at most 2"):
        assert_queries(api, 2)
    with pytest.raises(AssertionError, match="my attack"):
        assert_queries(api, 0, name="my attack")
