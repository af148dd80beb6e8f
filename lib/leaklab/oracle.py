"""The black-box prediction API (MLaaS) that attackers and verifiers query.

Modelled on the knockoffnets ``Blackbox`` (per-example counting, eval mode, output
degradation) and Steal-ML's query budget, without their holes: the budget is checked
*before* the model runs, every example counts (no ``count=False``), and the object
keeps no public handle on the victim model.

Graded test cells do not build their victims next to the student's code. A victim is
declared in the cell's oracle region with :func:`declare_victim` and opened with :func:`served`::

    ### BEGIN ORACLE
    @declare_victim("a2_small", (6,))         # name, shape of one input
    def _small():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    ### END ORACLE
    api = served("a2_small", mode="probs", budget=100)

In a student's own session the region is ordinary code: the victim is built in the
notebook's process and ``served`` returns a :class:`PredictionAPI` around it. In the
grader the region never reaches the student's kernel: it runs in the grader's own
process (``autograder/oracle.py``), which holds the victim, counts every query and logs
what each test cell asked, and ``served`` returns a :class:`RemoteAPI` that reaches it
over the sandbox's ipc socket ``$LEAKLAB_ORACLE``. The student's process then holds
neither the victim's weights nor the count the judges read.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
from typing import Callable, Iterator, Literal

import numpy as np
import torch
from torch import nn

__all__ = ["QueryBudgetExceeded", "PredictionAPI", "RemoteAPI", "Victim", "declare_victim", "served", "ENV"]

ENV = "LEAKLAB_ORACLE"                  #: address of the grader's oracle (``ipc://...``), set only when graded

OutputMode = Literal["label", "probs", "topk"]


class QueryBudgetExceeded(RuntimeError):
    """A query would take the API past its budget; nothing was answered or counted."""


class PredictionAPI:
    """A model served behind a prediction API with a query budget.

    Args:
        model: the victim, mapping float32 (B, *input_shape) to logits (B, K). Kept
            private; the API puts it in eval mode and never hands it back.
        input_shape: shape of one input, e.g. ``(1, 28, 28)``.
        mode: ``"label"`` (int64 (N,) top-1 labels), ``"probs"`` (float32 (N, K)
            softmax probabilities) or ``"topk"`` (float32 (N, K) with all but the k
            largest probabilities set to 0).
        k: how many probabilities ``"topk"`` reveals (1 <= k <= K).
        decimals: round returned probabilities to this many decimals (``None``: no
            rounding) -- Tramer et al.'s rounding countermeasure.
        budget: the most examples that may be queried in total (queries), or ``None``
            for no limit.
        input_range: (low, high) that every input value must lie in.

    Raises:
        ValueError: an argument is out of range.

    Example:
        >>> api = PredictionAPI(model, (1, 28, 28), mode="label", budget=100)
        >>> api.query(x)            # x: float32 (N, 1, 28, 28) in [0, 1]
    """

    __slots__ = ("_answer", "_used", "_budget", "mode", "k", "decimals", "input_shape", "input_range")

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], *, mode: OutputMode = "probs",
                 k: int = 1, decimals: int | None = None, budget: int | None = None,
                 input_range: tuple[float, float] = (0.0, 1.0)):
        if mode not in ("label", "probs", "topk"):
            raise ValueError(f"mode must be 'label', 'probs' or 'topk', got {mode!r}")
        if budget is not None and budget < 0:
            raise ValueError(f"budget must be a non-negative number of queries or None, got {budget}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if decimals is not None and decimals < 0:
            raise ValueError(f"decimals must be >= 0 or None, got {decimals}")
        model.eval()
        first = next(iter([*model.parameters(), *model.buffers()]), None)
        device = first.device if first is not None else torch.device("cpu")

        @torch.no_grad()
        def answer(x: torch.Tensor) -> torch.Tensor:            # the only reference to the model
            return model(x.to(device)).float().cpu()            # (N, K) logits

        self._answer = answer
        self._used = 0
        self._budget, self.mode, self.k, self.decimals = budget, mode, k, decimals
        self.input_shape, self.input_range = tuple(input_shape), input_range

    @property
    def budget(self) -> int | None:
        """The most examples that may be queried in total (queries), or ``None``; read-only."""
        return self._budget

    @property
    def queries_used(self) -> int:
        """Examples answered so far (queries)."""
        return self._used

    @property
    def remaining(self) -> int | None:
        """Queries left in the budget, or ``None`` without a budget."""
        return None if self.budget is None else self.budget - self._used

    def _validate(self, x) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"query expects a float32 tensor or array of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {type(x).__name__}")
        if x.dtype != torch.float32:
            raise ValueError(f"query expects dtype float32, got {x.dtype}; convert with x.float()")
        if tuple(x.shape) == self.input_shape:
            raise ValueError(f"query expects a batch of shape (N, {', '.join(map(str, self.input_shape))}), got one "
                             f"example of shape {tuple(x.shape)}; add a batch dimension with x[None]")
        if x.dim() != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"query expects shape (N, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        if len(x) == 0:
            raise ValueError("query expects at least one example, got an empty batch")
        lo, hi = self.input_range
        if not torch.isfinite(x).all() or x.min() < lo or x.max() > hi:
            raise ValueError(f"query expects finite values in [{lo}, {hi}], got range "
                             f"[{x.min().item():.4g}, {x.max().item():.4g}]; clip with x.clamp({lo}, {hi})")
        return x

    def query(self, x) -> torch.Tensor:
        """Answer a batch of queries; each example costs one query.

        Args:
            x: float32 tensor or array (N, *input_shape), values in ``input_range``.

        Returns:
            int64 (N,) labels in ``"label"`` mode, else float32 (N, K) probabilities.

        Raises:
            ValueError: wrong type, dtype, shape or range (nothing is counted).
            QueryBudgetExceeded: ``N`` more queries would pass the budget; checked
                before the model runs, nothing is counted.
        """
        x = self._validate(x)
        n = len(x)
        if self.budget is not None and self._used + n > self.budget:
            raise QueryBudgetExceeded(f"query of {n} examples would exceed the budget: {self._used} of "
                                      f"{self.budget} queries used, {self.budget - self._used} left")
        self._used += n
        logits = self._answer(x)                                 # (N, K)
        if self.mode == "label":
            return logits.argmax(1)
        probs = logits.softmax(1)                                # (N, K)
        if self.mode == "topk":
            k = min(self.k, probs.shape[1])
            kept = probs.topk(k, dim=1)
            probs = torch.zeros_like(probs).scatter_(1, kept.indices, kept.values)
        if self.decimals is not None:
            probs = torch.round(probs, decimals=self.decimals)
        return probs

    __call__ = query

    def __repr__(self) -> str:
        return (f"PredictionAPI(mode={self.mode!r}, input_shape={self.input_shape}, "
                f"queries_used={self._used}, budget={self.budget})")


@dataclasses.dataclass(frozen=True)
class Victim:
    """A declared victim: ``build() -> nn.Module`` (float32 (B, *input_shape) -> logits (B, K)).

    ``record`` asks the grader's oracle to keep every answered input for the judge.
    """

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    record: bool = False


_REGISTRY: dict[str, Victim] = {}
_BUILT: dict[str, nn.Module] = {}
_LOCK = threading.RLock()


@contextlib.contextmanager
def registry() -> Iterator[dict[str, Victim]]:
    """Collect the victims declared inside the block into a fresh registry (the grader's oracle
    uses it to keep each notebook's victims apart); the previous registry is restored after."""
    global _REGISTRY
    with _LOCK:
        saved, _REGISTRY = _REGISTRY, {}
        try:
            yield _REGISTRY
        finally:
            _REGISTRY = saved


def declare_victim(name: str, input_shape: tuple[int, ...], *, record: bool = False):
    """Decorator: declare ``build`` (no arguments, returns the victim ``nn.Module``) as victim ``name``.

    Args:
        name: letters, digits, underscores; a later declaration of the same name replaces it.
        input_shape: the shape of one input, e.g. ``(1, 28, 28)``.
        record: keep every answered input in the grader's log (for judges that check what
            was queried).

    Returns:
        The decorator; it returns ``build`` unchanged.

    Raises:
        ValueError: a malformed name or shape.
    """
    if not (isinstance(name, str) and name and len(name) <= 100 and name.replace("_", "").isalnum() and name.isascii()):
        raise ValueError(f"victim names are letters, digits and underscores, got {name!r}")
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be positive sizes, got {input_shape!r}")

    def register(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        with _LOCK:
            _REGISTRY[name] = Victim(name, build, shape, record)
            _BUILT.pop(name, None)
        return build

    return register


def _model_of(name: str, args: tuple = ()) -> tuple[nn.Module, Victim]:
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"no victim named {name!r} is declared; run the cell that declares it "
                             f"(its @declare_victim({name!r}, ...) function) first")
        v = _REGISTRY[name]
        if args:                                             # built from the caller's data, every time
            return _checked(name, v.build(*args)), v
        if name not in _BUILT:
            _BUILT[name] = _checked(name, v.build())
        return _BUILT[name], v


def _checked(name: str, model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"victim {name!r}: build() returned a {type(model).__name__}, not an nn.Module")
    return model.eval()


ARG_DTYPES = {"float32": torch.float32, "int64": torch.int64}     #: what ``served(..., args=...)`` may send


def encode_args(args) -> tuple[list[dict], bytes]:
    """Tensors -> (``[{"dtype", "shape"}]``, their bytes one after another); for :func:`served`'s ``args``.

    Raises:
        ValueError: an argument that is not a float32 or int64 tensor.
    """
    specs, blobs = [], []
    for a in args:
        if not isinstance(a, torch.Tensor) or a.dtype not in ARG_DTYPES.values():
            raise ValueError(f"victim arguments must be float32 or int64 tensors, got {type(a).__name__} "
                             f"{getattr(a, 'dtype', '')}")
        a = a.detach().cpu().contiguous()
        specs.append({"dtype": str(a.dtype).removeprefix("torch."), "shape": list(a.shape)})
        blobs.append(a.numpy().tobytes())
    return specs, b"".join(blobs)


def decode_args(specs, data: bytes, max_bytes: int) -> tuple[torch.Tensor, ...]:
    """The inverse of :func:`encode_args`, strict: unknown dtypes, bad shapes or a byte count
    that does not match raise ``ValueError``."""
    if not isinstance(specs, list) or len(specs) > 16:
        raise ValueError("at most 16 victim arguments")
    out, offset = [], 0
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("dtype") not in ARG_DTYPES:
            raise ValueError("victim arguments must be float32 or int64 tensors")
        shape = spec.get("shape")
        if not (isinstance(shape, list) and len(shape) <= 8 and all(type(d) is int and 0 <= d < 2**31 for d in shape)):
            raise ValueError("malformed argument shape")
        n = math.prod(shape) * (4 if spec["dtype"] == "float32" else 8)
        if offset + n > min(len(data), max_bytes):
            raise ValueError("victim arguments carry fewer bytes than their shapes need")
        npdtype = np.float32 if spec["dtype"] == "float32" else np.int64
        out.append(torch.from_numpy(np.frombuffer(data, dtype=npdtype, count=math.prod(shape), offset=offset)
                                    .reshape(shape).copy()))
        offset += n
    if offset != len(data):
        raise ValueError("victim arguments carry more bytes than their shapes need")
    return tuple(out)


def served(name: str, *, mode: OutputMode = "probs", k: int = 1, decimals: int | None = None,
           budget: int | None = None, args: tuple = ()) -> "PredictionAPI | RemoteAPI":
    """A fresh API (its own query counter) around the declared victim ``name``.

    Arguments as for :class:`PredictionAPI`; ``args`` (float32 or int64 tensors) are passed
    to the victim's ``build(*args)`` -- a victim made from data the test computed, e.g. a
    model that labels given images -- and then it is built anew for this API. Under the
    grader (``$LEAKLAB_ORACLE`` set) the victim lives in the grader's process and this
    returns a :class:`RemoteAPI`; otherwise the victim is built here (without ``args``: once)
    and this returns a :class:`PredictionAPI`.

    Raises:
        ValueError: no victim of that name is declared, or an argument is out of range.
    """
    address = os.environ.get(ENV)
    if address:
        return RemoteAPI(address, name, mode=mode, k=k, decimals=decimals, budget=budget, args=args)
    model, v = _model_of(name, tuple(args))
    return PredictionAPI(model, v.input_shape, mode=mode, k=k, decimals=decimals, budget=budget)


class _Channel:
    """ZeroMQ REQ sockets to the grader's oracle, one per address (requests are serialised)."""

    TIMEOUT_MS = 900_000                 #: the longest wait for an answer (a victim may train first)
    _sockets: dict = {}
    _lock = threading.Lock()

    @classmethod
    def ask(cls, address: str, header: dict, payload: bytes = b"") -> tuple[dict, bytes]:
        import zmq

        with cls._lock:
            sock = cls._sockets.get(address)
            if sock is None:
                sock = cls._sockets[address] = zmq.Context.instance().socket(zmq.REQ)
                sock.setsockopt(zmq.RCVTIMEO, cls.TIMEOUT_MS)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(address)
            sock.send_multipart([json.dumps(header).encode(), payload])
            try:
                frames = sock.recv_multipart()
            except zmq.Again:
                sock.close(0)
                del cls._sockets[address]
                raise RuntimeError(f"the grader's oracle at {address} did not answer within "
                                   f"{cls.TIMEOUT_MS // 1000} s") from None
        reply = json.loads(frames[0])
        if not reply.get("ok"):
            kind = QueryBudgetExceeded if reply.get("error") == "QueryBudgetExceeded" else ValueError
            raise kind(reply.get("message", "the oracle refused the request"))
        return reply, (frames[1] if len(frames) > 1 else b"")


class RemoteAPI:
    """A :class:`PredictionAPI` whose victim and counter live in the grader's oracle.

    Same interface and errors as :class:`PredictionAPI` (``query``, ``budget``,
    ``queries_used``, ``remaining``, ``mode``, ``k``, ``decimals``, ``input_shape``,
    ``input_range``); every value comes from the oracle. Made by :func:`served`.
    """

    __slots__ = ("_address", "_handle", "_budget", "mode", "k", "decimals", "input_shape", "input_range", "victim")

    def __init__(self, address: str, name: str, *, mode: OutputMode = "probs", k: int = 1,
                 decimals: int | None = None, budget: int | None = None, args: tuple = ()):
        specs, data = encode_args(args)
        reply, _ = _Channel.ask(address, {"op": "open", "victim": name, "mode": mode, "k": k,
                                          "decimals": decimals, "budget": budget, "args": specs}, data)
        self._address, self._handle, self._budget = address, int(reply["handle"]), budget
        self.mode, self.k, self.decimals, self.victim = mode, k, decimals, name
        self.input_shape = tuple(reply["input_shape"])
        self.input_range = tuple(reply["input_range"])

    @property
    def budget(self) -> int | None:
        """The most examples that may be queried in total (queries), or ``None``; read-only."""
        return self._budget

    @property
    def queries_used(self) -> int:
        """Examples answered so far (queries), as the oracle counts them."""
        return int(_Channel.ask(self._address, {"op": "state", "handle": self._handle})[0]["used"])

    @property
    def remaining(self) -> int | None:
        """Queries left in the budget, or ``None`` without a budget."""
        return None if self._budget is None else self._budget - self.queries_used

    def query(self, x) -> torch.Tensor:
        """Answer a batch of queries in the oracle; see :meth:`PredictionAPI.query`."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
            PredictionAPI._validate(self, x)          # the same messages as a local API
        x = x.detach().cpu().contiguous()
        reply, data = _Channel.ask(self._address, {"op": "query", "handle": self._handle, "shape": list(x.shape)},
                                   x.numpy().tobytes())
        dtype = {"int64": torch.int64, "float32": torch.float32}[reply["dtype"]]
        return torch.frombuffer(bytearray(data), dtype=dtype).reshape(reply["shape"]).clone()

    __call__ = query

    def __repr__(self) -> str:
        return (f"RemoteAPI(victim={self.victim!r}, mode={self.mode!r}, input_shape={self.input_shape}, "
                f"budget={self.budget})")
