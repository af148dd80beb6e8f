"""Save and load what a run produced (weights, metrics) with SHA-256 hashes, and the
canonical byte encoding that commitments and hashes are computed over."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["canonical_bytes", "sha256_file", "save_weights", "load_weights", "save_json", "load_json"]


def canonical_bytes(value) -> bytes:
    """A canonical, unambiguous byte encoding of an array, tensor or integer.

    Layout: ``b"leaklab/1|" + dtype + b"|" + shape + b"|"`` followed by the values in
    C order, little-endian. Equal values give equal bytes whatever the memory layout,
    device or byte order; a different dtype or shape gives different bytes. Python
    ints (e.g. labels) are encoded as 0-d int64 arrays, NumPy integer scalars keep
    their dtype; bools are rejected.

    Args:
        value: ``torch.Tensor``, ``np.ndarray``, or ``int``.

    Returns:
        bytes.

    Raises:
        TypeError: any other type (including ``bool`` and ``float``).
    """
    if isinstance(value, bool) or not isinstance(value, (torch.Tensor, np.ndarray, int, np.integer)):
        raise TypeError(f"canonical_bytes takes a tensor, array or int, got {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.int64) if isinstance(value, int) else np.asarray(value)
    arr = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)   # keeps 0-d arrays 0-d
    header = f"leaklab/1|{arr.dtype.str}|{','.join(map(str, arr.shape))}|".encode()
    return header + arr.tobytes(order="C")


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(model: nn.Module, path: str | Path) -> str:
    """Save a model's state dict as safetensors and return the file's SHA-256.

    A sidecar ``<path>.sha256`` records the digest for :func:`load_weights`.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    digest = sha256_file(path)
    path.with_suffix(path.suffix + ".sha256").write_text(digest + "\n")
    return digest


def load_weights(model: nn.Module, path: str | Path, check_hash: bool = True) -> nn.Module:
    """Load safetensors weights into ``model`` after checking the recorded SHA-256.

    Args:
        model: receives the weights (state-dict keys must match).
        path: a file written by :func:`save_weights`.
        check_hash: compare with the ``<path>.sha256`` sidecar (default); ``False``
            loads weights that came without one.

    Raises:
        FileNotFoundError: no weights at ``path``, or no sidecar while ``check_hash``.
        ValueError: the file's hash differs from its sidecar (corrupt or altered).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}; save them with leaklab.artifacts.save_weights")
    side = path.with_suffix(path.suffix + ".sha256")
    if check_hash and not side.exists():
        raise FileNotFoundError(f"no recorded hash {side} for {path}; pass check_hash=False to load it unchecked")
    if check_hash and side.read_text().strip() != sha256_file(path):
        raise ValueError(f"{path} does not match its recorded SHA-256 in {side}: the file was altered")
    model.load_state_dict(load_file(str(path)))
    return model


def save_json(obj, path: str | Path) -> None:
    """Write ``obj`` as sorted, indented JSON."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_json(path: str | Path):
    """Read JSON written by :func:`save_json`."""
    return json.loads(Path(path).read_text())
