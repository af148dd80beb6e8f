"""Verdicts decided outside the student's process: observations in, points out.

A graded test cell of a source notebook holds its *probe* (what runs in the sandboxed kernel:
inputs, calls of the student's functions, ``leaklab.probe`` records) and, side by side in a
hidden region, its *judge*::

    with probe("a1_p1_commitment_hidden") as p:          # runs in the student's kernel
        p["digest"] = commit(x, r)
    ### BEGIN HIDDEN TESTS
    ### BEGIN JUDGE
    def judge(obs, ref):                                 # runs in the grader, never in the kernel
        assert obs["digest"] == ref["digest"], "Com(x, r) must be SHA-256(r || enc(x))"
    ### END JUDGE
    ### END HIDDEN TESTS

Before execution :class:`StripJudges` removes every judge region, so the kernel never sees
a judge's code or the values it expects. After execution :class:`JudgeVerdicts` reads each
cell's observations (schema ``leaklab.observations/1``, see ``leaklab.probe``), decodes them
into exact types, and calls the cell's judge -- taken from the instructor's copy in the
gradebook, never from the submission -- with the student's observations and the reference
solution's (recorded the same way from ``source/`` by :mod:`autograder.reference`). The
judge's verdict becomes the cell's only output that nbgrader scores: nothing the kernel
printed or raised in a judged cell counts.

A cell whose probe hands the student's code a prediction API also has an *oracle region*
(``### BEGIN ORACLE`` ... ``### END ORACLE``) that declares the victim; it is cut out with the
judge and runs in the grader's :class:`autograder.oracle.OracleServer`, and the judge reads
the oracle's log as ``obs.oracle(name)`` and its victim as ``victim(name)``. A cell without a judge is scored by nbgrader's
rule ("the cell raised nothing in the kernel"), which a determined student can fool: every
graded cell of a hardened assignment must have one (``tests/test_judges.py`` checks).
"""
from __future__ import annotations

import json
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Int, Unicode

SCHEMA = "leaklab.observations/1"
BEGIN, END = "### BEGIN JUDGE", "### END JUDGE"
ORACLE_BEGIN, ORACLE_END = "### BEGIN ORACLE", "### END ORACLE"     #: victims served by the grader (autograder/oracle.py)
MAX_BYTES = 256 * 2**20            #: largest observation files of one cell the judge reads (bytes)
_GRADE_ID = re.compile(r"^[A-Za-z0-9_]{1,100}$")


class ObservationError(Exception):
    """A cell's observations are missing, malformed or incomplete; the message says which."""


@dataclass(frozen=True)
class Raised:
    """A recorded exception: the probe's call raised ``name`` (a class name) with ``message``."""

    name: str
    message: str


class Observations(dict):
    """Decoded observations of one cell; a missing name raises :class:`ObservationError`.

    ``obs.oracle(name)`` is the grader's own log of what the cell asked of victim ``name``
    (:class:`autograder.oracle.OracleLog`: queries answered, refusals, request sizes, APIs
    opened, inputs if recorded) -- the only query counts a judge may trust.
    """

    oracle: Any = None

    def __missing__(self, name):
        raise ObservationError(f"the probe recorded no {name!r} (the test cell stopped early or was changed)")


def split_region(source: str, begin: str = BEGIN, end: str = END) -> tuple[str, str | None]:
    """``(source without the region, the region's code or None)``; the marker lines are dropped."""
    kept, region, inside = [], [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            region.append(line)
        else:
            kept.append(line)
    return "\n".join(kept), ("\n".join(region) if region else None)


def split_judge(source: str) -> tuple[str, str | None]:
    """``(source without the judge region, judge code or None)``; the region's marker lines are dropped."""
    return split_region(source, BEGIN, END)


def split_oracle(source: str) -> tuple[str, str | None]:
    """``(source without the oracle region, oracle code or None)``."""
    return split_region(source, ORACLE_BEGIN, ORACLE_END)


def oracle_code(source: str) -> str | None:
    """The code the grader's oracle runs for a cell: the cell's top-level ``import`` and
    ``from ... import`` lines (an oracle region runs with the cell's imports), then its oracle
    region; ``None`` if the cell has no oracle region."""
    rest, region = split_oracle(source)
    if region is None:
        return None
    imports = [line for line in split_judge(rest)[0].splitlines() if line.startswith(("import ", "from "))]
    return "\n".join(imports + [region])


def kernel_source(source: str) -> str:
    """What the kernel may see of a cell: the source without its judge and oracle regions."""
    return split_oracle(split_judge(source)[0])[0]


def _decode(value: Any, tensors: dict, depth: int = 0) -> Any:
    if depth > 32:
        raise ObservationError("observations nested deeper than 32 levels")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        return [_decode(v, tensors, depth + 1) for v in value]
    if isinstance(value, dict) and len(value) >= 1:
        tag = next(iter(value))
        body = value[tag]
        if tag == "$bytes" and len(value) == 1 and isinstance(body, str):
            try:
                return bytes.fromhex(body)
            except ValueError as err:
                raise ObservationError(f"malformed $bytes: {err}") from None
        if tag == "$float" and len(value) == 1 and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "$dict" and len(value) == 1 and isinstance(body, dict):
            return {str(k): _decode(v, tensors, depth + 1) for k, v in body.items()}
        if tag == "$tensor" and len(value) == 1 and isinstance(body, str):
            if body not in tensors:
                raise ObservationError(f"tensor {body!r} is not in the safetensors file")
            return tensors[body]
        if tag == "$raised" and isinstance(body, str) and isinstance(value.get("message", ""), str):
            return Raised(body, value.get("message", ""))
    raise ObservationError(f"not a schema-1 value: {str(value)[:80]}")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON (the schema writes non-finite floats as $float)")


def read_observations(folder: Path, grade_id: str, max_bytes: int = MAX_BYTES) -> Observations:
    """Read and decode ``<grade_id>.json`` (+ ``.safetensors``) from ``folder``.

    Returns:
        :class:`Observations` of exact types: None, bool, int, float, str, bytes, list, dict,
        ``torch.Tensor`` and :class:`Raised`.

    Raises:
        ObservationError: no file, a file over ``max_bytes``, not JSON, another schema or cell,
            a malformed value, an unreadable safetensors file.
    """
    if not _GRADE_ID.match(grade_id):
        raise ObservationError(f"bad grade_id {grade_id!r}")
    js, st = Path(folder) / f"{grade_id}.json", Path(folder) / f"{grade_id}.safetensors"
    if not js.is_file() or js.is_symlink():
        raise ObservationError("the test cell recorded no observations (it did not run to its probe, "
                               "or it was blanked or rewritten)")
    size = js.stat().st_size + (st.stat().st_size if st.is_file() else 0)
    if size > max_bytes:
        raise ObservationError(f"observations of {size} bytes exceed the limit of {max_bytes}")
    try:
        doc = json.loads(js.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as err:
        raise ObservationError(f"observations are not valid JSON ({type(err).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("cell") != grade_id \
            or not isinstance(doc.get("values"), dict):
        raise ObservationError(f"observations are not {SCHEMA} for cell {grade_id}")
    tensors = {}
    if st.is_file() and not st.is_symlink():
        from safetensors.torch import load_file
        try:
            tensors = load_file(str(st))
        except Exception as err:                     # safetensors raises its own SafetensorError
            raise ObservationError(f"unreadable safetensors file ({type(err).__name__})") from None
    return Observations({str(k): _decode(v, tensors) for k, v in doc["values"].items()})


def judges_of(cells) -> dict[str, str]:
    """grade_id -> judge code, for every nbformat cell that has one."""
    return _regions_of(cells, split_judge)


def oracles_of(cells) -> dict[str, str]:
    """grade_id -> oracle-region code, for every graded nbformat cell that has one."""
    return _regions_of(cells, lambda src: (src, oracle_code(src)))


def _regions_of(cells, split) -> dict[str, str]:
    out = {}
    for cell in cells:
        nbg = cell.metadata.get("nbgrader", {})
        _, code = split(cell.source)
        if nbg.get("grade_id") and nbg.get("grade") and not nbg.get("solution") and code:
            out[nbg["grade_id"]] = code
    return out


def gradebook_sources(resources) -> dict[str, str]:
    """grade_id -> the instructor's source of every test cell (graded, not an answer) of the
    notebook being graded, from nbgrader's gradebook (never from the submission); ``{}``
    outside nbgrader."""
    info = resources.get("nbgrader")
    if not info or "db_url" not in info:
        return {}
    from nbgrader.api import Gradebook

    with Gradebook(info["db_url"]) as gb:
        nb = gb.find_notebook(info["notebook"], info["assignment"])
        tests = {c.name for c in nb.grade_cells} - {c.name for c in nb.solution_cells}
        return {sc.name: sc.source for sc in nb.source_cells if sc.name in tests}


def same(a: Any, b: Any, atol: float = 0.0, rtol: float = 0.0) -> bool:
    """Strict equality of decoded observations: same types all the way down (``True`` is not
    ``1``), lists of the same length, dicts with the same keys, tensors of the same dtype and
    shape whose values agree within ``atol + rtol * |b|`` (exactly by default; NaNs never agree)."""
    import torch

    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        if atol == 0 and rtol == 0:
            return bool(torch.equal(a, b))
        return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))
    if type(a) is not type(b):
        return False
    if isinstance(b, float):
        return abs(a - b) <= atol + rtol * abs(b)
    if isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, atol, rtol) for x, y in zip(a, b))
    if isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], atol, rtol) for k in b)
    return a == b


def run_judge(code: str, obs: Observations, ref: Observations, victim=None) -> tuple[bool, str]:
    """Run one judge in this (the grader's) process.

    The judge code defines ``judge(obs, ref)`` and may use :func:`same`, :class:`Raised` and
    ``victim(name)`` (the grader's copy of a victim declared in an oracle region, from
    ``victim``: a callable name -> ``nn.Module``) without importing them; it passes by returning, fails by raising
    ``AssertionError`` (its message is the reason) or :class:`ObservationError`. Any other
    exception also fails the cell (a malformed observation the judge did not expect) and is
    reported with its type.

    Returns:
        ``(passed, reason)``; ``reason`` is ``""`` when passed.
    """
    def no_victim(name):
        raise ObservationError(f"no oracle serves victim {name!r} in this run")

    namespace: dict[str, Any] = {"Raised": Raised, "ObservationError": ObservationError, "same": same,
                                 "victim": victim or no_victim}
    exec(compile(code, "<judge>", "exec"), namespace)       # instructor code from the gradebook
    try:
        namespace["judge"](obs, ref)
    except ObservationError as err:
        return False, str(err)
    except AssertionError as err:
        return False, str(err) or "a hidden check failed"
    except Exception as err:                                # noqa: BLE001 -- any crash is a failed test
        last = traceback.extract_tb(err.__traceback__)[-1]
        return False, f"the observations could not be judged ({type(err).__name__}: {err}; judge line {last.lineno})"
    return True, ""


def judge_cell(code: str, gid: str, folder: Path, ref_folder: Path, server=None,
               max_bytes: int = MAX_BYTES) -> tuple[bool, str]:
    """Decide one test cell: its observations in ``folder`` and the oracle's log of it (``server``,
    an :class:`autograder.oracle.OracleServer` or ``None``), against the reference's in ``ref_folder``.

    Returns:
        ``(passed, reason)`` as :func:`run_judge`; missing or malformed observations fail the cell.
    """
    from .oracle import OracleView

    try:
        obs = read_observations(folder, gid, max_bytes)
        ref = read_observations(ref_folder, gid, max_bytes)
    except ObservationError as err:
        return False, str(err)
    logs, why = None, "this notebook declares no victims"
    if server is not None:
        try:
            logs = server.logs(gid)
        except RuntimeError as err:                    # the oracle process died (its limits)
            why = str(err)
    obs.oracle = OracleView(logs, why)
    ref.oracle = OracleView(None, "the reference's oracle log is not kept: judge obs.oracle(...)")
    return run_judge(code, obs, ref, server.model if server else None)


class StripJudges(NbGraderPreprocessor):
    """Remove every judge and oracle region from every cell before the notebook reaches a kernel."""

    def preprocess_cell(self, cell, resources, index):
        if BEGIN in cell.source or ORACLE_BEGIN in cell.source:
            cell.source = kernel_source(cell.source)
        return cell, resources


PASSED, FAILED = "JudgePassed", "JudgeFailed"


def verdict_outputs(kept: list, passed: bool, reason: str) -> list:
    """A judged cell's outputs: the kernel's displays and streams (never its errors or bare
    results, which nbgrader would score), then the verdict -- an ``error`` output when failed."""
    outputs = [o for o in kept if o.get("output_type") == "display_data"
               or (o.get("output_type") == "stream" and o.get("name") == "stdout")]
    if passed:
        outputs.append(new_output("stream", name="stdout", text="[grader] passed\n"))
    else:
        outputs.append(new_output("error", ename=FAILED, evalue=reason, traceback=[f"{FAILED}: {reason}"]))
    return outputs


class JudgeVerdicts(NbGraderPreprocessor):
    """After execution: decide every judged cell from its observations (runs in the grader).

    Reads ``resources["leaklab"]["observations"]`` (the sandbox's observation folder, set by
    :class:`autograder.sandbox.SandboxedExecute`) and the reference observations of the
    assignment (computed once, cached by content hash: :func:`autograder.reference.reference_for`).
    """

    max_bytes = Int(MAX_BYTES, help="largest observation files of one cell (bytes)").tag(config=True)
    reference_cache = Unicode("", help="folder of cached reference observations "
                                       "(default: $LEAKLAB_CACHE_DIR/reference)").tag(config=True)

    def preprocess(self, nb, resources):
        from nbgrader.coursedir import CourseDirectory

        from .reference import reference_for

        info = resources["nbgrader"]
        judges = {gid: split_judge(src)[1] for gid, src in gradebook_sources(resources).items()}
        judges = {gid: code for gid, code in judges.items() if code}
        if not judges:
            return nb, resources
        coursedir = CourseDirectory(config=self.config)
        source = Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"])) / f"{info['notebook']}.ipynb"
        ref_dir = reference_for(info["assignment"], source, self.config, Path(self.reference_cache) if self.reference_cache else None)
        folder = Path(resources.get("leaklab", {}).get("observations", "/nonexistent"))
        verdicts = resources.setdefault("leaklab", {}).setdefault("verdicts", {})
        server = resources["leaklab"].get("oracle")
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.cell_type != "code" or gid not in judges:
                continue
            passed, reason = judge_cell(judges[gid], gid, folder, ref_dir, server, self.max_bytes)
            cell.outputs = verdict_outputs(cell.outputs, passed, reason)
            verdicts[gid] = (passed, reason)
        return nb, resources


class RemoveScratch(NbGraderPreprocessor):
    """Stop the notebook's oracle and delete the sandbox's scratch folder once the verdicts are in."""

    def preprocess(self, nb, resources):
        import shutil

        server = resources.get("leaklab", {}).pop("oracle", None)
        if server is not None:
            server.close()
        scratch = resources.get("leaklab", {}).get("scratch")
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        return nb, resources
