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

__all__ = ["History", "fit", "fit_stacked", "predict_stacked", "evaluate", "predict", "progress_enabled"]


def progress_enabled() -> bool:
    """True unless ``LEAKLAB_PROGRESS`` is ``0``/``false``/``no``."""
    return os.environ.get("LEAKLAB_PROGRESS", "1").strip().lower() not in {"0", "false", "no"}


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run.

    loss: mean training loss per epoch (nats for cross-entropy). metrics: per-epoch values of
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
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        desc: str = "train") -> History:
    """Train ``model`` in place with SGD + momentum and a cosine learning-rate schedule.

    Args:
        model: maps (B, C, H, W) float32 to logits (B, K); trained on its own device.
        data: a dataset of (image, target) pairs: int64 labels for the default loss, or
            whatever ``loss`` expects (e.g. float32 (K,) probability vectors as soft labels).
        epochs: passes over ``data`` (epochs, >= 1). lr: peak learning rate.
        batch_size: examples per step. seed: shuffling seed (a private generator).
        params: the parameters to update (default: all of ``model``); the rest stay frozen.
        momentum, weight_decay: SGD settings.
        on_epoch: called after each epoch with the model (in eval mode); its dict of
            floats is appended to ``History.metrics``.
        augment: optional ``augment(x_batch, generator) -> x_batch`` applied to every
            training batch (e.g. noise), drawing from a private generator seeded by ``seed``.
        loss: ``loss(logits (B, K), targets (B, ...)) -> scalar`` to minimise; default
            ``nn.functional.cross_entropy`` on int64 labels (nats).
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
    loss_fn = nn.functional.cross_entropy if loss is None else loss
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
                batch_loss = loss_fn(model(xb).float(), yb)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            sched.step()
            total += batch_loss.item() * len(yb)
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


def fit_stacked(model: nn.Module, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, *, epochs: int,
                lr: float = 1e-3, batch_size: int = 128, seed: int = 0, weight_decay: float = 0.0,
                desc: str = "train models") -> History:
    """Train M stacked models at once, model m only on the examples with ``keep[m]``.

    Every step draws one mini-batch of example indices for all models; model m's loss is
    the mean cross-entropy over the batch examples it keeps, and the M losses are summed,
    so the models' gradients never mix (Adam's update is elementwise, so they stay
    independent too). Used for LiRA's reference models (Carlini et al., "Membership
    Inference Attacks From First Principles", IEEE S&P 2022, arXiv:2112.03570, Sec. IV-B).

    Args:
        model: maps x (N, ...) to logits (M, N, K), e.g. :class:`leaklab.models.StackedMLP`.
        x: inputs (N, ...); y: int64 labels (N,); keep: bool membership matrix (M, N).
        epochs: passes over the N examples. lr: Adam learning rate. batch_size: examples per step.
        seed: shuffling seed. weight_decay: Adam's L2 penalty.

    Returns:
        :class:`History` with the mean (over models) training loss per epoch.

    Raises:
        ValueError: ``keep`` is not (M, N) bool matching the model and the data.
    """
    from tqdm.auto import tqdm

    device = _device_of(model)
    n = len(y)
    if keep.dtype != torch.bool or keep.dim() != 2 or keep.shape[1] != n:
        raise ValueError(f"keep must be a bool (M, N={n}) matrix, got {keep.dtype} {tuple(keep.shape)}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x, y, k_all = x.to(device), y.to(device), keep.to(device).float()              # k_all: (M, N)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch_generator(seed)
    hist = History()
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress_enabled(), leave=False):
        total = 0.0
        for idx in torch.randperm(n, generator=g).split(batch_size):
            idx = idx.to(device)
            logits = model(x[idx])                                                  # (M, B, K)
            m = logits.shape[0]
            ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].repeat(m),
                                             reduction="none").view(m, -1)          # (M, B)
            k = k_all[:, idx]                                                       # (M, B)
            loss = ((ce * k).sum(1) / k.sum(1).clamp_min(1)).sum()                  # sum over models
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() / m * len(idx)
        hist.loss.append(total / n)
    model.eval()
    return hist


@torch.no_grad()
def predict_stacked(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of M stacked models on ``x`` in batches (memory stays O(M * batch_size)).

    Args:
        model: maps (B, ...) to logits (M, B, K). x: inputs (N, ...).

    Returns:
        float32 logits (M, N, K) on the CPU.
    """
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out = torch.cat([model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)], dim=1)
    model.train(was_training)
    return out
