"""Grading on a real Dask cluster (issue 17 items 5 and 7): a scheduler and two worker processes
(with nannies) on loopback, started with Dask's own CLI as on a lab's machines; the class is the
toy assignment of test_course.py, so it runs in about a minute.

While the class is graded, one worker process is killed in the middle of a task, its kernel
running (as the OOM killer or a lost machine would end it); the scheduler re-runs the task.
Every hand-in must be graded exactly once, into the gradebook and the course's state, with the
scores of a sequential run."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def cluster(tmp_path):
    port = _free_port()
    repo = str(Path(__file__).resolve().parents[1])                 # workers import autograder from here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
           "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen(dask + ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0",
                                      "--no-show"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    address = f"tcp://127.0.0.1:{port}"
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--nworkers", "1", "--memory-limit", "0", "--no-dashboard"], env=env,
                                      cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    yield address, [p.pid for p in procs[1:]]
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def _course(root, name):
    path = C.init(root / name, source_dir=toy_source(root / f"src-{name}"))
    download = root / f"{name}.zip"
    with zipfile.ZipFile(download, "w") as z:
        z.writestr(f"doejane_2001_1_{A}.ipynb", handin(path, "return a + b", "Addition commutes."))
        z.writestr(f"roebob_2002_2_{A}.ipynb", handin(path, "return a - b", "It does not."))
        z.writestr(f"slowsam_2003_3_{A}.ipynb", handin(path, SLOW, "Because."))
        z.writestr(f"crashcat_2004_4_{A}.ipynb", handin(path, SLOW, "Because."))
    C.collect(path, A, download)
    return path


def _killer(nannies: list[int], stop: threading.Event, killed: list[int]) -> None:
    """Kill, once, a worker process in the middle of a task: the first one seen running a
    sandboxed kernel (a ``bwrap`` below it) for a few seconds."""
    import psutil

    while not stop.is_set() and not killed:
        for nanny in nannies:
            try:
                workers = psutil.Process(nanny).children()
                busy = [w for w in workers if any(c.name() == "bwrap" for c in w.children(recursive=True))]
            except psutil.Error:
                continue
            if busy:
                time.sleep(3)                            # mid-task: the kernel is running
                busy[0].kill()
                killed.append(busy[0].pid)
                return
        time.sleep(0.2)


def test_a_class_on_a_dask_cluster_survives_a_killed_worker(cluster, tmp_path, monkeypatch):
    check_bwrap()
    address, nannies = cluster
    monkeypatch.setenv("LEAKLAB_REFERENCE_CACHE", str(tmp_path / "reference-cache"))
    sequential = {r.student: r for r in C.grade(_course(tmp_path, "sequential"), workers=0)}
    path = _course(tmp_path, "distributed")
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_killer, args=(nannies, stop, killed), daemon=True)
    watcher.start()
    try:
        results = C.grade(path, scheduler=address)
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert len(killed) == 1, "no worker was killed mid-task"
    assert sorted(r.student for r in results) == ["2001", "2002", "2003", "2004"]      # each exactly once
    by = {r.student: r for r in results}
    for s in by:
        assert by[s].error is None and by[s].cells == sequential[s].cells, (s, by[s], sequential[s])
    assert [by[s].auto_score for s in sorted(by)] == [2, 0, 2, 2]
    state = C._load_state(path)
    assert sorted(state) == [f"{A}/{s}" for s in ("2001", "2002", "2003", "2004")]
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        assert sorted(s.student.id for s in gb.find_assignment(A).submissions) == ["2001", "2002", "2003", "2004"]
