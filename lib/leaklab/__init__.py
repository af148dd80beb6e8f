"""LeakLab: the helper library of a course on stealing and leaking machine-learning models.

Infrastructure only -- profiles, data, models, training, the prediction API, metrics,
plots, grading helpers and artifacts. What students write lives in the notebooks.
"""
from __future__ import annotations

from .config import PROFILES, Profile, get_profile
from .repro import get_device, seed_everything

__version__ = "0.1.0"
__all__ = ["PROFILES", "Profile", "get_profile", "get_device", "seed_everything", "setup", "__version__"]


def setup(seed: int = 0, profile: str | None = None):
    """Notebook set-up in one call: choose the profile and device, seed, print one line.

    Args:
        seed: global seed for the notebook's own cells (library functions take their own).
        profile: a preset name, or ``None`` to let ``LEAKLAB_PROFILE`` / the hardware decide.

    Returns:
        ``(profile, device)``: the frozen :class:`Profile` and a ``torch.device``.

    Raises:
        ValueError: unknown profile name.
    """
    import torch

    prof = get_profile(profile)
    device = get_device("auto")
    seed_everything(seed)
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"leaklab {__version__}: profile={prof.name}, device={device}{gpu}, seed={seed}, "
          f"torch {torch.__version__}")
    return prof, device
