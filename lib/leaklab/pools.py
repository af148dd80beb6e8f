"""Query pools: the unlabeled natural data a model-extraction attacker holds.

Knockoff Nets (Orekondy et al., CVPR 2019, arXiv:1812.02766, Sec. 4) query a victim with
natural images from a *different* distribution than its training data. Two pools:

- ``"digits"`` (offline, ``ci``): the 1,797 handwritten digits that ship with scikit-learn
  (the test set of UCI "Optical Recognition of Handwritten Digits": 13 writers, 8x8
  pixels, 17 grey levels, collected with NIST's preprocessing programs). Other writers,
  forms, resolution and normalisation than MNIST's 28x28 digits, so the attacker never
  holds a single image of the victim's training distribution -- but the same task: a
  related-domain natural pool in the sense of Knockoff Nets.
  Resized into MNIST's geometry (an 18x18 box centred in 28x28) with a contrast curve.
- ``"cifar100"`` (``full``): CIFAR-100's 50,000 training images through torchvision, for a
  CIFAR-10 victim: natural 32x32 photos of 100 *other* classes.

Each pool can add random-affine views of its images (the attacker's own augmentation:
more queries from the same natural images, no synthetic data).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .data import torchvision_split

__all__ = ["POOLS", "load_query_pool"]


def _digits() -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0        # (1797, 1, 8, 8)
    x = F.interpolate(x, size=(18, 18), mode="bilinear", antialias=True, align_corners=False)
    x = F.pad(x.clamp(0, 1), (5, 5, 5, 5))                                                 # (1797, 1, 28, 28)
    return x ** 2                       # thinner, darker strokes: closer to MNIST's stroke profile


def _cifar100() -> torch.Tensor:
    from torchvision.datasets import CIFAR100

    ds = torchvision_split(CIFAR100, "cifar100", "cifar-100-python", "CIFAR-100", train=True)
    return torch.as_tensor(ds.data).permute(0, 3, 1, 2).float() / 255.0                   # (50000, 3, 32, 32)


#: pool key -> loader returning float32 (N, C, H, W) in [0, 1]
POOLS = {"digits": _digits, "cifar100": _cifar100}


def load_query_pool(name: str, views: int = 0, seed: int = 0) -> torch.Tensor:
    """The attacker's unlabeled query pool, optionally with random-affine views.

    Args:
        name: ``"digits"`` (1,797 scikit-learn digits as 1x28x28, offline) or ``"cifar100"``
            (50,000 CIFAR-100 training images, 3x32x32, torchvision).
        views: extra views per image (>= 0): each a ``torchvision.transforms.v2.RandomAffine``
            (rotation <= 15 degrees, translation <= 10%, scale 0.8-1.2, shear <= 10 degrees).
        seed: the seed of the views (the global torch RNG is restored afterwards).

    Returns:
        float32 (N * (1 + views), C, H, W) in [0, 1]: the originals first, then each round of views.

    Raises:
        ValueError: unknown ``name`` or ``views`` < 0.
        DatasetUnavailableError: the data cannot be had; the message says where to put it.
    """
    if name not in POOLS:
        raise ValueError(f"unknown query pool {name!r}; choose one of {sorted(POOLS)}")
    if views < 0:
        raise ValueError(f"views must be >= 0, got {views}")
    x = POOLS[name]()
    if views == 0:
        return x
    from torchvision.transforms import v2

    affine = v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        extra = [torch.stack([affine(im) for im in x]) for _ in range(views)]             # views x (N, C, H, W)
    return torch.cat([x, *extra]).clamp(0, 1)
