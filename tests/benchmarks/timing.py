"""Wall-clock timing for the benchmark scripts, synchronised with the GPU when there is one."""
from __future__ import annotations

import time
from typing import Callable


def timed(fn: Callable[[], object], device) -> float:
    """Seconds ``fn()`` takes on ``device`` (a ``torch.device``), waiting for queued CUDA work on both ends."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t
