"""Benchmark: a3's reference models per minute, batched (one stack) vs one at a time; memory.

    python tests/benchmarks/bench_stacked.py [--profile ci|full] [--models M] [--pool N] [--epochs E]
                                             [--skip-sequential] [--loop] [--random-inputs]

Trains the profile's a3 recipe (:func:`leaklab.train.train_membership_models`: the architecture,
batches, schedule, augmentation and model chunks of ``mia_*``) for M models (default: the
profile's reference models + the target), each on a random half of a pool of N, first as one
stack, then one model at a time (a stack of one, same recipe), and prints wall time, models per
minute and the speed-up. ``ci`` uses the real MNIST pool; ``full`` uses CIFAR-10 when it is on
disk and otherwise random CIFAR-shaped tensors (the cost of a step does not depend on the pixel
values; accuracy is not measured here). On a CPU pass a small ``--models/--pool/--epochs`` for
``full``; on a GPU the defaults time the real configuration and ``--epochs`` just shortens the
run: the full run's time is extrapolated per epoch.

Memory: prints the parameters' memory (weights, gradients and Adam's two moments), the pool and a
step's input batches, and the activation memory autograd keeps for one forward/backward pass of
one chunk (measured on the CPU with ``torch.autograd.graph.saved_tensors_hooks``, float32): a lower
bound on the peak. On a GPU it also prints the measured peak (``torch.cuda.max_memory_allocated``).
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from leaklab import get_profile
from leaklab.data import DatasetUnavailableError, load_image_dataset
from leaklab.train import membership_stack, train_membership_models
from timing import timed


def pool(p, n: int, random_inputs: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        if random_inputs:
            raise ImportError("random inputs asked for")
        d = load_image_dataset(p.mia_dataset)
        o = torch.randperm(len(d.y), generator=torch.Generator().manual_seed(0))[:n]
        return nn.functional.avg_pool2d(d.x[o], p.mia_image_pool), d.y[o], p.mia_dataset
    except (DatasetUnavailableError, ImportError):          # offline, or no torchvision: CIFAR-shaped noise
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g), "random CIFAR-shaped"


def saved_activation_bytes(p, in_shape, chunk: int, batch: int) -> int:
    """Bytes autograd saves for backward in one forward pass of ``chunk`` models on ``batch`` examples each."""
    probe_batch = min(batch, 8)
    m = membership_stack(p, chunk, in_shape, seed=0)
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    x = torch.rand(chunk, probe_batch, *in_shape)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if p.mia_batches == "own":
            m(x, per_model=True)
        else:
            m(x[0])
    return total * batch // probe_batch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="ci")
    ap.add_argument("--models", type=int, help="models in the stack (default: reference models + target)")
    ap.add_argument("--pool", type=int, help="pool size N (default: the profile's)")
    ap.add_argument("--epochs", type=int, help="epochs to time (default: the profile's)")
    ap.add_argument("--skip-sequential", action="store_true", help="time the stack only")
    ap.add_argument("--random-inputs", action="store_true", help="CIFAR-shaped noise instead of the dataset "
                    "(no download attempt on an offline machine)")
    ap.add_argument("--loop", action="store_true", help="ResNet stacks: run a pass's models one after another, "
                    "not as one vmap call (mia_vectorize=False)")
    args = ap.parse_args()
    p = get_profile(args.profile)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_models = args.models or p.n_reference + 1
    x, y, source = pool(p, args.pool or p.mia_pool, args.random_inputs)
    epochs = args.epochs or p.mia_epochs
    if args.loop:
        p = p.replace(mia_vectorize=False)
    run = p.replace(mia_epochs=epochs)
    keep = torch.rand(n_models, len(y), generator=torch.Generator().manual_seed(1)) < 0.5
    arch = f"MLP ({p.mia_hidden} units)" if p.mia_model == "mlp" else f"ResNet-{p.mia_depth} GN (width {p.mia_width})"
    print(f"profile {p.name}: {n_models} x {arch}, pool {len(y)} ({source}, {tuple(x.shape[1:])}), {epochs} of "
          f"{p.mia_epochs} epochs, batch {p.mia_batch} ({p.mia_batches}), chunk {p.mia_chunk}"
          f"{'' if p.mia_model == 'mlp' else ' vmap' if p.mia_vectorize else ' loop'}, augment {p.mia_augment}, "
          f"{device.type}" + (f" {torch.cuda.get_device_name()}" if device.type == "cuda" else
                              f" {torch.get_num_threads()} threads"))

    one = membership_stack(p, 1, tuple(x.shape[1:]), seed=0)
    per_model_params = sum(t.numel() for t in one.parameters())
    param_gib = 4 * per_model_params * 4 * n_models / 2**30
    chunk = p.mia_chunk or n_models
    act_gib = saved_activation_bytes(p, tuple(x.shape[1:]), min(chunk, n_models), p.mia_batch) / 2**30
    data_gib = x.numel() * 4 / 2**30
    rows_per_step = n_models if p.mia_batches == "own" else 1
    batch_gib = 4 * rows_per_step * p.mia_batch * x[0].numel() * 4 / 2**30     # gathered, padded, cropped, contiguous
    print(f"memory: {per_model_params:,} parameters per model; weights+gradients+Adam {param_gib:.2f} GiB, "
          f"pool on the device {data_gib:.2f} GiB, a step's input batches (4 copies for augmentation) "
          f"{batch_gib:.2f} GiB, saved activations per chunk of {min(chunk, n_models)} {act_gib:.2f} GiB (float32) "
          f"-> at least {param_gib + data_gib + batch_gib + act_gib:.2f} GiB, plus the CUDA context, cuDNN workspaces "
          "and backward's temporaries (a GPU run prints the measured peak)")

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        one(x[:1]).sum().backward()
    rows = keep.sum(1).max().item() if p.mia_batches == "own" else len(y)
    per_epoch = n_models * -(-rows // p.mia_batch) * p.mia_batch                    # model-examples per epoch
    print(f"compute: {counter.get_total_flops() / 1e6:.1f} MFLOP per model-example (forward + backward, "
          f"torch.utils.flop_counter); the {p.mia_epochs}-epoch run of {n_models} models "
          f"{counter.get_total_flops() * per_epoch * p.mia_epochs:.3g} FLOP")


    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batched = timed(lambda: train_membership_models(run, x, y, keep, seed=0, device=device), device)
    if device.type == "cuda":
        print(f"measured peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    scale = p.mia_epochs / epochs
    print(f"batched:    {batched:8.1f} s  {60 * n_models / batched:8.1f} models/minute"
          + (f"  (whole {p.mia_epochs}-epoch run: ~{batched * scale / 60:.1f} min)" if scale != 1 else ""))
    if not args.skip_sequential:
        sequential = sum(timed(lambda m=m: train_membership_models(run, x, y, keep[m:m + 1], seed=m, device=device),
                               device) for m in range(n_models))
        print(f"sequential: {sequential:8.1f} s  {60 * n_models / sequential:8.1f} models/minute")
        print(f"speed-up:   {sequential / batched:.1f}x")


if __name__ == "__main__":
    main()
