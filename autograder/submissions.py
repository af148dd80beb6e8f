"""Finding and sanitising real submissions before nbgrader sees them."""
from __future__ import annotations

from pathlib import Path

import nbformat

__all__ = ["SubmissionError", "collect", "find_notebook", "read_submission"]


class SubmissionError(Exception):
    """This submission cannot be graded; the message is the reason reported for the student."""


def _visible(path: Path | str) -> bool:
    """Not a hidden or tool folder/file (.ipynb_checkpoints, __MACOSX, .DS_Store)."""
    return not (path if isinstance(path, str) else path.name).startswith((".", "__"))


def collect(submissions: Path, known: set[str]) -> list[tuple[str, str, Path | None, str | None]]:
    """Every (student, assignment) to grade under ``submissions``.

    Accepts ``<student>/<assignment>/*.ipynb`` and, as a courtesy, a notebook named after an
    assignment directly in ``<student>/``. A student folder with neither is reported.

    Returns:
        Sorted tuples ``(student, assignment, folder or notebook, error or None)``.
    """
    found = []
    for student in sorted(p for p in Path(submissions).iterdir() if p.is_dir() and _visible(p)):
        rows = [(student.name, a.name, a, None) for a in sorted(student.iterdir()) if a.is_dir() and _visible(a)]
        have = {r[1] for r in rows}
        for nb in sorted(student.glob("*.ipynb")):
            for a in sorted(known - have):
                if a in nb.stem:
                    rows.append((student.name, a, nb, None))
                    have.add(a)
        if not rows:
            rows.append((student.name, "?", None, f"no assignment folder in {student.name}/ (expected "
                         f"{student.name}/<assignment>/<assignment>.ipynb, e.g. {student.name}/{min(known)}/)"))
        found.extend(rows)
    return found


def find_notebook(folder: Path, assignment: str) -> Path:
    """The notebook in ``folder`` (or below it) that is the student's ``assignment``.

    Accepts the exact name, one renamed copy whose name contains the assignment id
    ("Copy of a1_watermarking.ipynb", "a1_watermarking (1).ipynb"), or the only notebook.

    Raises:
        SubmissionError: no notebook, or several that could be it (the exact name beside
            a renamed copy is ambiguous too: which one holds the work?).
    """
    if folder.is_file():
        return folder
    notebooks = sorted(p for p in folder.rglob("*.ipynb")
                       if p.is_file() and all(_visible(q) for q in p.relative_to(folder).parts))
    named = [p for p in notebooks if assignment in p.stem]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise SubmissionError(f"several notebooks could be {assignment}: "
                              f"{', '.join(str(p.relative_to(folder)) for p in named)}; keep only the one "
                              f"with your work, named {assignment}.ipynb")
    if len(notebooks) == 1:
        return notebooks[0]
    found = ", ".join(str(p.relative_to(folder)) for p in notebooks) or "none"
    raise SubmissionError(f"no notebook for {assignment} in {folder.name}/ (found: {found}); "
                          f"name it {assignment}.ipynb")


def _load(path: Path) -> nbformat.NotebookNode:
    try:
        text = path.read_bytes().decode("utf-8-sig")                   # tolerate a byte-order mark
        return nbformat.reads(text, as_version=4)
    except (UnicodeDecodeError, nbformat.reader.NotJSONError, ValueError) as err:
        raise SubmissionError(f"{path.name} is not a readable notebook (corrupt JSON: {err}); "
                              "re-download it from Jupyter/Colab with File > Download > .ipynb") from err
    except (KeyError, AttributeError, TypeError) as err:
        raise SubmissionError(f"{path.name} is not a valid Jupyter notebook ({type(err).__name__}: {err})") from err


def read_submission(path: Path, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Read a submitted notebook as nbformat v4 and repair what nbgrader trips over.

    - a UTF-8 byte-order mark is ignored; Colab's widget state (``metadata.widgets``),
      which breaks feedback rendering, is dropped; the kernelspec is reset to ``python3``;
    - cells of an unknown type (e.g. v3 ``heading``) become markdown; cell ids in a
      notebook older than nbformat 4.5 are dropped;
    - of cells that share a ``grade_id`` (copy-pasted cells) the last keeps its nbgrader
      metadata (nbgrader's own ``DeduplicateIds`` leaves an empty dict that crashes
      ``add_missing_cells`` on 0.9.6); cells with a ``grade_id`` the source does not have
      become plain cells.

    Args:
        path: the submitted file. source: the instructor's source notebook of the assignment.

    Raises:
        SubmissionError: not a readable notebook, or cells with the students' answers are
            missing (nbgrader cannot re-insert tests without them); the message says what to do.
    """
    nb = _load(path)
    if not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{path.name} has no list of cells; it is not a Jupyter notebook")
    known = {c.metadata["nbgrader"]["grade_id"] for c in source.cells if "grade_id" in c.metadata.get("nbgrader", {})}
    seen: set[str] = set()
    for cell in reversed(nb.cells):
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            cell["cell_type"] = "markdown"
            for key in ("outputs", "execution_count", "level"):
                cell.pop(key, None)
        meta = cell.setdefault("metadata", {})
        nbg = meta.get("nbgrader")
        gid = nbg.get("grade_id") if isinstance(nbg, dict) else None
        if "nbgrader" in meta and (gid is None or gid in seen or gid not in known):
            del meta["nbgrader"]
        elif gid is not None:
            seen.add(gid)
    answers = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")]
    missing = [gid for gid in answers if gid not in seen]
    if missing:
        raise SubmissionError(f"{path.name} lacks the answer cells of the released notebook ({', '.join(missing)}); "
                              "copy your code into the cells of the released notebook instead of a new one")
    if nb.get("nbformat_minor", 0) < 5:                 # cell ids exist from nbformat 4.5 on
        for cell in nb.cells:
            cell.pop("id", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        raise SubmissionError(f"{path.name} is not a valid notebook after repair: {err.message}") from err
    return nb
