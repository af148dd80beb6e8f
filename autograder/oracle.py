"""The grader's oracle: the victims of the graded test cells, served to the sandbox over ipc.

A test cell that gives the student's functions a prediction API declares its victim in an
oracle region (``### BEGIN ORACLE`` ... ``### END ORACLE``, see :mod:`leaklab.oracle`).
:class:`autograder.judge.StripJudges` cuts those regions out of every cell before the
kernel sees it; :class:`OracleServer` runs them -- taken from the instructor's copy in the
gradebook, never from the submission -- outside the sandbox, builds each victim on its first
use, and answers the kernel's :class:`leaklab.oracle.RemoteAPI` requests on a ZeroMQ ``ipc``
socket in the sandbox's scratch folder. Each query is checked and counted by a
:class:`leaklab.oracle.PredictionAPI` held there and logged against the test cell that is
executing; the judges read that log (:class:`OracleLog`), never a count reported by the
kernel. The kernel holds neither the victims' weights nor their counters.

Rules the oracle enforces, so that answers cannot be carried from one test into another: a
cell may open only the victims its own oracle region declares, and an API answers only while
the cell that opened it runs. Requests are bounded (bytes, examples, APIs, recorded inputs),
and the server runs in a child process of the grader with its own address-space and CPU
limits: a hostile kernel can exhaust the oracle, which then fails that one notebook's oracle
cells with the reason, never the grader. Error replies carry the API's validation messages
and fixed text otherwise (nothing of a hidden victim's code).

Protocol (request/reply, two frames each; JSON header, raw bytes): ``open`` (victim name,
mode, k, decimals, budget, and the dtypes and shapes of the victim's tensor arguments, whose
bytes are the second frame) -> handle, input shape and range; ``query`` (handle, shape) +
float32 bytes -> dtype, shape + answer bytes; ``state`` (handle) -> queries used.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

MAX_REQUEST_BYTES = 64 * 2**20           #: largest request (query or victim arguments), bytes
MAX_EXAMPLES = 20_000                    #: most examples in one query
MAX_HANDLES = 1_000                      #: most APIs one notebook may open
MAX_RECORDED_BYTES = 256 * 2**20         #: most recorded inputs per victim and cell, bytes
MEMORY_BYTES = 8 * 2**30                 #: address-space limit of the oracle process
CPU_SECONDS = 3600                       #: CPU-time limit of the oracle process


@dataclass
class OracleLog:
    """What one test cell asked of one victim (the judge's view; recorded by the grader).

    Attributes:
        queries: examples answered (queries) while the cell ran, over every API of the victim.
        refused: requests refused (over budget, malformed, out of range, failed).
        sizes: the number of examples of each answered request, in order.
        handles: the victim's APIs the cell opened, in order: ``{"mode", "k", "decimals",
            "budget", "used"}`` each, ``used`` = the queries that API answered.
        inputs: float32 (queries, *input_shape) every answered input in order, if the victim
            was declared with ``record=True``; else ``None``.
    """

    queries: int = 0
    refused: int = 0
    sizes: list = field(default_factory=list)
    handles: list = field(default_factory=list)
    inputs: torch.Tensor | None = None


class OracleView:
    """``obs.oracle``: ``obs.oracle("name")`` is the :class:`OracleLog` of victim ``name`` in that cell."""

    def __init__(self, logs: dict[str, OracleLog] | None, why: str = ""):
        self._logs, self._why = logs, why

    def __call__(self, name: str) -> OracleLog:
        from .judge import ObservationError

        if self._logs is None:
            raise ObservationError(self._why or "no oracle log")
        return self._logs.get(name, OracleLog())


def _declare(sections: dict[str, str]) -> tuple[dict, dict[str, set[str]]]:
    """Run every oracle region: (victim name -> Victim, grade_id -> names it declares).

    Raises:
        RuntimeError: a region fails, or two regions declare one name differently.
    """
    from leaklab import oracle

    victims, declared, code_of = {}, {}, {}
    for gid, code in sections.items():
        with oracle.registry() as reg:
            try:
                exec(compile(code, f"<oracle {gid}>", "exec"), {"__name__": f"oracle_{gid}"})
            except Exception as err:
                raise RuntimeError(f"the oracle region of {gid} fails: {type(err).__name__}: {err}") from err
        for name, v in reg.items():
            if name in code_of and code_of[name] != code:
                raise RuntimeError(f"victim {name!r} is declared differently in two oracle regions "
                                   f"(again in {gid}); give each its own name")
            code_of[name] = code
            victims[name] = v
        declared[gid] = set(reg)
    return victims, declared


def _build(victim, args: tuple = ()):
    with torch.random.fork_rng():                 # a build never moves the caller's random state
        torch.manual_seed(0)
        model = victim.build(*args)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"victim {victim.name!r}: build() returned a {type(model).__name__}, not an nn.Module")
    return model.eval()


class _Refused(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message[:500])
        self.kind = kind


class _Core:
    """The oracle proper (runs in the oracle process): victims, APIs, per-cell logs, answers."""

    def __init__(self, sections: dict[str, str]):
        self.victims, self.declared = _declare(sections)
        self.cell: str | None = None
        self.models: dict = {}
        self.apis: list = []                                  # [victim name, API, opening cell, its log entry]
        self.logs: dict[str, dict[str, OracleLog]] = {}
        self.recorded: dict[tuple[str, str], list] = {}

    def model(self, name: str):
        if name not in self.models:
            self.models[name] = _build(self.victims[name])
        return self.models[name]

    def log(self, name: str) -> OracleLog:
        return self.logs.setdefault(self.cell or "", {}).setdefault(name, OracleLog())

    def snapshot(self, gid: str | None = None) -> dict:
        """Logs (with the recorded inputs joined), of one cell or of all."""
        out = {}
        for g, logs in self.logs.items():
            if gid is not None and g != gid:
                continue
            out[g] = {}
            for name, log in logs.items():
                chunks = self.recorded.get((g, name))
                out[g][name] = OracleLog(log.queries, log.refused, list(log.sizes), [dict(h) for h in log.handles],
                                         torch.cat(chunks) if chunks else None)
        return out

    def reset(self, gid: str) -> None:
        self.logs.pop(gid, None)
        for key in [k for k in self.recorded if k[0] == gid]:
            del self.recorded[key]
        for api in self.apis:
            if api[2] == gid:
                api[2] = ()                            # APIs of the forgotten run answer nowhere

    def answer(self, frames: list[bytes]) -> tuple[dict, bytes]:
        from leaklab.oracle import PredictionAPI, QueryBudgetExceeded, decode_args

        if len(frames) != 2 or len(frames[0]) > 4096:
            raise _Refused("ValueError", "malformed request")
        try:
            req = json.loads(frames[0])
        except (ValueError, RecursionError):
            raise _Refused("ValueError", "malformed request (not JSON)") from None
        if not isinstance(req, dict):
            raise _Refused("ValueError", "malformed request")
        op = req.get("op")
        if op == "open":
            name = req.get("victim")
            if not isinstance(name, str) or name not in self.declared.get(self.cell or "", set()):
                raise _Refused("ValueError", f"no victim named {str(name)[:100]!r} is served in this cell")
            if len(self.apis) >= MAX_HANDLES:
                raise _Refused("ValueError", f"more than {MAX_HANDLES} APIs opened")
            opts = {key: req.get(key) for key in ("mode", "k", "decimals", "budget")}
            if not all(v is None or type(v) is int for v in (opts["k"], opts["decimals"], opts["budget"])) \
                    or not isinstance(opts["mode"], str) or (opts["decimals"] or 0) > 20:
                raise _Refused("ValueError", "mode must be a string; k, decimals (<= 20) and budget integers or null")
            try:
                args = decode_args(req.get("args", []), frames[1], MAX_REQUEST_BYTES)
            except ValueError as err:
                raise _Refused("ValueError", str(err)) from None
            try:
                model = _build(self.victims[name], args) if args else self.model(name)
            except Exception:                          # noqa: BLE001 -- the victim's code says nothing
                raise _Refused("ValueError", f"victim {name!r} cannot be built from these arguments") from None
            try:
                api = PredictionAPI(model, self.victims[name].input_shape, mode=opts["mode"],
                                    k=opts["k"] if opts["k"] is not None else 1, decimals=opts["decimals"],
                                    budget=opts["budget"])
            except ValueError as err:
                raise _Refused("ValueError", str(err)) from None
            entry = {**opts, "used": 0}
            self.log(name).handles.append(entry)
            self.apis.append([name, api, self.cell, entry])
            return ({"ok": True, "handle": len(self.apis) - 1, "input_shape": list(api.input_shape),
                     "input_range": list(api.input_range)}, b"")
        handle = req.get("handle")
        if type(handle) is not int or not 0 <= handle < len(self.apis):
            raise _Refused("ValueError", "unknown API handle")
        name, api, opened_in, entry = self.apis[handle]
        if opened_in != self.cell:
            raise _Refused("ValueError", "this API belongs to another cell; an API answers only in the cell that opened it")
        if op == "state":
            return {"ok": True, "used": api.queries_used}, b""
        if op != "query":
            raise _Refused("ValueError", f"unknown operation {str(op)[:40]!r}")
        shape = req.get("shape")
        log = self.log(name)
        if not (isinstance(shape, list) and 1 <= len(shape) <= 8 and all(type(d) is int and 0 <= d < 2**31 for d in shape)):
            log.refused += 1
            raise _Refused("ValueError", "malformed query shape")
        n_values = 1
        for d in shape:
            n_values *= d
        if 4 * n_values != len(frames[1]) or len(frames[1]) > MAX_REQUEST_BYTES or shape[0] > MAX_EXAMPLES:
            log.refused += 1
            raise _Refused("ValueError", f"a query of shape {shape} must carry {4 * n_values} bytes of float32 "
                                         f"(at most {MAX_REQUEST_BYTES} bytes, {MAX_EXAMPLES} examples)")
        x = torch.frombuffer(bytearray(frames[1]), dtype=torch.float32).reshape(shape) if n_values else \
            torch.zeros(shape, dtype=torch.float32)
        key = (self.cell or "", name)
        if self.victims[name].record and sum(c.numel() * 4 for c in self.recorded.get(key, [])) + x.numel() * 4 \
                > MAX_RECORDED_BYTES:
            log.refused += 1
            raise _Refused("ValueError", f"more than {MAX_RECORDED_BYTES // 2**20} MiB of queries to this victim in one cell")
        try:
            out = api.query(x)
        except QueryBudgetExceeded as err:
            log.refused += 1
            raise _Refused("QueryBudgetExceeded", str(err)) from None
        except ValueError as err:                      # the API's own validation messages
            log.refused += 1
            raise _Refused("ValueError", str(err)) from None
        except Exception:                              # noqa: BLE001 -- the victim failed on this input
            log.refused += 1
            raise _Refused("ValueError", "the victim could not answer this query") from None
        log.queries += len(x)
        log.sizes.append(len(x))
        entry["used"] += len(x)
        if self.victims[name].record:
            self.recorded.setdefault(key, []).append(x.clone())
        out = out.contiguous()
        return ({"ok": True, "dtype": str(out.dtype).removeprefix("torch."), "shape": list(out.shape)},
                out.numpy().tobytes())


def _oracle_process(sections: dict[str, str], address: str, path: str, conn, memory: int, cpu: int) -> None:
    """The oracle process: limits, the victims, then serve the socket and the grader's pipe."""
    import resource

    import zmq

    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        core = _Core(sections)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.REP)
        for opt, value in ((zmq.MAXMSGSIZE, MAX_REQUEST_BYTES + 65536), (zmq.RCVHWM, 4), (zmq.SNDHWM, 4),
                           (zmq.LINGER, 0)):
            sock.setsockopt(opt, value)
        sock.bind(address)
        os.chmod(path, 0o666)                          # the sandbox uid connects to it
    except Exception as err:                           # noqa: BLE001 -- reported to the grader
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(conn.fileno(), zmq.POLLIN)
    while True:
        events = dict(poller.poll())
        if conn.fileno() in events:
            try:
                cmd, arg = conn.recv()
            except EOFError:                           # the grader is gone
                return
            if cmd == "stop":
                conn.send(("ok", None))
                return
            if cmd == "cell":
                core.cell = arg
                conn.send(("ok", None))
            elif cmd == "logs":
                conn.send(("ok", core.snapshot(arg)))
            elif cmd == "reset":
                core.reset(arg)
                conn.send(("ok", None))
            elif cmd == "model":
                try:
                    conn.send(("ok", pickle.dumps(core.model(arg))))
                except Exception:                      # noqa: BLE001 -- a class only the region defines
                    conn.send(("unpicklable", None))
        if sock in events:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:
                continue
            try:
                header, payload = core.answer(frames)
            except _Refused as err:
                header, payload = {"ok": False, "error": err.kind, "message": str(err)}, b""
            except Exception as err:                   # noqa: BLE001 -- MemoryError, ...: fixed text
                header, payload = {"ok": False, "error": "ValueError",
                                   "message": f"the oracle could not answer ({type(err).__name__})"}, b""
            try:
                sock.send_multipart([json.dumps(header).encode(), payload], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass


class OracleServer:
    """The victims of one notebook, served on ``ipc://<path>`` by an oracle process.

    Args:
        sections: grade_id -> oracle-region code (the instructor's, from the gradebook or the
            source notebook). The regions run here (to check them, and to build the judges'
            copies of cheap victims) and in the oracle process.
        path: where the ipc socket is created (inside the sandbox's scratch folder).
        memory_bytes, cpu_seconds: limits of the oracle process.

    Raises:
        RuntimeError: an oracle region fails, or two declare one name differently.
    """

    def __init__(self, sections: dict[str, str], path: Path, memory_bytes: int = MEMORY_BYTES,
                 cpu_seconds: int = CPU_SECONDS):
        self.sections = dict(sections)
        self._victims, self.declared = _declare(self.sections)
        self._models: dict = {}
        self.path = Path(path)
        self.address = f"ipc://{self.path}"
        self._limits = (memory_bytes, cpu_seconds)
        self._proc = self._conn = None
        self._dead: str | None = None
        self._cell: str | None = None
        self._starting = False

    def start(self) -> str:
        """Start the oracle process (it comes up while the kernel starts; the first request
        waits for it) and return its address."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ctx = multiprocessing.get_context("spawn")      # a fresh interpreter: no grader threads or state
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_oracle_process, name="leaklab-oracle", daemon=True,
                                 args=(self.sections, self.address, str(self.path), child, *self._limits))
        self._proc.start()
        child.close()
        self._starting = True
        return self.address

    def wait_ready(self, timeout: float = 300) -> None:
        """Block until the oracle process serves.

        Raises:
            RuntimeError: it could not start (the message says why) or died.
        """
        if getattr(self, "_starting", False):
            self._starting = False
            try:
                status, why = self._conn.recv() if self._conn.poll(timeout) else ("error", f"no answer in {timeout:.0f} s")
            except (EOFError, OSError):
                status, why = "error", f"it exited with code {self._proc.exitcode}"
            if status != "ready":
                self._dead = f"the grader's oracle could not start: {why}"
        if self._dead is not None:
            raise RuntimeError(self._dead)

    def _ask(self, cmd: str, arg=None):
        self.wait_ready()
        try:
            self._conn.send((cmd, arg))
            return self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self._proc.exitcode if self._proc is not None else None
            self._dead = (f"the grader's oracle stopped while serving this notebook (exit code {code}: it ran "
                          "out of its memory or CPU limit, which a notebook's queries can cause)")
        raise RuntimeError(self._dead)

    # -- the grader's side -----------------------------------------------------------------

    @property
    def cell(self) -> str | None:
        """The test cell now executing: queries are logged against it, and only its victims open."""
        return self._cell

    @cell.setter
    def cell(self, gid: str | None) -> None:
        self._cell = gid
        try:
            self._ask("cell", gid)
        except RuntimeError:
            pass                                       # a dead oracle: logs() says why

    def logs(self, gid: str) -> dict[str, OracleLog] | None:
        """victim name -> :class:`OracleLog` of everything cell ``gid`` asked.

        Raises:
            RuntimeError: the oracle process died (its limits); the message says so.
        """
        return self._ask("logs", gid)[1].get(gid, {})

    def all_logs(self) -> dict[str, dict[str, OracleLog]]:
        """grade_id (``""``: outside any test cell) -> victim name -> :class:`OracleLog`."""
        return self._ask("logs", None)[1]

    def reset(self, gid: str) -> None:
        """Forget the log of cell ``gid`` (before it runs again)."""
        self._ask("reset", gid)

    def model(self, name: str):
        """The victim ``name`` as the oracle serves it (eval mode), for the judges: the oracle
        process's own copy when its class can travel, else built here from the same region.

        Raises:
            KeyError: no victim of that name is declared.
        """
        if name not in self._victims:
            raise KeyError(f"no victim named {name!r} is declared in an oracle region")
        if name not in self._models:
            model = None
            if self._dead is None:
                status, data = self._ask("model", name)
                if status == "ok":
                    model = pickle.loads(data)         # from our own oracle process, never from a kernel
            self._models[name] = (model if model is not None else _build(self._victims[name])).eval()
        return self._models[name]

    def close(self) -> None:
        """Stop the oracle process (killed if it does not stop) and remove its socket."""
        if self._proc is not None:
            if self._dead is None and not self._starting and self._proc.is_alive():
                try:
                    self._conn.send(("stop", None))
                    self._conn.poll(10)
                except (OSError, BrokenPipeError):
                    pass
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            self._proc = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._dead = self._dead or "the oracle was stopped"
        try:
            self.path.unlink()
        except OSError:
            pass
