"""The reference solution of a source notebook as a Python namespace (for benchmark scripts)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


def reference_namespace(assignment: str, also: Callable[[str], str | None] = lambda src: None) -> dict:
    """Execute, in notebook order, the solution cells of ``source/<assignment>`` and the part
    of any other code cell that ``also(source)`` returns (e.g. the imports); no training cells.
    Sets ``LEAKLAB_PROFILE=ci`` unless a profile is chosen already."""
    os.environ.setdefault("LEAKLAB_PROFILE", "ci")
    nb = json.loads((REPO / "source" / assignment / f"{assignment}.ipynb").read_text())
    ns: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        meta = cell["metadata"].get("nbgrader", {})
        src = "".join(cell["source"])
        part = src if meta.get("solution") and not meta.get("grade") else also(src)
        if part is not None:
            exec(part, ns)
    return ns
