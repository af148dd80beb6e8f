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

__all__ = ["History", "fit", "fit_stacked", "membership_stack", "train_membership_models", "predict_stacked",
           "evaluate", "predict", "progress_enabled"]


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
            A BatchNorm layer none of whose affine parameters is trained (in ``params`` with
            ``requires_grad``) stays in eval mode, so its running statistics stay frozen too: a
            frozen feature extractor is left exactly as it was (Adi et al.'s FTLL/RTLL on a
            ResNet). BatchNorm layers without affine parameters follow ``model.train()``.
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
    trained = {id(p) for p in params if p.requires_grad}
    frozen_norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    and m.affine and not any(id(p) in trained for p in m.parameters(recurse=False))]
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
        for m in frozen_norms:
            m.eval()
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


def _chunks(model: nn.Module, chunk: int | None) -> list[slice]:
    """Slices of at most ``chunk`` models (default: the model's own ``chunk`` attribute, else all)."""
    m = model.n_models
    chunk = chunk if chunk is not None else getattr(model, "chunk", None) or m
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return [slice(a, min(a + chunk, m)) for a in range(0, m, chunk)]


def _forward(model: nn.Module, x: torch.Tensor, members: slice | None, per_model: bool = False) -> torch.Tensor:
    if members is None and not per_model:
        return model(x)                                  # any model mapping x to (M, N, K)
    return model(x, members=members, per_model=per_model)


def fit_stacked(model: nn.Module, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, *, epochs: int,
                lr: float = 1e-3, batch_size: int = 128, seed: int = 0, weight_decay: float = 0.0,
                batches: str = "shared", schedule: str = "constant", chunk: int | None = None,
                augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                desc: str = "train models") -> History:
    """Train M stacked models at once with Adam, model m only on the examples with ``keep[m]``.

    Two ways to draw mini-batches:

    - ``"shared"``: every step draws one mini-batch of example indices for all models; model m's
      loss is the mean cross-entropy over the batch examples it keeps. About half of each batch is
      masked out for each model, so a step costs twice the useful work.
    - ``"own"``: every model draws its mini-batches from its own examples (a fresh permutation
      each epoch; an epoch is ceil(max_m |keep[m]| / batch_size) full batches, so each model
      wraps around to the start of its permutation in its last step(s) and sees a few of its
      examples twice per epoch). No work is wasted on masked examples.

    The M losses are summed, so the models' gradients never mix (Adam's update is elementwise, so
    they stay independent too). With ``chunk`` the models go through forward and backward
    ``chunk`` at a time and their gradients accumulate before the one optimiser step: the same
    update, with the activation memory of ``chunk`` models. Used for LiRA's reference models
    (Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022,
    arXiv:2112.03570, Sec. IV-B). The forward pass runs under :func:`leaklab.repro.autocast`.

    Args:
        model: maps x (N, ...) to logits (M, N, K), e.g. :class:`leaklab.models.StackedMLP` or
            :class:`leaklab.models.StackedNet`. For ``batches="own"`` or ``chunk`` < M it must accept
            ``model(x, members=slice(a, b), per_model=...)`` -> (b - a, N, K) and have ``n_models``.
        x: inputs (N, ...); y: int64 labels (N,); keep: bool membership matrix (M, N).
        epochs: passes over the data (epochs). lr: Adam's (peak) learning rate. batch_size: examples
            per step (per model with ``"own"``). seed: shuffling (and augmentation) seed.
        weight_decay: Adam's L2 penalty. batches: ``"shared"`` or ``"own"`` (above).
        schedule: ``"constant"`` learning rate, or ``"onecycle"`` (warm-up over the first 15% of the
            steps, then cosine decay; ``torch.optim.lr_scheduler.OneCycleLR``).
        chunk: models per forward/backward pass (None: ``model.chunk`` if set, else all M).
        augment: optional ``augment(x_batch, generator) -> x_batch`` applied to every training batch
            of shape (B, ...), e.g. :func:`leaklab.data.random_crop_flip`.
        desc: progress-bar label.

    Returns:
        :class:`History` with the mean (over models) training loss per epoch (nats).

    Raises:
        ValueError: ``keep`` is not (M, N) bool matching the model's M and the data's N; ``epochs``
            < 1; ``chunk`` < 1; an unknown ``batches`` or ``schedule``; with ``"own"``, a model that
            keeps no example.
    """
    from tqdm.auto import tqdm

    device = _device_of(model)
    n = len(y)
    if keep.dtype != torch.bool or keep.dim() != 2 or keep.shape[1] != n:
        raise ValueError(f"keep must be a bool (M, N={n}) matrix, got {keep.dtype} {tuple(keep.shape)}")
    if keep.shape[0] != getattr(model, "n_models", keep.shape[0]):
        raise ValueError(f"keep has {keep.shape[0]} rows but the stack has {model.n_models} models: "
                         "one row (training set) per model")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batches not in ("shared", "own"):
        raise ValueError(f"batches must be 'shared' or 'own', got {batches!r}")
    if schedule not in ("constant", "onecycle"):
        raise ValueError(f"schedule must be 'constant' or 'onecycle', got {schedule!r}")
    m_all = keep.shape[0]
    rows = [torch.nonzero(k).flatten() for k in keep] if batches == "own" else []
    if any(len(r) == 0 for r in rows):
        raise ValueError("with batches='own' every model must keep at least one example; "
                         f"models {[i for i, r in enumerate(rows) if len(r) == 0]} keep none")
    x, y, k_all = x.to(device), y.to(device), keep.to(device).float()              # k_all: (M, N)
    parts = _chunks(model, chunk) if chunk is not None or getattr(model, "chunk", None) else [None]
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = -(-(max(len(r) for r in rows) if rows else n) // batch_size)           # steps per epoch
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps,
                                                 pct_start=0.15, cycle_momentum=False)
             if schedule == "onecycle" else None)
    g = torch_generator(seed)
    aug_gen = torch_generator(seed + 1)
    hist = History()

    def step_batches():
        if batches == "shared":
            for idx in torch.randperm(n, generator=g).split(batch_size):
                idx = idx.to(device)
                yield idx, k_all[:, idx]                                            # (B,), (M, B) mask
        else:
            perms = [r[torch.randperm(len(r), generator=g)] for r in rows]
            offsets = torch.arange(batch_size)
            for s in range(steps):
                idx = torch.stack([p[(s * batch_size + offsets) % len(p)] for p in perms])
                yield idx.to(device), None                                          # (M, B), no mask

    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress_enabled(), leave=False):
        total, count = 0.0, 0
        for idx, mask in step_batches():
            xb, yb = x[idx], y[idx]                                      # (B, ...) / (M, B, ...), (B,) / (M, B)
            if augment is not None:
                xb = augment(xb.flatten(0, idx.dim() - 1), aug_gen).view_as(xb)
            opt.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=device)
            for members in parts:
                sel = members or slice(None)
                with autocast(device):
                    logits = _forward(model, xb[sel] if mask is None else xb, members, per_model=mask is None)
                m, b, kk = logits.shape                                           # (m, B, K)
                labels = yb[sel].reshape(-1) if mask is None else yb.repeat(m)
                ce = nn.functional.cross_entropy(logits.reshape(-1, kk).float(), labels,
                                                 reduction="none").view(m, b)      # (m, B)
                if mask is None:
                    loss = ce.mean(1).sum()                                         # sum over models
                else:
                    kb = mask[sel]
                    loss = ((ce * kb).sum(1) / kb.sum(1).clamp_min(1)).sum()
                loss.backward()                                                     # gradients accumulate
                loss_sum += loss.detach()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss_sum.item() / m_all * idx.shape[-1]                       # one sync per step
            count += idx.shape[-1]
        hist.loss.append(total / count)
    model.eval()
    return hist


def membership_stack(profile, n_models: int, in_shape: tuple[int, int, int], seed: int,
                     num_classes: int = 10) -> nn.Module:
    """a3's architecture from the profile (``mia_model`` and its options, ``mia_chunk``,
    ``mia_vectorize``) as a fresh stack of ``n_models``, on the CPU: maps (N, C, H, W) to (M, N, K).

    Raises:
        ValueError: from :func:`leaklab.models.build_stacked` (e.g. an unknown ``mia_model``).
    """
    from .models import build_stacked

    options = ({"hidden": profile.mia_hidden} if profile.mia_model == "mlp" else
               {"depth": profile.mia_depth, "width": profile.mia_width, "vectorize": profile.mia_vectorize})
    return build_stacked(profile.mia_model, n_models, in_shape, num_classes, seed=seed, chunk=profile.mia_chunk,
                         **options)


def train_membership_models(profile, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, *, seed: int,
                            device: torch.device | str = "cpu", epochs: int | None = None,
                            weight_decay: float = 0.0, num_classes: int = 10) -> tuple[nn.Module, History]:
    """Build and train a3's models -- the target and LiRA's reference models -- as one stack,
    with the profile's architecture and recipe.

    ``ci``: :class:`leaklab.models.StackedMLP` (``mia_hidden`` ReLU units), Adam at a constant
    learning rate. ``full``: :class:`leaklab.models.StackedNet` of
    :class:`leaklab.models.ResNetGN` (ResNet-20 with GroupNorm), one-cycle learning rate, random crop + flip (:func:`leaklab.data.random_crop_flip`), trained
    ``mia_chunk`` models at a time (as one ``vmap`` call unless ``mia_vectorize`` is False). In both,
    each model draws its own mini-batches (``mia_batches="own"``), so the target's training
    randomness is its own, not its references'.
    Exactly :func:`membership_stack` + :func:`fit_stacked` with those settings.

    Args:
        profile: a :class:`leaklab.config.Profile` (fields ``mia_*``).
        x: float (N, C, H, W) pool images. y: int64 (N,) labels in [0, num_classes). keep: bool (M, N),
            row m = model m's training set (row 0 is the target in the notebook).
        seed: initialisation, shuffling and augmentation seed. device: where to train.
        epochs: overrides ``profile.mia_epochs`` (e.g. early stopping as a defence).
        weight_decay: Adam's L2 penalty (a defence; 0 by default). num_classes: K (10 for MNIST and CIFAR-10).

    Returns:
        (models, history): the trained stack in eval mode on ``device``, mapping (N, C, H, W) to
        logits (M, N, K) (use :func:`predict_stacked`), and its :class:`History`.

    Raises:
        ValueError: labels outside [0, num_classes); from :func:`leaklab.models.build_stacked` (unknown
            ``mia_model``) or :func:`fit_stacked` (a bad ``keep``).
    """
    from .data import random_crop_flip

    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {int(y.min())}..{int(y.max())}; "
                         "pass num_classes")
    models = membership_stack(profile, keep.shape[0], tuple(x.shape[1:]), seed, num_classes).to(device)
    hist = fit_stacked(models, x, y, keep, epochs=profile.mia_epochs if epochs is None else epochs,
                       lr=profile.mia_lr, batch_size=profile.mia_batch, seed=seed, weight_decay=weight_decay,
                       batches=profile.mia_batches, schedule=profile.mia_schedule,
                       augment=random_crop_flip if profile.mia_augment else None)
    return models, hist


@torch.no_grad()
def predict_stacked(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, chunk: int | None = None) -> torch.Tensor:
    """Logits of M stacked models on ``x`` in batches (memory stays O(chunk * batch_size)).

    Args:
        model: maps (B, ...) to logits (M, B, K); with ``chunk`` < M it must accept
            ``model(x, members=slice(a, b))``. x: inputs (N, ...).
        batch_size: examples per forward pass. chunk: models per forward pass (None: ``model.chunk``
            if set, else all M).

    Returns:
        float32 logits (M, N, K) on the CPU.
    """
    was_training = model.training
    model.eval()
    device = _device_of(model)
    parts = _chunks(model, chunk) if chunk is not None or getattr(model, "chunk", None) else [None]
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)   # no autocast: LiRA reads small logit differences (TF32 convolutions
                                              # on Ampere+ GPUs stay on; their error is far below the models' spread)
        out.append(torch.cat([_forward(model, xb, p).float().cpu() for p in parts]))
    model.train(was_training)
    return torch.cat(out, dim=1)
