"""Grading a class in parallel: one task per (student, assignment) on ``dask.distributed``.

Each hand-in is one task, :func:`grade_submission`. It runs on a Dask worker (or in this
process when ``workers=0``), in a scratch nbgrader course of its own made from the assignment's
source (one template per assignment and worker process, copied per task), through the same
chain as ``nbgrader autograde`` (``nbgrader_config.py``: sandbox, judges, oracle). It returns
plain data -- per-cell scores and reasons, the autograded notebook, optionally the feedback
HTML, the wall time -- and never touches the course: only the coordinating process writes the
course's gradebook (:func:`autograder.course.grade` imports each result with nbgrader's own
``SaveAutoGrades`` the moment it arrives), so there is one writer whatever the cluster.

Where the tasks run (:func:`run`):

- ``workers=0``: in this process, one after another (the demo; a trusted local re-run).
- ``workers=N``: a :class:`distributed.LocalCluster` of ``N`` single-threaded worker processes
  on this machine (non-daemonic, so each can start its kernel's oracle process). Default
  :func:`default_workers`: the cores divided by the threads a kernel uses
  (:data:`~autograder.reference.KERNEL_THREADS`), at least 1.
- ``scheduler="tcp://HOST:PORT"``: an existing Dask cluster (``dask scheduler`` / ``dask worker``
  on a lab's machines, dask-jobqueue on Slurm/PBS, dask-kubernetes, Dask Gateway). Its workers
  need this repository importable, bubblewrap, the data at the same ``LEAKLAB_DATA_DIR`` and
  ``DASK_DISTRIBUTED__WORKER__DAEMON=False``; each computes (once, cached, under a file lock)
  the reference observations of an assignment it has not seen.

Faults: a worker that dies mid-task (killed, out of memory) has its task re-run elsewhere by
the scheduler (``distributed.scheduler.allowed-failures`` times). The scheduler counts a death
against every task the worker held, queued ones included, so a task that reaches the limit in
the class's round is graded once more alone on the cluster after the rest of the class; only
if it keeps killing its worker there does it end as that student's error with the reason.
A notebook stopped by a *wall-clock* limit while it computed (a loaded machine, not its own
CPU use: :data:`~autograder.sandbox.WALL_LIMIT` in the reason) is graded once more after the
rest of the class, alone on the cluster, before its 0 stands; a cell that sat idle past the
limit (:data:`~autograder.sandbox.IDLE_LIMIT`) is not re-run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from .pipeline import GradeResult, _api, _grading_env, _outcomes, _reason, _scores
from .publish import stamp_bytes
from .sandbox import WALL_LIMIT
from .submissions import SubmissionError, read_submission


@dataclass(frozen=True)
class Task:
    """One hand-in to grade: who, which assignment, and the file's bytes exactly as collected.

    ``timestamp``: the hand-in time (nbgrader's ``timestamp.txt`` text) or None;
    ``feedback``: also render nbgrader's (redacted) feedback HTML in the task.
    """

    student: str
    assignment: str
    data: bytes
    timestamp: str | None = None
    feedback: bool = False

    @property
    def key(self) -> str:
        """A Dask key naming the hand-in (unique per content)."""
        return f"grade-{self.assignment}-{self.student}-{hashlib.sha256(self.data).hexdigest()[:12]}"


def source_files(folder: Path, settings=None) -> dict[str, bytes]:
    """The assignment's source folder as ``{relative path: bytes}`` (what a worker needs).

    With ``settings`` (:class:`autograder.publish.Settings`), the notebook ``<folder name>.ipynb`` is
    stamped with the course repository as ``release`` stamps it (a course folder's source already is).
    """
    folder = Path(folder)
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    name = f"{folder.name}.ipynb"
    if settings is not None and name in files:
        files[name] = stamp_bytes(files[name], folder.name, settings)
    return files


_TEMPLATES: dict[tuple[str, str, bool], Path] = {}


def _template(assignment: str, files: dict[str, bytes], sandbox: bool) -> Path:
    """A generated nbgrader course holding only ``assignment``, made once per worker process."""
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()
    key = (assignment, digest, sandbox)
    if key in _TEMPLATES and _TEMPLATES[key].is_dir():
        return _TEMPLATES[key]
    root = Path(tempfile.mkdtemp(prefix=f"leaklab-template-{assignment}-"))
    for rel, data in files.items():
        path = root / "source" / assignment / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    res = _api(root, sandbox=sandbox).generate_assignment(assignment, force=True)
    if not res["success"]:
        raise RuntimeError(f"nbgrader could not generate {assignment}: {_reason(res)}")
    _TEMPLATES[key] = root
    return root


def grade_submission(task: Task, files: dict[str, bytes], timeout: int | None = None,
                     sandbox: bool = True) -> GradeResult:
    """Grade one hand-in in a scratch nbgrader course; the task of every grading run.

    Args:
        task: the hand-in.
        files: the assignment's source folder (:func:`source_files`), the instructor's notebook
            with its judges included.
        timeout: per-cell wall-clock backstop in seconds (default: ``nbgrader_config.py``'s).
        sandbox: run the kernel in bubblewrap.

    Returns:
        A :class:`~autograder.pipeline.GradeResult` with ``notebook`` (the autograded notebook,
        JSON text), ``submitted`` (the rebuilt hand-in nbgrader graded), ``feedback_html``
        (when ``task.feedback``), ``seconds`` and ``worker``; ``error`` says why a hand-in could
        not be graded (not a notebook, corrupt, nbgrader failed).

    Raises:
        autograder.reference.ReferenceFailure: the reference solution fails its own judges (nobody can be graded).
    """
    started = time.monotonic()
    with _grading_env():
        template = _template(task.assignment, files, sandbox)
        course = Path(tempfile.mkdtemp(prefix=f"leaklab-task-{task.assignment}-"))
        try:
            shutil.copytree(template, course, dirs_exist_ok=True)
            result = _grade_in(course, task, timeout, sandbox)
        finally:
            shutil.rmtree(course, ignore_errors=True)
    result.worker = f"{socket.gethostname()}:{os.getpid()}"
    result.seconds = time.monotonic() - started
    return result


def _grade_in(course: Path, task: Task, timeout: int | None, sandbox: bool) -> GradeResult:
    from .reference import lm_cache, readable, reference_for

    a, s = task.assignment, task.student
    api = _api(course, timeout, sandbox)
    source = course / "source" / a / f"{a}.ipynb"
    readable(lm_cache())
    reference_for(a, source, api.config)
    original = course / "originals" / f"{a}.ipynb"
    original.parent.mkdir(parents=True)
    original.write_bytes(task.data)
    try:
        nb = read_submission(original, nbformat.read(str(source), as_version=4))
    except SubmissionError as err:
        return GradeResult(s, a, error=str(err))
    dest = course / "submitted" / s / a
    dest.mkdir(parents=True)
    nbformat.write(nb, str(dest / f"{a}.ipynb"))
    if task.timestamp:
        (dest / "timestamp.txt").write_text(task.timestamp)
    res = api.autograde(a, s, force=True, create=True)
    if not res["success"]:
        return GradeResult(s, a, error=_reason(res))
    result = _scores(course, s, a)
    result.reasons, result.warning = _outcomes(course, s, a)
    result.notebook = (course / "autograded" / s / a / f"{a}.ipynb").read_text()
    result.submitted = (dest / f"{a}.ipynb").read_text()
    if task.feedback:
        fb = api.generate_feedback(a, s, force=True)
        html = course / "feedback" / s / a / f"{a}.html"
        if fb["success"] and html.exists():
            result.feedback_html = html.read_text()
        else:
            result.warning = "; ".join(w for w in (result.warning, f"no feedback file: {_reason(fb)}") if w)
    return result


def default_workers(cores: int | None = None) -> int:
    """Worker processes for a LocalCluster: the cores (``os.sched_getaffinity``) divided by the
    threads one kernel uses (:data:`~autograder.reference.KERNEL_THREADS`), at least 1."""
    from .reference import KERNEL_THREADS

    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // KERNEL_THREADS)


def _stopped_by_wall(r: GradeResult) -> bool:
    return bool(r.warning and WALL_LIMIT in r.warning)


def _failed(task: Task, why: str) -> GradeResult:
    return GradeResult(task.student, task.assignment, error=why)


def run(tasks: list[Task], files: dict[str, dict[str, bytes]], *, workers: int = 0, scheduler: str | None = None,
        timeout: int | None = None, sandbox: bool = True, on_result: Callable[[Task, GradeResult], None] | None = None,
        progress: bool = True) -> list[GradeResult]:
    """Grade ``tasks`` (in this process, on a LocalCluster, or on a Dask cluster) and return one
    result per task, in the order given.

    Args:
        tasks: the hand-ins. files: assignment -> :func:`source_files` of its source folder.
        workers: 0 grades in this process; N > 0 starts a LocalCluster of N worker processes.
        scheduler: address of an existing Dask scheduler (``workers`` is then ignored).
        timeout: per-cell wall-clock backstop (seconds). sandbox: bubblewrap for the kernels.
        on_result: called in this process with each final result as it arrives (the course
            writes its gradebook here: the only writer); a result stopped by a wall-clock
            limit, or whose worker kept dying in the class's round, is final only after its one
            re-run alone (re-runs go one at a time, after the class).
        progress: a tqdm bar over the class with an ETA.

    Returns:
        One :class:`~autograder.pipeline.GradeResult` per task; a task whose worker kept dying
        or that raised is an ``error`` result naming the reason.

    Raises:
        autograder.reference.ReferenceFailure: the reference solution fails its own judges.
        ValueError: ``workers`` < 0, or a task's assignment has no ``files``.
    """
    from tqdm.auto import tqdm

    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 grades in this process), got {workers}")
    for t in tasks:
        if t.assignment not in files:
            raise ValueError(f"no source files for assignment {t.assignment!r}")
    results: dict[int, GradeResult] = {}
    bar = tqdm(total=len(tasks), unit="notebook", desc="grading", disable=not progress or not tasks)

    def done(i: int, r: GradeResult, final: bool) -> bool:
        if not final and _stopped_by_wall(r):
            return False
        results[i] = r
        bar.update(1)
        bar.set_postfix_str(f"{r.student}/{r.assignment} {r.seconds or 0:.0f} s", refresh=False)
        if on_result is not None:
            on_result(tasks[i], r)
        return True

    try:
        if scheduler is None and workers == 0:
            _run_here(tasks, files, timeout, sandbox, done)
        else:
            _run_dask(tasks, files, workers, scheduler, timeout, sandbox, done)
    finally:
        bar.close()
    return [results[i] for i in range(len(tasks))]


def _run_here(tasks, files, timeout, sandbox, done) -> None:
    again = []
    for i, t in enumerate(tasks):
        if not done(i, _guarded(t, files[t.assignment], timeout, sandbox), False):
            again.append(i)
    for i in again:                                   # the re-run, after everyone else
        done(i, _guarded(tasks[i], files[tasks[i].assignment], timeout, sandbox), True)


def _guarded(task, files, timeout, sandbox) -> GradeResult:
    try:
        return grade_submission(task, files, timeout, sandbox)
    except Exception as err:                          # one hand-in's failure costs only that student
        return _crashed(task, err)


def _crashed(task: Task, err: Exception) -> GradeResult:
    """That student's error for a task that raised; a broken reference stops the whole run."""
    from .reference import ReferenceFailure

    if isinstance(err, ReferenceFailure):
        raise err
    return _failed(task, f"grading crashed: {type(err).__name__}: {err}"[:400])


def _run_dask(tasks, files, workers, scheduler, timeout, sandbox, done) -> None:
    import dask
    from distributed import CancelledError, Client, KilledWorker, LocalCluster, as_completed

    with dask.config.set({"distributed.worker.daemon": False}):
        if scheduler is not None:
            cluster, client = None, Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, memory_limit=0)
            client = Client(cluster)
    try:
        # The source files (≈ 100 KB an assignment) travel inside each task, not scattered: scattered
        # data lives only on the workers that hold it, so when every one of them has been killed (a
        # hand-in that kills its worker each time, on a small cluster) the scheduler forgets it and
        # cancels every task still waiting for it ("already forgotten"), costing other students.
        def submit(i: int, retry: bool = False):
            t = tasks[i]
            fut = client.submit(grade_submission, t, files[t.assignment], timeout, sandbox,
                                key=t.key + ("-rerun" if retry else ""), pure=False)
            fut.leaklab_index = i
            return fut

        def outcome(fut) -> GradeResult:
            t = tasks[fut.leaklab_index]
            try:
                return fut.result()
            except KilledWorker as err:
                return _failed(t, "the grading worker died every time it graded this hand-in, alone on the "
                                  f"cluster (it ran out of memory or was killed: {err}); not graded, the next "
                                  "run retries it")
            except CancelledError as err:
                return _failed(t, f"the Dask scheduler cancelled this hand-in's task ({err}); not graded, "
                                  "the next run retries it")
            except Exception as err:
                return _crashed(t, err)

        # A worker's death counts against every task it held, queued ones too, so in the first round a
        # KilledWorker may be a neighbour's fault (CI: an innocent hand-in queued behind the doomed one
        # on the same worker reached the scheduler's allowed-failures). It is decided alone, after the
        # class, like a notebook stopped by the wall clock.
        again = []
        for fut in as_completed([submit(i) for i in range(len(tasks))]):
            killed = fut.status == "error" and isinstance(fut.exception(), KilledWorker)
            r = outcome(fut)
            if killed or not done(fut.leaklab_index, r, False):
                again.append(fut.leaklab_index)
        for i in again:                               # alone on an idle cluster, once
            fut = submit(i, retry=True)
            done(i, outcome(fut), True)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
