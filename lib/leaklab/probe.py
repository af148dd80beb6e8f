"""Observations for the grader: what a test cell's probe records, as plain data.

A graded test cell in a LeakLab notebook does not decide its own points. Its *probe* calls
the student's functions on fixed inputs and records what came back; a *judge*, which runs
in the grader's own process and never in the student's kernel, decides the points from
those records (``autograder/judge.py``). In a student's own session nothing is written:
the probe only keeps the values in memory, and the visible ``check()`` blocks print the
student's verdicts as before.

Schema ``leaklab.observations/1`` (the whole boundary between the sandboxed kernel and the
grader; the grader decodes it into exact types and trusts nothing else of the kernel):
one pair of files per test cell in the folder ``$LEAKLAB_OBSERVATIONS``,

- ``<grade_id>.json``: ``{"schema": "leaklab.observations/1", "cell": grade_id,
  "values": {name: value}}``, where a value is JSON ``null``/bool/int/float/str, a JSON list
  of values, or one of the tagged objects ``{"$bytes": hex}``, ``{"$float": "nan"|"inf"|"-inf"}``,
  ``{"$dict": {str: value}}``, ``{"$tensor": key}`` (an entry of the safetensors file),
  ``{"$raised": exception class name, "message": str}``;
- ``<grade_id>.safetensors``: the tensors the JSON refers to (any dtype safetensors has).

Recorded Python values map as: ``None``/``bool``/``int``/``float``/``str`` as themselves;
``bytes``; ``list``/``tuple`` as lists; ``dict`` with ``str`` keys; ``torch.Tensor`` and
``np.ndarray`` (and NumPy scalars, as Python scalars); a dataclass as the dict of its fields;
an ``nn.Module`` as the dict of its ``state_dict()``. Anything else raises ``TypeError`` in
the probe (never pickle, never an object whose class the student defines).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["SCHEMA", "Probe", "probe", "encode"]

SCHEMA = "leaklab.observations/1"
ENV = "LEAKLAB_OBSERVATIONS"            #: the folder the grader gives the sandboxed kernel
_GRADE_ID = re.compile(r"^[A-Za-z0-9_]{1,100}$")


def encode(value: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    """Encode ``value`` as schema-1 JSON; tensors go into ``tensors`` under ``key``-derived names.

    Raises:
        TypeError: a value of a type the schema does not carry.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, np.generic):
        return encode(value.item(), tensors, key)
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"$tensor": key}
    if isinstance(value, nn.Module):
        value = value.state_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"observation {key!r}: dict keys must be str")
        return {"$dict": {k: encode(v, tensors, f"{key}.{k}") for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [encode(v, tensors, f"{key}.{i}") for i, v in enumerate(value)]
    raise TypeError(f"observation {key!r}: cannot record a {type(value).__name__} "
                    "(record numbers, strings, bytes, tensors, arrays, lists, dicts or a model)")


class Probe:
    """The observations of one test cell (a mapping ``name -> value`` being recorded).

    Use it through :func:`probe`. ``p[name] = value`` records a value; :meth:`call` records
    what a call returned, or which exception it raised.
    """

    def __init__(self, grade_id: str):
        if not _GRADE_ID.match(grade_id):
            raise ValueError(f"grade_id must be letters, digits and underscores, got {grade_id!r}")
        self.grade_id = grade_id
        self.values: dict[str, Any] = {}

    def __setitem__(self, name: str, value: Any) -> None:
        self.values[str(name)] = value

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def call(self, name: str, fn: Callable, *args, **kwargs) -> Any:
        """Call ``fn(*args, **kwargs)``; record its result, or ``{"$raised": type}`` if it raised.

        Returns:
            The result, or ``None`` when the call raised an ``Exception``.
        """
        try:
            result = fn(*args, **kwargs)
        except Exception as err:                      # the judge decides whether raising was right
            self.values[name] = _Raised(type(err).__name__, str(err)[:200])
            return None
        self.values[name] = result
        return result

    def save(self, folder: str | Path) -> None:
        """Write ``<grade_id>.json`` (and ``.safetensors`` if any tensors) into ``folder``."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        values = {k: ({"$raised": v.name, "message": v.message} if isinstance(v, _Raised) else encode(v, tensors, k))
                  for k, v in self.values.items()}
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if tensors:
            save_file(tensors, str(folder / f"{self.grade_id}.safetensors"))
        doc = {"schema": SCHEMA, "cell": self.grade_id, "values": values}
        (folder / f"{self.grade_id}.json").write_text(json.dumps(doc))


@dataclasses.dataclass(frozen=True)
class _Raised:
    name: str
    message: str


@contextlib.contextmanager
def probe(grade_id: str) -> Iterator[Probe]:
    """Record the observations of the test cell ``grade_id``.

    Inside the grader's sandbox (``$LEAKLAB_OBSERVATIONS`` set) the values are written when
    the block ends, also when it ends with an exception (which is recorded under
    ``"__exception__"`` and re-raised). Elsewhere nothing is written.

    Args:
        grade_id: the nbgrader ``grade_id`` of the cell (letters, digits, underscores).

    Yields:
        A :class:`Probe`.

    Raises:
        ValueError: a malformed ``grade_id``.
    """
    p = Probe(grade_id)
    try:
        yield p
    except Exception as err:
        p.values["__exception__"] = _Raised(type(err).__name__, str(err)[:200])
        raise
    finally:
        folder = os.environ.get(ENV)
        if folder:
            p.save(folder)
