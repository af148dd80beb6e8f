"""fit / evaluate / predict with progress bars; deterministic on CPU for a given seed.

Progress bars (tqdm, notebook-aware) are on by default and stay quiet when
``LEAKLAB_PROGRESS=0`` (set by the tests and the autograder).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .repro import autocast, torch_generator

__all__ = ["History", "fit", "evaluate", "predict", "progress_enabled"]


def progress_enabled() -> bool:
    """True unless ``LEAKLAB_PROGRESS`` is ``0``/``false``/``no``."""
    return os.environ.get("LEAKLAB_PROGRESS", "1").strip().lower() not in {"0", "false", "no"}


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run.

    loss: mean training cross-entropy per epoch (nats). metrics: per-epoch values of
    each ``on_epoch`` callback result, keyed by name.
    """

    loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def fit(model: nn.Module, data: Dataset, *, epochs: int, lr: float, batch_size: int = 64,
        seed: int = 0, params: Iterable[nn.Parameter] | None = None, momentum: float = 0.9,
        weight_decay: float = 5e-4,
        on_epoch: Callable[[nn.Module], dict[str, float]] | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        desc: str = "train") -> History:
    """Train ``model`` in place with SGD + momentum and a cosine learning-rate schedule.

    Args:
        model: maps (B, C, H, W) float32 to logits (B, K); trained on its own device.
        data: a dataset of (image, int64 label) pairs.
        epochs: passes over ``data`` (epochs, >= 1). lr: peak learning rate.
        batch_size: examples per step. seed: shuffling seed (a private generator).
        params: the parameters to update (default: all of ``model``); the rest stay frozen.
        momentum, weight_decay: SGD settings.
        on_epoch: called after each epoch with the model (in eval mode); its dict of
            floats is appended to ``History.metrics``.
        augment: optional ``augment(x_batch, generator) -> x_batch`` applied to every
            training batch (e.g. noise), drawing from a private generator seeded by ``seed``.
        desc: progress-bar label.

    Returns:
        :class:`History`.

    Raises:
        ValueError: ``epochs`` < 1 or ``data`` is empty.
    """
    from tqdm.auto import tqdm

    if epochs < 1 or len(data) == 0:
        raise ValueError(f"need epochs >= 1 and a non-empty dataset, got epochs={epochs}, len={len(data)}")
    device = _device_of(model)
    params = list(model.parameters() if params is None else params)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch_generator(seed))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader),
                                                pct_start=0.15, cycle_momentum=False)
    aug_gen = torch_generator(seed + 1)
    hist = History()
    bar = tqdm(range(epochs), desc=desc, disable=not progress_enabled(), leave=False)
    for _ in bar:
        model.train()
        total, n = 0.0, 0
        for xb, yb in loader:
            if augment is not None:
                xb = augment(xb, aug_gen)
            xb, yb = xb.to(device), yb.to(device)                     # (B, C, H, W), (B,)
            with autocast(device):
                loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(yb)
            n += len(yb)
        hist.loss.append(total / n)
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}")
        if on_epoch is not None:
            model.eval()
            for k, v in on_epoch(model).items():
                hist.metrics.setdefault(k, []).append(float(v))
    model.eval()
    return hist


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode.

    Args:
        model: maps (B, C, H, W) to logits (B, K).
        x: float32 (N, C, H, W).

    Returns:
        float32 logits (N, K) on the CPU.
    """
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def _tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, TensorDataset):
        return data.tensors[0], data.tensors[1]
    xs, ys = zip(*(data[i] for i in range(len(data))))
    return torch.stack(xs), torch.as_tensor(ys)


def evaluate(model: nn.Module, data: Dataset | tuple[torch.Tensor, torch.Tensor]) -> float:
    """Top-1 accuracy of ``model`` on ``data``.

    Args:
        model: maps (B, C, H, W) to logits (B, K).
        data: a dataset of (image, label) pairs, or a tuple ``(x (N, C, H, W), y (N,))``.

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: ``data`` is empty.
    """
    x, y = data if isinstance(data, tuple) else _tensors(data)
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return (predict(model, x).argmax(1) == torch.as_tensor(y)).float().mean().item()
