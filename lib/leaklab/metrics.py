"""Metrics shared by the assignments (accuracy, fidelity/agreement)."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["accuracy", "agreement", "identification_rate", "ssim"]


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


def identification_rate(scores, labels, k: int = 1) -> float:
    """Top-k identification rate: the fraction of rows whose true label is among the k
    highest scores (scikit-learn's ``top_k_accuracy_score``).

    Args:
        scores: (N, K) logits or probabilities, K >= 3 (tensor or array).
        labels: (N,) int labels in [0, K).
        k: 1 <= k < K.

    Returns:
        Rate in [0, 1].

    Raises:
        ValueError: shapes do not match or k is out of range.
    """
    from sklearn.metrics import top_k_accuracy_score

    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    y = _labels(labels, "labels")
    if s.ndim != 2 or len(s) != len(y) or not 1 <= k < s.shape[1]:
        raise ValueError(f"need scores (N, K) with N = len(labels) and 1 <= k < K, got {s.shape}, {len(y)}, k={k}")
    return float(top_k_accuracy_score(y, s, k=k, labels=np.arange(s.shape[1])))


def ssim(a, b) -> float:
    """Structural similarity of two grey images (scikit-image's ``structural_similarity``).

    Wang et al., "Image quality assessment: from error visibility to structural
    similarity", IEEE TIP 2004, Eq. (13); Gaussian-free 7x7 windows as scikit-image uses.

    Args:
        a, b: float images (H, W) or (1, H, W) with values in [0, 1].

    Returns:
        SSIM in [-1, 1] (1: identical).

    Raises:
        ValueError: the shapes differ.
    """
    from skimage.metrics import structural_similarity

    x = (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)).squeeze()
    y = (b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)).squeeze()
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two grey images of the same (H, W) shape, got {x.shape} and {y.shape}")
    return float(structural_similarity(x.astype(np.float64), y.astype(np.float64), data_range=1.0))
