"""Where a3's end-to-end thresholds come from: the reference over several seeds.

    python tests/benchmarks/a3_seed_spread.py [N_SEEDS]

The hidden end-to-end test (fresh pool, membership, keep matrix and models; ci profile)
for seeds 0..N-1 with the reference functions from the source notebook. Prints TPR at
1% FPR of the loss attack and LiRA online / offline, and the spread. The hidden test
asks: LiRA online >= 0.03 and >= loss + 0.02; LiRA offline >= 0.02.
"""
from __future__ import annotations

import sys

from reference import reference_namespace


def main(n_seeds: int) -> None:
    import torch
    from sklearn.metrics import roc_curve
    from torch import nn

    from leaklab import get_profile
    from leaklab.data import load_image_dataset
    from leaklab.models import StackedMLP
    from leaklab.train import fit_stacked

    ns = reference_namespace("a3_membership_inference", lambda src: src if src.startswith("import numpy") else None)
    p = get_profile("ci")
    d = load_image_dataset(p.mia_dataset)
    rows = []
    for s in range(n_seeds):
        g = torch.Generator().manual_seed(1000 * s + 777)
        o = torch.randperm(len(d.y), generator=g)[:p.mia_pool]
        x, y = nn.functional.avg_pool2d(d.x[o], p.mia_image_pool), d.y[o]
        mem = torch.rand(len(y), generator=g) < 0.5
        keep = ns["balanced_keep"](p.n_reference, len(y), torch.Generator().manual_seed(1000 * s + 778))
        m = StackedMLP(1 + p.n_reference, x[0].numel(), p.mia_hidden, 10, seed=1000 * s + 779)
        fit_stacked(m, x, y, torch.cat([mem[None], keep]), epochs=p.mia_epochs, lr=p.mia_lr,
                    batch_size=p.mia_batch, seed=1000 * s + 779)
        with torch.no_grad():
            lg = m(x)
        ph = ns["phi_stable"](lg, y)

        def tpr1(scores):
            f, t, _ = roc_curve(mem.numpy(), scores.numpy())
            return float(t[f <= 0.01].max())
        row = (tpr1(ns["loss_scores"](lg[0], y)), tpr1(ns["lira_scores"](ph[0], ph[1:], keep)),
               tpr1(ns["lira_scores"](ph[0], ph[1:], keep, online=False)))
        rows.append(row)
        print(f"seed {s}: TPR@1%FPR loss {row[0]:.3f}  LiRA online {row[1]:.3f}  LiRA offline {row[2]:.3f}", flush=True)
    for i, name in enumerate(("loss", "LiRA online", "LiRA offline")):
        print(f"{name:12s} {min(r[i] for r in rows):.3f}-{max(r[i] for r in rows):.3f}")
    print(f"smallest online - loss margin: {min(r[1] - r[0] for r in rows):.3f} (test asks >= 0.02)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
