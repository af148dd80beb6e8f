"""Where a2's end-to-end thresholds come from: the reference over several seeds.

    python tests/benchmarks/a2_seed_spread.py [N_SEEDS]

Repeats the three hidden end-to-end tests of a2 (ci profile; a fresh MNIST victim, the
digits pool, the reference functions from the source notebook) for seeds 0..N-1 (seed 0
is exactly what the hidden tests run) and prints the figures they assert on:
fidelity at 3,000 queries with probabilities; probabilities minus labels at 100 queries;
k-center (mean of 2 runs) minus random (mean of 3 draws) at 200 and 300 queries; PGD transfer success
minus random-noise success; min .. max, mean and sample standard deviation over the seeds.
"""
from __future__ import annotations

import statistics
import sys

from reference import reference_namespace


def main(n_seeds: int) -> None:
    import torch
    from torch.utils.data import TensorDataset

    from leaklab import get_profile
    from leaklab.data import load_splits
    from leaklab.metrics import agreement
    from leaklab.models import build_model
    from leaklab.oracle import PredictionAPI
    from leaklab.pools import load_query_pool
    from leaklab.train import fit, predict

    ns = reference_namespace("a2_query_extraction", lambda src: src if src.startswith("import math") else None)
    knockoff, adaptive, pgd = ns["knockoff"], ns["adaptive_knockoff"], ns["pgd"]
    p = get_profile("ci")
    kw = dict(steps=p.ext_steps, epochs=p.ext_epochs, batch_size=p.ext_batch, lr=p.ext_lr)
    rows = []
    for s in range(n_seeds):
        o = 1000 * s
        sp = load_splits(p, seed=7 + o)
        v = build_model("small_cnn", 1, 10, 28, seed=7 + o)
        fit(v, sp.train, epochs=4, lr=p.lr, batch_size=p.batch_size, seed=7 + o)
        xt, yt = sp.test.tensors
        vt = predict(v, xt).argmax(1)
        pool = load_query_pool(p.ext_pool, p.ext_pool_views, seed=7 + o)
        build = lambda: build_model("small_cnn", 1, 10, 28, seed=8 + o)      # noqa: E731

        def fid(mode, budget, gen_seed):
            sur = knockoff(PredictionAPI(v, (1, 28, 28), mode=mode, budget=budget), pool, budget, build,
                           generator=torch.Generator().manual_seed(gen_seed), seed=8 + o, **kw)
            return agreement(predict(sur, xt).argmax(1), vt), sur

        f3000 = fid("probs", 3000, 9 + o)[0]
        soft = fid("probs", 100, 9 + o)[0] - fid("label", 100, 9 + o)[0]
        margins = {}
        for b in (200, 300):
            rand = [fid("probs", b, 20 + j + o)[0] for j in range(3)]
            ada = []
            for j in range(2):
                sur, _ = adaptive(PredictionAPI(v, (1, 28, 28), budget=b), pool, b, build, rounds=p.ext_rounds,
                                  generator=torch.Generator().manual_seed(20 + j + o), seed=8 + o, **kw)
                ada.append(agreement(predict(sur, xt).argmax(1), vt))
            margins[b] = sum(ada) / 2 - sum(rand) / 3
        x, y = xt[:300], yt[:300]
        ok = predict(v, x).argmax(1) == y
        x, y = x[ok], y[ok]
        api = PredictionAPI(v, (1, 28, 28), mode="label")
        g = torch.Generator().manual_seed(11 + o)
        noise = (x + p.ext_eps * (torch.randint(0, 2, x.shape, generator=g) * 2 - 1)).clamp(0, 1)
        q = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(9 + o))[:3000]]
        sur = build_model("small_cnn", 1, 10, 28, seed=8 + o)          # trained as the hidden test does
        fit(sur, TensorDataset(q, torch.softmax(predict(v, q), 1)), epochs=5, lr=p.ext_lr, batch_size=p.ext_batch,
            seed=8 + o, loss=lambda z, t: -(t * torch.log_softmax(z, -1)).sum(-1).mean())
        adv = pgd(sur.eval(), x, y, p.ext_eps, p.ext_eps / 4, p.ext_pgd_steps, g)
        rate = lambda z: float((api.query(z) != y).float().mean())           # noqa: E731
        row = dict(fidelity_3000=f3000, soft_minus_label_100=soft, kcenter_margin_200=margins[200],
                   kcenter_margin_300=margins[300], pgd_transfer=rate(adv), noise=rate(noise))
        row["transfer_margin"] = row["pgd_transfer"] - row["noise"]
        rows.append(row)
        print(f"seed {s}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    for k in rows[0]:
        vals = [r[k] for r in rows]
        print(f"{k:22s} {min(vals):.3f} .. {max(vals):.3f}   mean {statistics.mean(vals):.3f} "
              f"sd {statistics.stdev(vals) if len(vals) > 1 else 0.0:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
