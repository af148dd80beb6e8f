# nbgrader course configuration for LeakLab: everything grading needs to be safe lives here,
# so `nbgrader autograde` / `nbgrader generate_feedback` on a course that uses this file
# behave like `python -m autograder`: the student's kernel runs in a bubblewrap sandbox
# (autograder/sandbox.py), judged cells are decided in the grader from the kernel's recorded
# observations (autograder/judge.py), and feedback never shows hidden tests (autograder/feedback.py).
# The autograder package must be importable (run nbgrader from the repository root, or
# put the repository on PYTHONPATH).
import os

from autograder.feedback import MarkPending, RedactHiddenTests
from autograder.judge import JudgeVerdicts, RemoveScratch, StripJudges
from autograder.sandbox import SandboxedExecute
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, GetGrades, IgnorePattern,
                                    LimitOutput, SaveAutoGrades)

c = get_config()  # noqa: F821 -- provided by traitlets when nbgrader loads the file

c.CourseDirectory.course_id = "leaklab"

# Autograde: judges are cut out before the kernel sees the notebook; the kernel is sandboxed;
# the judges decide every judged cell from observations; the scratch folder is deleted.
c.Autograde.autograde_preprocessors = [
    StripJudges, SandboxedExecute, IgnorePattern, JudgeVerdicts, RemoveScratch,
    ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
]
c.GenerateFeedback.preprocessors = [GetGrades, MarkPending, RedactHiddenTests, CSSHTMLHeaderPreprocessor]

# The grader's own process (judges load data and build models; the oracle trains victims) runs
# in the ci profile with a non-interactive plotting backend, also under nbgrader's CLI.
from autograder.pipeline import GRADER_ENV  # noqa: E402
os.environ.update(GRADER_ENV)

# Per-cell limits. The slowest cells of a ci run on 2 CPU cores (a2's budget curves: 15
# surrogates; a2's adaptive end-to-end test) take 35-50 s of wall time, up to 100 s of CPU on
# the kernel's 2 threads. The limit is on CPU time -- 300 s, three times the slowest cell's --
# so a correct answer on a machine busy with other grading jobs is slowed, not
# stopped, while an endless loop still is; the wall-clock limit is only a backstop for a cell
# that sleeps or blocks. A cell past a limit ends the kernel (the whole sandbox): the cells
# that ran keep their verdicts, the rest score 0 with the reason shown, and a stop by the
# wall-clock limit of a cell that was computing is graded once more, alone, after the rest of
# the class (a cell idle past it -- sleeping, blocked -- is not: sandbox.IDLE_LIMIT).
c.SandboxedExecute.cell_cpu_seconds = 300   # CPU seconds per cell (all the kernel's threads)
c.Execute.timeout = 300                     # wall-clock seconds per cell (backstop: 6x the slowest cell)
c.Execute.kernel_name = "python3"         # one kernel for everyone, whatever the submission says
c.Execute.execute_retries = 0
c.SandboxedExecute.notebook_timeout = 1800          # wall-clock seconds per notebook (a2, the slowest, takes ~150 s)
c.SandboxedExecute.max_output_bytes = 64 * 2**20    # bytes of output per notebook
c.SandboxKernelManager.memory_bytes = 8 * 2**30     # address space (bytes); torch's own mappings need ~3 GiB
c.SandboxKernelManager.cpu_seconds = 3600           # CPU seconds per kernel
c.SandboxKernelManager.processes = 512              # processes + threads of the sandbox uid
c.SandboxKernelManager.open_files = 1024
c.SandboxKernelManager.file_bytes = 2**30           # largest file (bytes)

# Output on stderr (torch/transformers warnings, tqdm bars) must not zero a passing test
# cell: nbgrader counts any stderr stream as a failure. Failing tests still fail, since
# they leave an `error` output, which this pattern does not touch.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"[\s\S]*"

# A student who deletes a test cell (or strips its metadata) is graded on the
# instructor's copy, re-inserted, instead of waiting for a manual grade.
c.OverwriteCells.add_missing_cells = True

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
