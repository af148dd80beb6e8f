"""Finding and sanitising real submissions before nbgrader sees them."""
from __future__ import annotations

import copy
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


def _plain(cell) -> nbformat.NotebookNode:
    """The student's own cell as plain content: its type and text, nothing else it carried
    (no metadata, tags, outputs, attachments or ids)."""
    kind = cell.get("cell_type")
    text = cell.get("source", "")
    text = "".join(text) if isinstance(text, list) else str(text)
    if kind == "code":
        return nbformat.v4.new_code_cell(text)
    if kind == "raw":
        return nbformat.v4.new_raw_cell(text)
    return nbformat.v4.new_markdown_cell(text)


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata")
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    gid = nbg.get("grade_id") if isinstance(nbg, dict) else None
    return gid if isinstance(gid, str) else None


def read_submission(path: Path, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Rebuild a submitted notebook from the instructor's source: the submission is data.

    Every cell the source marks for nbgrader (locked, graded, answer) is taken from the
    source by its ``grade_id`` -- source text, type and nbgrader metadata -- except that an
    answer cell keeps the student's text. Every other cell of the submission becomes a plain
    cell holding only its type and text, placed after the marked cell it followed. Nothing
    else of the file is kept: no metadata, tags, kernelspec, checksums, points, outputs or
    attachments. Of cells that share a ``grade_id`` (copy-pasted cells) the last is the answer
    and the others are plain cells; a ``grade_id`` the source does not have is a plain cell.
    The file may be nbformat v3 or v4, with a byte-order mark; v3 ``heading`` cells become
    markdown.

    Args:
        path: the submitted file. source: the instructor's source notebook of the assignment.

    Returns:
        A valid nbformat 4.5 notebook with the ``python3`` kernelspec.

    Raises:
        SubmissionError: not a readable notebook, or cells with the students' answers are
            missing (code pasted into a new notebook); the message says what to do.
    """
    nb = _load(path)
    if not isinstance(nb.get("cells"), list) or not all(isinstance(c, dict) for c in nb.cells):
        raise SubmissionError(f"{path.name} has no list of cells; it is not a Jupyter notebook")
    marked = [c for c in source.cells if _grade_id(c)]
    answers = {_grade_id(c) for c in marked if c.metadata["nbgrader"].get("solution")}
    last = {}
    for i, cell in enumerate(nb.cells):
        if _grade_id(cell) in answers:
            last[_grade_id(cell)] = i
    missing = sorted(answers - set(last))
    if missing:
        raise SubmissionError(f"{path.name} lacks the answer cells of the released notebook ({', '.join(missing)}); "
                              "copy your code into the cells of the released notebook instead of a new one")
    known = {_grade_id(c) for c in marked}
    after: dict[str | None, list] = {}          # grade_id of the marked cell a plain cell followed -> cells
    anchor = None
    for i, cell in enumerate(nb.cells):
        gid = _grade_id(cell)
        if gid in known and (gid not in answers or last[gid] == i):
            anchor = gid
        else:
            after.setdefault(anchor, []).append(_plain(cell))
    out = nbformat.v4.new_notebook()
    out.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                    "language_info": {"name": "python"}}
    out.cells = list(after.get(None, []))
    for cell in marked:
        gid = _grade_id(cell)
        new = copy.deepcopy(cell)
        new.pop("id", None)
        new.pop("attachments", None)
        if gid in answers:
            student = nb.cells[last[gid]]
            text = student.get("source", "")
            new.source = "".join(text) if isinstance(text, list) else str(text)
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        out.cells.append(new)
        out.cells.extend(after.get(gid, []))
    for i, cell in enumerate(out.cells):
        cell["id"] = f"cell-{i}"
    out = nbformat.from_dict(out)
    try:
        nbformat.validate(out)
    except nbformat.ValidationError as err:
        raise SubmissionError(f"{path.name} could not be rebuilt into a valid notebook: {err.message}") from err
    return out
