"""Benchmark: reference models per minute, batched (stacked weights) vs one at a time.

    python tests/benchmarks/bench_stacked.py [N_MODELS]

Trains the a3 `ci` configuration (MLP on 14x14 MNIST digits, a pool of 2,000, each model
on its half, the profile's epochs) for N_MODELS models (default: the profile's reference
models + the target) in one StackedMLP, then the same models one at a time (StackedMLP of
one model, same optimiser and batches), and prints wall time and models per minute.
"""
from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

from leaklab import get_profile
from leaklab.data import load_image_dataset
from leaklab.models import StackedMLP
from leaklab.train import fit_stacked


def main(n_models: int | None) -> None:
    p = get_profile(os.environ.get("LEAKLAB_PROFILE") or "ci")
    n_models = n_models or p.n_reference + 1
    d = load_image_dataset(p.mia_dataset)
    g = torch.Generator().manual_seed(0)
    o = torch.randperm(len(d.y), generator=g)[:p.mia_pool]
    x, y = nn.functional.avg_pool2d(d.x[o], p.mia_image_pool), d.y[o]
    keep = torch.rand(n_models, len(y), generator=g) < 0.5
    args = dict(epochs=p.mia_epochs, lr=p.mia_lr, batch_size=p.mia_batch, seed=0)
    print(f"profile {p.name}: {n_models} models, pool {len(y)}, {x[0].numel()} inputs, {p.mia_hidden} hidden, "
          f"{p.mia_epochs} epochs, {torch.get_num_threads()} threads")
    t = time.perf_counter()
    fit_stacked(StackedMLP(n_models, x[0].numel(), p.mia_hidden, 10, seed=0), x, y, keep, **args)
    batched = time.perf_counter() - t
    t = time.perf_counter()
    for m in range(n_models):
        fit_stacked(StackedMLP(1, x[0].numel(), p.mia_hidden, 10, seed=m), x, y, keep[m:m + 1], **args)
    sequential = time.perf_counter() - t
    print(f"batched:    {batched:7.1f} s  {60 * n_models / batched:7.1f} models/minute")
    print(f"sequential: {sequential:7.1f} s  {60 * n_models / sequential:7.1f} models/minute")
    print(f"speed-up:   {sequential / batched:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else None)
