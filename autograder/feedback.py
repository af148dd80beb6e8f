"""Feedback without hidden tests: their source and their tracebacks never reach students."""
from __future__ import annotations

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
NOTICE = "# (hidden tests: not shown)"
REMOVED = "[output removed from the feedback: it contained hidden-test code]\n"


def redact_source(source: str) -> str:
    """Replace every BEGIN/END HIDDEN TESTS region (markers included) by one notice line."""
    out, hidden = [], False
    for line in source.splitlines():
        if BEGIN in line:
            hidden = True
            out.append(line[: line.index(BEGIN)] + NOTICE)
        elif END in line:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


def hidden_lines(source: str, min_length: int = 16) -> set[str]:
    """The distinctive lines inside the hidden regions of ``source`` (stripped, >= min_length chars)."""
    lines, hidden = set(), False
    for line in source.splitlines():
        if BEGIN in line:
            hidden = True
        elif END in line:
            hidden = False
        elif hidden and len(line.strip()) >= min_length:
            lines.add(line.strip())
    return lines


def _text(output) -> str:
    """All the text an output shows: stream text, every data representation, tracebacks."""
    parts = [output.get("text", ""), output.get("evalue", ""), "\n".join(output.get("traceback", []))]
    for value in output.get("data", {}).values():
        parts.append(value if isinstance(value, str) else "\n".join(value) if isinstance(value, list) else "")
    return "\n".join(parts)


class RedactHiddenTests(NbGraderPreprocessor):
    """Cells that hold hidden tests: the hidden source is dropped and all outputs
    (tracebacks, printed values) become a one-line verdict that names no test. Any other
    output that quotes hidden-test code (e.g. a student printing ``In``) is removed too."""

    def preprocess(self, nb, resources):
        secret = set()
        for cell in nb.cells:
            if cell.cell_type == "code" and BEGIN in cell.source:
                secret |= hidden_lines(cell.source)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if BEGIN in cell.source:
                failed = any(o.output_type == "error" for o in cell.outputs)
                cell.source = redact_source(cell.source)
                text = ("Hidden tests failed: re-read this part's specification (edge cases, equations, budgets).\n"
                        if failed else "Hidden tests passed.\n")
                cell.outputs = [new_output("stream", name="stdout", text=text)]
            elif secret:
                cell.outputs = [new_output("stream", name="stdout", text=REMOVED)
                                if any(s in _text(o) for s in secret) else o
                                for o in cell.outputs]
        return nb, resources
