"""Where a1's end-to-end thresholds come from: the reference solution over several seeds.

    python tests/benchmarks/a1_seed_spread.py [N_SEEDS]

Runs the reference KeyGen and Mark (taken from the source notebook's solution cells)
exactly as the hidden end-to-end test does, for split/model/key seeds 0..N-1 in the
`ci` profile, and prints No-WM (= f), an unseen clean model ("Other": other data, other seed,
as the hidden test trains it), FROMSCRATCH and PRETRAINED test and trigger accuracy, and the
spread. Thresholds in the hidden test: trigger >= 0.95, test >= No-WM - 0.02, Other's trigger
accuracy <= 0.30.
"""
from __future__ import annotations

import sys

from reference import reference_namespace


def _preamble(src: str) -> str | None:
    """The imports and the key dataclasses (not the training) of the a1 notebook."""
    if src.startswith("import copy, hashlib"):
        return src
    return src.split("# The data and the clean model")[0] if "class MarkingKey" in src else None


def main(n_seeds: int) -> None:
    import torch

    from leaklab import get_profile
    from leaklab.data import load_splits
    from leaklab.models import build_model
    from leaklab.train import evaluate, fit, predict

    ns, p = reference_namespace("a1_watermarking", _preamble), get_profile("ci")
    rows = []
    for s in range(n_seeds):
        split = load_splits(p, seed=s)
        clean = build_model(p.model, 1, 10, 28, seed=10 * s)
        fit(clean, split.train, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, seed=10 * s)
        mk, _ = ns["keygen"](p.n_triggers, lambda x: predict(clean, x).argmax(1), 10, (1, 28, 28),
                             torch.Generator().manual_seed(10 * s + 1))
        other = build_model(p.model, 1, 10, 28, seed=10 * s + 4)
        fit(other, split.attacker, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, seed=10 * s + 4)
        row = {"seed": s, "No-WM": (evaluate(clean, split.test), evaluate(clean, (mk.triggers, mk.labels))),
               "Other": (evaluate(other, split.test), evaluate(other, (mk.triggers, mk.labels)))}
        for mode, start in (("FROMSCRATCH", build_model(p.model, 1, 10, 28, seed=10 * s + 2)), ("PRETRAINED", clean)):
            m = ns["mark"](start, mk, split.train, mode, p, seed=10 * s + 3)
            row[mode] = (evaluate(m, split.test), evaluate(m, (mk.triggers, mk.labels)))
        rows.append(row)
        print(f"seed {s}: " + "  ".join(f"{k} test {v[0]:.3f} trigger {v[1]:.2f}" for k, v in row.items() if k != "seed"),
              flush=True)
    for k in ("No-WM", "Other", "FROMSCRATCH", "PRETRAINED"):
        tests, trigs = [r[k][0] for r in rows], [r[k][1] for r in rows]
        print(f"{k:12s} test {min(tests):.3f}-{max(tests):.3f}  trigger {min(trigs):.2f}-{max(trigs):.2f}")
    drop = max(r["No-WM"][0] - r[k][0] for r in rows for k in ("FROMSCRATCH", "PRETRAINED"))
    print(f"largest test-accuracy drop of a marked model vs No-WM: {drop:+.3f} (threshold 0.020)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
