"""Finding and sanitising real submissions before nbgrader sees them."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat

__all__ = ["SubmissionError", "find_notebook", "read_submission"]


class SubmissionError(Exception):
    """This submission cannot be graded; the message is the reason reported for the student."""


def find_notebook(folder: Path, assignment: str) -> Path:
    """The notebook in ``folder`` that is the student's ``assignment``.

    Accepts the exact name, a renamed copy whose name contains the assignment id
    ("Copy of a1_watermarking.ipynb", "a1_watermarking (1).ipynb"), or the only
    notebook in the folder.

    Raises:
        SubmissionError: no notebook, or several that could be it.
    """
    notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))
    exact = folder / f"{assignment}.ipynb"
    if exact in notebooks:
        return exact
    named = [p for p in notebooks if assignment in p.stem]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise SubmissionError(f"several notebooks could be {assignment}: {', '.join(p.name for p in named)}; "
                              f"keep one named {assignment}.ipynb")
    if len(notebooks) == 1:
        return notebooks[0]
    found = ", ".join(p.name for p in notebooks) or "none"
    raise SubmissionError(f"no notebook for {assignment} in {folder} (found: {found}); "
                          f"name it {assignment}.ipynb")


def read_submission(path: Path) -> nbformat.NotebookNode:
    """Read a submitted notebook as nbformat v4 and fix what nbgrader trips over.

    The kernelspec is reset to ``python3`` (the grader's kernel decides, not the
    submission's). Of cells that share a ``grade_id`` (copy-pasted cells), the last keeps
    its nbgrader metadata and the others become plain cells. nbgrader's own
    ``DeduplicateIds`` does the same but leaves an empty ``nbgrader`` dict behind, which
    crashes ``OverwriteCells.add_missing_cells`` (KeyError 'grade_id', nbgrader 0.9.6).

    Raises:
        SubmissionError: the file is not a readable Jupyter notebook.
    """
    try:
        nb = nbformat.read(str(path), as_version=4)
    except (json.JSONDecodeError, UnicodeDecodeError, nbformat.reader.NotJSONError) as err:
        raise SubmissionError(f"{path.name} is not a readable notebook (corrupt JSON: {err}); "
                              "re-download it from Jupyter/Colab with File > Download > .ipynb") from err
    except (KeyError, ValueError, AttributeError, TypeError) as err:
        raise SubmissionError(f"{path.name} is not a valid Jupyter notebook ({type(err).__name__}: {err})") from err
    if not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{path.name} has no list of cells; it is not a Jupyter notebook")
    seen: set[str] = set()
    for cell in reversed(nb.cells):
        meta = cell.get("metadata", {})
        gid = meta.get("nbgrader", {}).get("grade_id") if isinstance(meta.get("nbgrader"), dict) else None
        if "nbgrader" in meta and (gid is None or gid in seen):
            del meta["nbgrader"]
        elif gid is not None:
            seen.add(gid)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return nb
