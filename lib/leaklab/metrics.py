"""Metrics shared by the assignments (accuracy, fidelity/agreement)."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["accuracy", "agreement"]


def _labels(a, name: str) -> np.ndarray:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:                   # a column of labels (N, 1) -> (N,)
        a = a[:, 0]
    if a.ndim == 2:                                       # (N, K) scores -> (N,) labels
        a = a.argmax(1)
    if a.ndim != 1:
        raise ValueError(f"{name} must be labels (N,) or scores (N, K), got shape {a.shape}")
    return a


def accuracy(y_true, y_pred) -> float:
    """Fraction of predictions equal to the labels.

    Args:
        y_true: int labels (N,). y_pred: int labels (N,) or (N, 1), or scores/logits (N, K >= 2)
            (argmax taken). Tensors or arrays.

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: shapes differ or N = 0.
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape or len(t) == 0:
        raise ValueError(f"need equal, non-empty label arrays, got {t.shape} and {p.shape}")
    return float((t == p).mean())


def agreement(pred_a, pred_b) -> float:
    """Fidelity: the fraction of inputs on which two models give the same label.

    Jagielski et al., "High Accuracy and High Fidelity Extraction of Neural Networks",
    USENIX Security 2020 (arXiv:1909.01838), Sec. 3 (top-1 agreement).

    Args:
        pred_a, pred_b: labels (N,) or scores (N, K) of the two models on the same inputs.

    Returns:
        Agreement in [0, 1].

    Raises:
        ValueError: shapes differ or N = 0.
    """
    return accuracy(pred_a, pred_b)
