"""Assertion helpers for test cells and the student-side self-check.

Test cells use the ``assert_*`` helpers (each failure says what was expected, what
came, and the likely mistake). Visible tests are written as a :func:`check` block so
that a student sees a readable verdict per case::

    with check("Part 1: commit") as c:
        with c.case("returns (hex str, bytes)"):
            ...plain asserts...

The block prints one line per case and, if any case failed, raises
:class:`ChecksFailed` (an ``AssertionError``) at the end, so nbgrader scores the cell 0.
Jupyter shows that error as two short lines under the verdicts instead of a traceback
through this library: the verdicts above it already say what failed and why.
"""
from __future__ import annotations

import contextlib
import math
import traceback
from typing import Iterator

import numpy as np
import torch

__all__ = ["check", "Checker", "ChecksFailed", "assert_shape", "assert_dtype", "assert_close", "assert_between",
           "assert_raises", "assert_queries"]


class ChecksFailed(AssertionError):
    """Raised by :func:`check` when a case failed; its message names the failed cases.

    IPython renders an exception with a ``_render_traceback_`` method by calling it instead of
    formatting the traceback, so a student sees the verdicts and these lines, not frames of
    ``contextlib`` and this module. nbgrader still sees an error output and scores the cell 0.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}",
                "The verdicts above say which check failed and why. Fix that function, run its cell, then this "
                "one again; Run All stops here, so run the cells below with 'Run Selected Cell and All Below'."]


class Checker:
    """Collects the verdicts of the cases in one :func:`check` block."""

    def __init__(self, title: str):
        self.title = title
        self.results: list[tuple[str, bool, str]] = []

    @contextlib.contextmanager
    def case(self, description: str) -> Iterator[None]:
        """Run the body as one case; an exception marks it failed (and is not re-raised)."""
        try:
            yield
        except NotImplementedError:
            self.results.append((description, False, "not implemented yet (the function still raises NotImplementedError)"))
        except AssertionError as err:
            self.results.append((description, False, str(err) or "assertion failed"))
        except NameError as err:
            after_failure = any(not ok for _, ok, _ in self.results)
            why = ("skipped: it needs a value from a check above that failed; fix that one first"
                   if after_failure and getattr(err, "name", "").startswith("_") else f"NameError: {err}")
            self.results.append((description, False, why))
        except Exception as err:                      # a crash in student code is a failed case, reported
            last = traceback.extract_tb(err.__traceback__)[-1]
            self.results.append((description, False, f"{type(err).__name__}: {err} (line {last.lineno})"))
        else:
            self.results.append((description, True, ""))

    def report(self) -> str:
        lines = [f"{self.title}"]
        for desc, ok, why in self.results:
            lines.append(f"  {'PASS' if ok else 'FAIL'}  {desc}" + ("" if ok else f"\n        -> {why}"))
        passed = sum(ok for _, ok, _ in self.results)
        lines.append(f"  {passed}/{len(self.results)} checks passed")
        return "\n".join(lines)


@contextlib.contextmanager
def check(title: str) -> Iterator[Checker]:
    """Run a part's visible checks and print a readable verdict.

    Args:
        title: what is being checked, e.g. ``"Part 1: commit"``.

    Yields:
        A :class:`Checker`; wrap each case in ``with c.case("what it checks"):``.

    Raises:
        ChecksFailed: an ``AssertionError``, after printing, if any case failed (nbgrader then
            gives 0); Jupyter shows it without a traceback.
    """
    c = Checker(title)
    yield c
    print(c.report())
    failed = [d for d, ok, _ in c.results if not ok]
    if failed:
        raise ChecksFailed(f"{len(failed)} check(s) failed in {title!r}: " + "; ".join(failed))


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_shape(x, shape: tuple, name: str = "value") -> None:
    """Assert ``x.shape == shape``; ``None`` in ``shape`` matches any size."""
    got = tuple(getattr(x, "shape", ()))
    ok = len(got) == len(shape) and all(s is None or s == g for s, g in zip(shape, got))
    assert ok, f"{name} should have shape {shape}, got {got}"


def assert_dtype(x, dtype, name: str = "value") -> None:
    """Assert a tensor/array has ``dtype`` (a torch or NumPy dtype)."""
    got = getattr(x, "dtype", type(x))
    assert got == dtype, f"{name} should have dtype {dtype}, got {got}"


def assert_close(actual, expected, *, atol: float = 1e-6, rtol: float = 1e-5, name: str = "value") -> None:
    """Assert elementwise ``|actual - expected| <= atol + rtol*|expected|`` (same shape)."""
    a, e = _np(actual).astype(float), _np(expected).astype(float)
    assert a.shape == e.shape, f"{name} should have shape {e.shape}, got {a.shape}"
    if not np.allclose(a, e, atol=atol, rtol=rtol):
        worst = float(np.max(np.abs(a - e))) if a.size else 0.0
        raise AssertionError(f"{name} differs from the expected value (largest difference {worst:.3g}, "
                             f"tolerance atol={atol}, rtol={rtol})")


def assert_between(value: float, low: float, high: float, name: str = "value") -> None:
    """Assert ``low <= value <= high`` and that ``value`` is a finite number."""
    v = float(value)
    assert math.isfinite(v), f"{name} should be a finite number, got {v}"
    assert low <= v <= high, f"{name} should lie in [{low}, {high}], got {v:.4g}"


def assert_raises(exc_type: type[BaseException], fn, *args, **kwargs) -> BaseException:
    """Assert that ``fn(*args, **kwargs)`` raises ``exc_type``; return the exception."""
    try:
        fn(*args, **kwargs)
    except exc_type as err:
        return err
    raise AssertionError(f"{getattr(fn, '__name__', fn)} should raise {exc_type.__name__}, but it returned")


def assert_queries(api, at_most: int, name: str = "the attack") -> None:
    """Assert that a :class:`~leaklab.oracle.PredictionAPI` answered at most ``at_most`` queries.

    Reads the API's own counter, never the student's report.
    """
    used = api.queries_used
    assert used <= at_most, f"{name} used {used} queries; at most {at_most} are allowed"
