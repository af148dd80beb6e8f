"""The black-box prediction API (MLaaS) that attackers and verifiers query.

Modelled on the knockoffnets ``Blackbox`` (per-example counting, eval mode, output
degradation) and Steal-ML's query budget, without their holes: the budget is checked
*before* the model runs, every example counts (no ``count=False``), and the object
keeps no public handle on the victim model.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = ["QueryBudgetExceeded", "PredictionAPI"]

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
