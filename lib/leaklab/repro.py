"""Seeding, generators, device choice and the one mixed-precision helper."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator, Literal

import numpy as np
import torch

__all__ = ["seed_everything", "torch_generator", "numpy_generator", "get_device", "autocast"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global state and torch (CPU and CUDA).

    Library functions take explicit generators; this is for the notebook's own cells.

    Args:
        seed: a non-negative integer.

    Raises:
        ValueError: ``seed`` is negative or not an integer.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def numpy_generator(seed: int) -> np.random.Generator:
    """A fresh ``np.random.Generator`` (PCG64) seeded with ``seed``."""
    return np.random.default_rng(int(seed))


def get_device(kind: Literal["auto", "cpu", "cuda"] | str = "auto") -> torch.device:
    """Resolve the device to compute on.

    Args:
        kind: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.

    Returns:
        A ``torch.device``.

    Raises:
        ValueError: CUDA was asked for but is not available, or ``kind`` is unknown.
    """
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if isinstance(kind, str) and kind.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {kind!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        return torch.device(kind)
    raise ValueError(f"unknown device {kind!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Mixed precision: bfloat16 autocast on CUDA GPUs with native bfloat16 (compute capability
    8.0 and up: A100, L4, H100, ...); a no-op elsewhere.

    The only place the course turns on reduced precision. GPUs without native bfloat16
    (a T4, 7.5) run in float32, which needs no loss scaling -- not in emulated bfloat16, which
    ``torch.cuda.is_bf16_supported()`` would report as supported.
    """
    if not enabled or device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 0):
        yield
        return
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        yield
