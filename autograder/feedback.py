"""Feedback without hidden tests: their source, their tracebacks and their judges never reach students."""
from __future__ import annotations

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool

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


def _is_test(cell) -> bool:
    nbg = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(nbg.get("grade")) and not nbg.get("solution")


class RedactHiddenTests(NbGraderPreprocessor):
    """Feedback without hidden tests, for the instructor's test cells (never a student's cell,
    whatever text it holds -- the grader rebuilt the notebook, so only the source's cells carry
    nbgrader's grade metadata):

    - the hidden regions of the source (probes and judges) become one notice line;
    - a cell whose hidden probe ran in the kernel shows only a one-line verdict (its outputs
      could quote the probe); a visible test keeps the student's own check report and gets
      the verdict line;
    - the judge's reason for a failure is shown only with ``show_reasons`` (default off);
    - any other cell's output that quotes a hidden line is removed.
    """

    show_reasons = Bool(False, help="show the judges' failure messages (never their code)").tag(config=True)

    def _verdict(self, cell) -> str:
        from .judge import FAILED
        from .sandbox import LIMIT_NOTICE

        errors = [o for o in cell.outputs if o.output_type == "error"]
        if not errors:
            return "Graded checks passed.\n"
        why = ""
        if self.show_reasons and errors[-1].get("ename") in (FAILED, LIMIT_NOTICE):
            why = f" ({errors[-1].get('evalue', '')})"
        elif errors[-1].get("ename") == LIMIT_NOTICE:
            why = f" ({errors[-1].get('evalue', '')})"
        return ("Graded checks failed: re-read this part's specification (edge cases, equations, budgets)"
                + why + ".\n")

    def preprocess(self, nb, resources):

        secret = set()
        for cell in nb.cells:
            if _is_test(cell) and BEGIN in cell.source:
                secret |= hidden_lines(cell.source)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if _is_test(cell):
                probe_hidden = bool(hidden_lines(cell.source, min_length=1))
                verdict = new_output("stream", name="stdout", text=self._verdict(cell))
                cell.source = redact_source(cell.source)
                if probe_hidden:
                    cell.outputs = [verdict]
                else:
                    cell.outputs = [o for o in cell.outputs if o.output_type != "error"
                                    and "[grader]" not in o.get("text", "")] + [verdict]
            elif secret:
                cell.outputs = [new_output("stream", name="stdout", text=REMOVED)
                                if any(t in _text(o) for t in secret) else o
                                for o in cell.outputs]
        return nb, resources


PENDING = ("**Awaiting grading.** This answer has not been graded yet: the 0 beside it is not its score, "
           "and it is not in the total above.")


class MarkPending(NbGraderPreprocessor):
    """In feedback released before hand grading is finished, every answer that still awaits a
    human says so (a note above it) instead of showing a bare 0; runs after nbgrader's GetGrades."""

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook, MissingEntry

        info = resources.get("nbgrader", {})
        if "db_url" not in info:
            return nb, resources
        with Gradebook(info["db_url"]) as gb:
            pending = set()
            for cell in nb.cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if not gid or not cell.metadata["nbgrader"].get("grade"):
                    continue
                try:
                    g = gb.find_grade(gid, info["notebook"], info["assignment"], info["student"])
                except MissingEntry:
                    continue
                if g.needs_manual_grade:
                    pending.add(gid)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") in pending:
                if cell.cell_type == "markdown":
                    cell.source = f"> {PENDING}\n\n{cell.source}"
                else:
                    cell.outputs = [new_output("stream", name="stdout", text=PENDING.replace("**", "") + "\n"),
                                    *cell.get("outputs", [])]
        return nb, resources
