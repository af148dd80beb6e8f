"""Feedback without hidden tests: their source and their tracebacks never reach students."""
from __future__ import annotations

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
NOTICE = "# (hidden tests: not shown)"


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


class RedactHiddenTests(NbGraderPreprocessor):
    """For cells that hold hidden tests: drop the hidden source and replace all outputs
    (tracebacks, printed values) by a one-line verdict that names no test."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or BEGIN not in cell.source:
            return cell, resources
        failed = any(o.output_type == "error" for o in cell.outputs)
        cell.source = redact_source(cell.source)
        text = ("Hidden tests failed: re-read this part's specification (edge cases, equations, budgets).\n"
                if failed else "Hidden tests passed.\n")
        cell.outputs = [new_output("stream", name="stdout", text=text)]
        return cell, resources
