"""Grading on a real Dask cluster (issue 17 items 5 and 7): a scheduler and two worker processes
(with nannies) on loopback, started with Dask's own CLI as on a lab's machines; the class is the
toy assignment of test_course.py, so it runs in a few minutes.

While the class is graded, one worker process is killed in the middle of a task, its kernel
running (as the OOM killer or a lost machine would end it); the scheduler re-runs the task.
Every hand-in must be graded exactly once, into the gradebook and the course's state, with the
scores of a sequential run. One more hand-in kills its worker every time it is graded (its
answer starts a marker process; the killer ends the worker running it, as the OOM killer would
end a worker whose every attempt blows up): it must end as that student's error with the reason,
stay out of the gradebook and the state (the next run retries it), and cost nobody else."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from autograder import course as C
from autograder.sandbox import check_bwrap
from test_course import A, handin, toy_source

SLOW = "import time\n    time.sleep(8)\n    return a + b"        # long enough to be killed mid-task
DOOMED = "import subprocess\n    subprocess.run(['sleep', '%s'])\n    return a + b" % (MARK := "97.5")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def cluster(tmp_path, request):
    """A scheduler (allowed-failures = 1) and ``request.param`` worker processes (default 2)."""
    n_workers = getattr(request, "param", 2)
    port = _free_port()
    repo = str(Path(__file__).resolve().parents[1])                 # workers import autograder from here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
           "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler_env = {**env, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",   # 2 deaths: KilledWorker
                     "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "inf"}     # every task sent to a worker at once
    procs = [subprocess.Popen(dask + ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0",
                                      "--no-show"], env=scheduler_env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    address = f"tcp://127.0.0.1:{port}"
    for _ in range(n_workers):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--nworkers", "1", "--memory-limit", "0", "--no-dashboard"], env=env,
                                      cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(n_workers, timeout=120)
    yield address, [p.pid for p in procs[1:]]
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def _course(root, name, doomed=False):
    path = C.init(root / name, source_dir=toy_source(root / f"src-{name}"))
    download = root / f"{name}.zip"
    with zipfile.ZipFile(download, "w") as z:
        z.writestr(f"doejane_2001_1_{A}.ipynb", handin(path, "return a + b", "Addition commutes."))
        z.writestr(f"roebob_2002_2_{A}.ipynb", handin(path, "return a - b", "It does not."))
        z.writestr(f"slowsam_2003_3_{A}.ipynb", handin(path, SLOW, "Because."))
        z.writestr(f"crashcat_2004_4_{A}.ipynb", handin(path, SLOW, "Because."))
        if doomed:
            z.writestr(f"doomdan_2005_5_{A}.ipynb", handin(path, DOOMED, "Because."))
    C.collect(path, A, download)
    return path


def _killer(nannies: list[int], stop: threading.Event, killed: list[int], doomed: list[int]) -> None:
    """Kill, once, a worker process in the middle of a task: the first one seen running a
    sandboxed kernel (a ``bwrap`` below it) for a few seconds; and kill, every time, a worker
    whose kernel runs the doomed hand-in's marker process (``sleep MARK``)."""
    import psutil

    while not stop.is_set():
        for nanny in nannies:
            try:
                for w in psutil.Process(nanny).children():
                    below = w.children(recursive=True)
                    if any(c.name() == "sleep" and MARK in c.cmdline() for c in below):
                        w.kill()
                        doomed.append(w.pid)
                    elif not killed and any(c.name() == "bwrap" for c in below):
                        time.sleep(3)                    # mid-task: the kernel is running
                        if w.is_running() and not any(c.name() == "sleep" for c in w.children(recursive=True)):
                            w.kill()
                            killed.append(w.pid)
            except psutil.Error:
                continue
        time.sleep(0.2)


def test_a_class_on_a_dask_cluster_survives_a_killed_worker(cluster, tmp_path, monkeypatch):
    check_bwrap()
    address, nannies = cluster
    monkeypatch.setenv("LEAKLAB_REFERENCE_CACHE", str(tmp_path / "reference-cache"))
    sequential = {r.student: r for r in C.grade(_course(tmp_path, "sequential"), workers=0)}
    path = _course(tmp_path, "distributed", doomed=True)
    stop, killed, doomed = threading.Event(), [], []
    watcher = threading.Thread(target=_killer, args=(nannies, stop, killed, doomed), daemon=True)
    watcher.start()
    try:
        results = C.grade(path, scheduler=address)
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert len(killed) == 1, "no worker was killed mid-task"
    # allowed-failures = 1: a second death ends the task in the class's round (the first may be the
    # one-off kill, or a neighbour's death); then two more deaths alone on the cluster decide it
    assert 3 <= len(doomed) <= 4, doomed
    assert sorted(r.student for r in results) == ["2001", "2002", "2003", "2004", "2005"]   # each exactly once
    by = {r.student: r for r in results}
    assert by.pop("2005").error.startswith("the grading worker died every time it graded this hand-in")
    for s in by:
        assert by[s].error is None and by[s].cells == sequential[s].cells, (s, by[s], sequential[s])
    assert [by[s].auto_score for s in sorted(by)] == [2, 0, 2, 2]
    state = C._load_state(path)
    assert sorted(state) == [f"{A}/{s}" for s in ("2001", "2002", "2003", "2004")]
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        assert sorted(s.student.id for s in gb.find_assignment(A).submissions) == ["2001", "2002", "2003", "2004"]


@pytest.mark.parametrize("cluster", [1], indirect=True)
def test_a_hand_in_queued_behind_a_doomed_one_is_graded_alone(cluster, tmp_path, monkeypatch):
    """CI (stop 21) lost an innocent hand-in: a worker's death counts against every task it holds,
    queued ones too. On one worker the doomed hand-in (submitted first, so run first) kills it twice
    and the hand-in queued behind it reaches allowed-failures with it; it must then be graded alone,
    with the sequential run's scores, and only the doomed one end as an error."""
    from autograder import cluster as K

    check_bwrap()
    address, nannies = cluster
    monkeypatch.setenv("LEAKLAB_REFERENCE_CACHE", str(tmp_path / "reference-cache"))
    path = C.init(tmp_path / "queued", source_dir=toy_source(tmp_path / "src"))
    download = tmp_path / "queued.zip"
    with zipfile.ZipFile(download, "w") as z:
        z.writestr(f"doomdan_2001_1_{A}.ipynb", handin(path, DOOMED, "Because."))
        z.writestr(f"doejane_2002_2_{A}.ipynb", handin(path, "return a + b", "Addition commutes."))
    C.collect(path, A, download)
    first_round = []
    failed = K._failed
    monkeypatch.setattr(K, "_failed", lambda t, why: first_round.append((t.student, why[:40])) or failed(t, why))
    stop, doomed = threading.Event(), []
    watcher = threading.Thread(target=_killer, args=(nannies, stop, [0], doomed), daemon=True)  # no one-off kill
    watcher.start()
    try:
        results = {r.student: r for r in C.grade(path, scheduler=address)}
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert ("2002", "the grading worker died every time it gr") in first_round, first_round  # the old verdict
    assert len(doomed) == 4, doomed                      # 2 deaths with the class, 2 alone
    assert results["2001"].error.startswith("the grading worker died every time it graded this hand-in")
    assert results["2002"].error is None and results["2002"].auto_score == 2, results["2002"]
    assert sorted(C._load_state(path)) == [f"{A}/2002"]


def test_a_notebook_stopped_while_computing_is_graded_once_more_after_the_class(monkeypatch):
    """Issue 17 item 6: a stop by the wall-clock limit of a computing cell (load) is re-queued once,
    after everyone else; the re-run's result is the one recorded; an idle cell's stop is final."""
    from autograder import cluster
    from autograder.sandbox import IDLE_LIMIT, WALL_LIMIT

    calls = []

    def fake(task, files, timeout=None, sandbox=True):
        calls.append(task.student)
        n = calls.count(task.student)
        if task.student == "loaded" and n == 1:
            return cluster.GradeResult(task.student, task.assignment, 0, 2, warning=f"stopped early: a cell ran past its 300 s {WALL_LIMIT}")
        if task.student == "asleep":
            return cluster.GradeResult(task.student, task.assignment, 0, 2, warning=f"stopped early: a cell ran past its 300 s {IDLE_LIMIT}")
        return cluster.GradeResult(task.student, task.assignment, 2, 2)

    monkeypatch.setattr(cluster, "grade_submission", fake)
    tasks = [cluster.Task(s, A, b"{}") for s in ("asleep", "loaded", "ok")]
    recorded = []
    results = cluster.run(tasks, {A: {}}, on_result=lambda t, r: recorded.append((t.student, r.auto_score)), progress=False)
    assert calls == ["asleep", "loaded", "ok", "loaded"]                  # the re-run comes after the class
    assert recorded == [("asleep", 0), ("ok", 2), ("loaded", 2)]          # each recorded once, the re-run's result
    assert [r.auto_score for r in results] == [0, 2, 2]


def test_a_crashing_task_costs_only_its_student_and_a_broken_reference_stops_the_run(monkeypatch):
    from autograder import cluster
    from autograder.reference import ReferenceFailure

    def fake(task, files, timeout=None, sandbox=True):
        if task.student == "odd":
            raise OSError("disk full")
        if task.student == "ref":
            raise ReferenceFailure(f"the reference solution of {A} fails its own judge x: no")
        return cluster.GradeResult(task.student, task.assignment, 2, 2)

    monkeypatch.setattr(cluster, "grade_submission", fake)
    results = cluster.run([cluster.Task(s, A, b"{}") for s in ("odd", "ok")], {A: {}}, progress=False)
    assert results[0].error == "grading crashed: OSError: disk full" and results[1].auto_score == 2
    with pytest.raises(ReferenceFailure, match="fails its own judge"):
        cluster.run([cluster.Task(s, A, b"{}") for s in ("ok", "ref")], {A: {}}, progress=False)
