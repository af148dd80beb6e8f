"""Plots the notebooks show: image grids and curves."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["image_grid", "curves", "roc_loglog"]


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
               size: float = 1.2, suptitle: str | None = None, stretch: bool = False):
    """Show images in a grid.

    Args:
        images: float (N, C, H, W) in [0, 1], C in {1, 3}.
        titles: N short captions (e.g. labels), or ``None``.
        ncols: images per row. size: inches per image.
        suptitle: figure title.
        stretch: show each image min-max stretched to the full grey range (for dim
            reconstructions); the data are not changed.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: ``images`` is not (N, 1|3, H, W) or ``titles`` has the wrong length.
    """
    import matplotlib.pyplot as plt

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1|3, H, W), got {tuple(images.shape)}")
    n = len(images)
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images")
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = images[i].detach().cpu().float()
            if stretch:
                img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)
            img = img.permute(1, 2, 0).clamp(0, 1).numpy()                       # (H, W, C)
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def curves(series: dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str | None = None,
           x: Sequence[float] | None = None, ylim: tuple[float, float] | None = None, logx: bool = False):
    """Plot named curves on one axis.

    Args:
        series: name -> y values (all the same length as ``x``).
        xlabel, ylabel: axis labels, with units. title: optional.
        x: x values (default 1, 2, ...). ylim: optional y range.
        logx: a logarithmic x axis (e.g. query budgets), ticks at the given ``x``.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, ys in series.items():
        xs = list(x) if x is not None else list(range(1, len(ys) + 1))
        ax.plot(xs, list(ys), marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    if logx:
        ax.set_xscale("log")
        if x is not None:
            ax.set_xticks(list(x), [f"{v:g}" for v in x])
            ax.minorticks_off()
    elif all(float(v).is_integer() for v in (x if x is not None else [1])):
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def roc_loglog(scores: dict[str, Sequence[float]], is_member: Sequence[bool], title: str | None = None):
    """ROC curves of several attacks on log-log axes, with the chance diagonal.

    Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022
    (arXiv:2112.03570), Sec. III: low-FPR behaviour is what matters, so both axes are log.

    Args:
        scores: attack name -> (N,) scores (higher = member). is_member: (N,) bool ground truth.
        title: optional.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import auc, roc_curve

    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    y = np.asarray(is_member, dtype=bool)
    floor = 1.0 / max(1, int((~y).sum()))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, np.asarray(s, dtype=np.float64))
        ax.plot(np.maximum(fpr, floor / 10), np.maximum(tpr, floor / 10), label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([floor / 10, 1], [floor / 10, 1], "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor / 2, 1)
    ax.set_ylim(floor / 2, 1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
