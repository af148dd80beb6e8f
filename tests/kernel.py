"""A live Jupyter kernel for tests: execute a notebook once, then swap one function and
re-run only the test cells aimed at it (no retraining of everything per wrong answer)."""
from __future__ import annotations

import queue
from dataclasses import dataclass

import nbformat
from jupyter_client.manager import start_new_kernel


@dataclass
class Outcome:
    ok: bool
    stdout: str
    error: str


class Kernel:
    """A python3 kernel; ``run(code)`` returns whether the code raised, and its output."""

    def __init__(self, cwd: str | None = None):
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=cwd)

    def run(self, code: str, timeout: float = 600) -> Outcome:
        out, err = [], ""
        def hook(msg):
            nonlocal err
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                out.append(c["text"])
            elif t == "error":
                err = f"{c['ename']}: {c['evalue']}"
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False)
        ok = reply["content"]["status"] == "ok"
        if not ok and not err:
            err = f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}"
        return Outcome(ok, "".join(out), err)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_test(cell) -> bool:
    nbg = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and nbg.get("grade", False) and not nbg.get("solution", False)


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)
