"""The grader's oracle (autograder/oracle.py, leaklab.oracle.served): victims served from the
grader's process, every query counted there, nothing a client sends can stop it -- and, from
inside a sandboxed kernel, a student who looks for the victim, forges the count, opens APIs
of their own or replaces the oracle's socket gains nothing the judges read."""
from __future__ import annotations

import json

import pytest
import torch

from autograder.judge import kernel_source, oracle_code, oracles_of
from autograder.oracle import OracleServer
from leaklab import oracle
from leaklab.oracle import PredictionAPI, QueryBudgetExceeded, RemoteAPI, served

DECLARE = '''
import torch
from torch import nn
from leaklab.oracle import declare_victim

@declare_victim("lin", (4,), record=True)
def _lin():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        m[1].weight.fill_(0.123456)                     # a value a thief can search memory for
    return m

class _Lookup(nn.Module):
    def __init__(self, images, labels):
        super().__init__()
        self.images, self.labels = images.flatten(1), labels
    def forward(self, x):
        return nn.functional.one_hot(self.labels[torch.cdist(x.flatten(1), self.images).argmin(1)], 3).float() * 10

declare_victim("lookup", (1, 2, 2))(_Lookup)
'''


CELLS = [f"c{i}" for i in range(40)]


@pytest.fixture(scope="module")
def oracle_process(tmp_path_factory):
    """One oracle process for the module (starting one costs seconds); each test gets its own cell."""
    srv = OracleServer({gid: DECLARE for gid in CELLS}, tmp_path_factory.mktemp("oracle") / "oracle")
    srv.start()
    yield srv, iter(CELLS)
    srv.close()


@pytest.fixture()
def server(oracle_process, monkeypatch):
    srv, cells = oracle_process
    monkeypatch.setenv("LEAKLAB_ORACLE", srv.address)
    srv.cell = next(cells)
    yield srv


@pytest.mark.parametrize("opts", [dict(mode="probs"), dict(mode="label"), dict(mode="topk", k=2),
                                  dict(mode="probs", decimals=2)])
def test_remote_answers_are_the_local_apis(server, opts):
    x = torch.rand(7, 4, generator=torch.Generator().manual_seed(1))
    remote = served("lin", **opts)
    assert isinstance(remote, RemoteAPI)
    local = PredictionAPI(server.model("lin"), (4,), **opts)
    got, want = remote.query(x), local.query(x)
    assert got.dtype == want.dtype and torch.equal(got, want)


def test_budget_refusals_and_counts_are_the_oracles(server):
    api = served("lin", budget=10)
    api.query(torch.rand(6, 4))
    with pytest.raises(QueryBudgetExceeded, match="4 left"):
        api.query(torch.rand(5, 4))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        api.query(torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        api.query(torch.full((1, 4), 2.0))
    assert (api.queries_used, api.remaining, api.budget) == (6, 4, 10)
    log = server.logs(server.cell)["lin"]
    assert (log.queries, log.refused, log.sizes) == (6, 3, [6])
    assert [(h["budget"], h["used"]) for h in log.handles] == [(10, 6)]
    assert tuple(log.inputs.shape) == (6, 4)


def test_answers_stay_in_their_cell(server):
    """A cell opens only the victims its region declares, and an API answers only in the cell
    that opened it: no test's answers can be carried into another test."""
    mine = server.cell
    api = served("lin")
    api.query(torch.rand(2, 4))
    server.cell = "elsewhere"                                  # a cell whose region declares nothing
    with pytest.raises(ValueError, match="another cell"):
        api.query(torch.rand(3, 4))
    with pytest.raises(ValueError, match="is served in this cell"):
        served("lin")
    server.cell = mine
    assert server.logs(mine)["lin"].queries == 2 and server.logs("elsewhere") == {}
    server.reset(mine)
    assert server.logs(mine) == {}
    with pytest.raises(ValueError, match="another cell"):        # an API of a forgotten run answers nowhere
        api.query(torch.rand(1, 4))


def test_a_dead_oracle_fails_only_its_notebooks_oracle_cells(tmp_path, monkeypatch):
    srv = OracleServer({"c": DECLARE}, tmp_path / "oracle")
    monkeypatch.setenv("LEAKLAB_ORACLE", srv.start())
    try:
        srv.cell = "c"
        served("lin").query(torch.rand(1, 4))
        srv._proc.kill()                                       # as the OOM killer or its CPU limit would
        srv._proc.join(5)
        with pytest.raises(RuntimeError, match="oracle stopped"):
            srv.logs("c")
        srv.cell = None                                        # the grader goes on
        assert srv.model("lin")(torch.rand(1, 4)).shape == (1, 3)    # the judges' copy is built here instead
    finally:
        srv.close()


def _q(h, shape, payload=b""):
    return [json.dumps({"op": "query", "handle": h, "shape": shape}).encode(), payload]


@pytest.mark.parametrize("frames", [
    lambda h: [b"not json", b""], lambda h: [b"[1, 2]", b""], lambda h: [json.dumps({"op": "drop tables"}).encode(), b""],
    lambda h: _q(99_999, [1, 4]), lambda h: _q(h, [10**9, 4], b"\0" * 16), lambda h: _q(h, [2, 4], b"\0" * 7),
    lambda h: _q(h, "2x4"), lambda h: _q(h, [30_000, 4], b"\0" * 480_000),
    lambda h: [json.dumps({"op": "open", "victim": "lin", "mode": "probs", "budget": "lots"}).encode(), b""],
    lambda h: [json.dumps({"op": "open", "victim": "lin", "mode": "probs", "decimals": 10**6}).encode(), b""],
    lambda h: [json.dumps({"op": "open", "victim": "lin", "mode": "probs",
                           "args": [{"dtype": "object", "shape": [1]}]}).encode(), b"x"],
    lambda h: [json.dumps({"op": "open", "victim": "lookup", "mode": "label",
                           "args": [{"dtype": "float32", "shape": [2]}]}).encode(), b"\0" * 8],
    lambda h: [b"x" * 5000, b""], lambda h: [b"only one frame"], lambda h: [b"{}", b"", b"", b""],
])
def test_malformed_requests_are_refused_and_the_oracle_keeps_answering(server, frames):
    import zmq

    api = served("lin", budget=3)
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(server.address)
    try:
        sock.send_multipart(frames(api._handle))
        reply = json.loads(sock.recv_multipart()[0])
    finally:
        sock.close(0)
    assert reply["ok"] is False and reply["message"]
    assert "Traceback" not in reply["message"] and "_Lookup" not in reply["message"]   # nothing of the victim's code
    assert served("lin").query(torch.rand(1, 4)).shape == (1, 3)


def test_local_sessions_build_the_victim_in_process(monkeypatch):
    monkeypatch.delenv("LEAKLAB_ORACLE", raising=False)
    with oracle.registry():
        exec(DECLARE, {})
        api = served("lin", mode="label", budget=2)
        assert isinstance(api, PredictionAPI) and api.query(torch.rand(2, 4)).shape == (2,)
    with pytest.raises(ValueError, match="declare_victim"):
        served("lin")


def test_oracle_regions_never_reach_the_kernel():
    src = ("import torch\nfrom leaklab.oracle import declare_victim, served\n### BEGIN HIDDEN TESTS\n### BEGIN ORACLE\n"
           "SECRET = 42\n### END ORACLE\napi = served('v')\n### BEGIN JUDGE\ndef judge(obs, ref): pass\n"
           "### END JUDGE\n### END HIDDEN TESTS")
    assert "SECRET" not in kernel_source(src) and "judge" not in kernel_source(src) and "served('v')" in kernel_source(src)
    code = oracle_code(src)
    assert code.splitlines() == ["import torch", "from leaklab.oracle import declare_victim, served", "SECRET = 42"]
    cell = type("Cell", (), {"source": src, "metadata": {"nbgrader": {"grade_id": "t", "grade": True}}})()
    assert oracles_of([cell]) == {"t": code}
    student = type("Cell", (), {"source": src, "metadata": {"nbgrader": {"grade_id": "s", "solution": True, "grade": True}}})()
    assert oracles_of([student]) == {}              # only test cells declare victims


# -- from inside the sandbox ------------------------------------------------------------------

THIEF = '''
import gc, os, json, torch, zmq
import leaklab.oracle as lo
found = sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.numel() and bool((o == 0.123456).any()))
print("victim tensors in the kernel:", found)
lo.RemoteAPI.queries_used = property(lambda self: 0)           # forge the count the kernel sees
api = lo.served("lin", budget=2)
print("budget still enforced:", end=" ")
try:
    api.query(torch.rand(3, 4))
except lo.QueryBudgetExceeded:
    print("yes")
extra = lo.served("lin", budget=1000)                            # an API of one's own, with a bigger budget
extra.query(torch.rand(50, 4))
s = zmq.Context.instance().socket(zmq.REQ); s.connect(os.environ["LEAKLAB_ORACLE"])
for junk in (b"{", b'{"op": "open", "victim": "lin", "budget": -5}', b"\\xff" * 3000):
    s.send_multipart([junk, b""]); s.recv_multipart()
path = os.environ["LEAKLAB_ORACLE"][len("ipc://"):]
os.unlink(path)                                                  # replace the oracle by one's own
fake = zmq.Context.instance().socket(zmq.REP); fake.bind("ipc://" + path)
print("replaced")
'''

AFTER = '''
import threading, json, torch
import leaklab.oracle as lo
def _serve():
    while True:
        fake.recv_multipart()
        fake.send_multipart([json.dumps({"ok": True, "handle": 0, "input_shape": [4], "input_range": [0, 1],
                                         "used": 0, "dtype": "float32", "shape": [1, 3]}).encode(), b"\\0" * 12])
threading.Thread(target=_serve, daemon=True).start()
lo._Channel._sockets.clear()
print(lo.served("lin", budget=5).query(torch.rand(1, 4)).shape)
'''


def test_a_thief_in_the_sandbox_gains_nothing_the_judges_read():
    from test_sandbox import run_cells

    texts, res = run_cells([("t1", THIEF), ("t2", AFTER)], oracle_sections={"t1": oracle_code(
        "### BEGIN ORACLE\n" + DECLARE + "\n### END ORACLE")})
    assert "victim tensors in the kernel: 0" in texts[0], texts[0]
    assert "budget still enforced: yes" in texts[0] and "replaced" in texts[0], texts[0]
    logs = res["leaklab"]["oracle_logs"]
    lin = logs["t1"]["lin"]
    assert [(h["budget"], h["used"]) for h in lin.handles] == [(2, 0), (1000, 50)]
    assert lin.queries == 50 and lin.refused >= 1          # the extra API is in the log the judge reads
    assert "torch.Size([1, 3])" in texts[1]                # the kernel talked to its own fake...
    assert "lin" not in logs.get("t2", {})                 # ...which the judge never hears of
