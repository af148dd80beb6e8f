"""Where a5's end-to-end thresholds come from: the reference over several training seeds.

    python tests/benchmarks/a5_seed_spread.py [N_SEEDS]

For training seeds 0..N-1 (ci profile; each victim trained once, then cached under
LEAKLAB_CACHE_DIR), runs the two hidden end-to-end tests with the reference functions of
the source notebook: 500 top-k samples ranked by perplexity -> e-mails of the 16- and 32-copy
people in the top-100 against those of the 1- and 2-copy people; and the exposure of every
canary. Prints both per seed and the spread. The hidden tests (seed 0) ask: at least
E2E_P3_MIN e-mails of 16-32 copies, E2E_P3_GAP more than of 1-2 copies; 32-copy exposure at
least E2E_P4_MIN bits and E2E_P4_GAP above the 1-copy canary's.
"""
from __future__ import annotations

import sys
import time

from reference import reference_namespace


def main(n_seeds: int) -> None:
    import numpy as np
    import torch

    from leaklab import get_profile
    from leaklab.corpus import CANARY_TEMPLATE
    from leaklab.lm import build_language_models, decode, encode_batch, secrets_found

    ns = reference_namespace("a5_gpt2_extraction", lambda src: src if src.startswith("import math, re") else None)
    p = get_profile("ci")
    rows = []
    for s in range(n_seeds):
        t0 = time.time()
        lm = build_language_models(p, seed=s)
        built = time.time() - t0
        ids = ns["generate"](lm.victim, torch.tensor([0]), 500, p.lm_sample_tokens, p.lm_top_k, batch_size=250,
                             generator=torch.Generator().manual_seed(2024 + s))
        tx = decode(lm.tokenizer, ids)
        nll = torch.cat([ns["token_nll"](lm.victim, b) for b in ids.split(250)])
        top = ns["rank_samples"](ns["perplexity"](nll).numpy(), tx, 100)
        found = secrets_found([tx[i] for i in top], lm.corpus.secrets)["email"]
        cp = np.array([x.copies for x in lm.corpus.secrets])
        per = [int(found[cp == c].sum()) for c in sorted(set(cp.tolist()))]
        hi, lo = int(found[cp >= 16].sum()), int(found[cp <= 2].sum())
        d = lm.corpus.digits
        cid, cm = encode_batch(lm.tokenizer, [CANARY_TEMPLATE.format(secret=f"{i:0{d}d}") for i in range(10 ** d)])
        lp = torch.cat([ns["log_perplexity"](ns["token_nll"](lm.victim, a, m), m)
                        for a, m in zip(cid.split(2048), cm.split(2048))]).numpy()
        ins = np.array([int(c.secret) for c in lm.corpus.canaries])
        exp = {}
        for c in lm.corpus.canaries:
            keep = np.ones(len(lp), bool)
            keep[ins[ins != int(c.secret)]] = False
            exp[c.copies] = ns["exposure"](lp[int(c.secret)], lp[keep])
        rows.append((hi, hi - lo, exp[32], exp[32] - exp[1]))
        print(f"seed {s} (models {built:.0f} s): e-mails in the top-100 by copies {per}; 16-32 copies {hi}, "
              f"1-2 copies {lo}; exposure " + ", ".join(f"{k}: {v:.1f}" for k, v in exp.items()), flush=True)
    names = ("e-mails 16-32 copies", "minus 1-2 copies", "exposure 32 copies", "exposure 32 - 1 copies")
    for i, name in enumerate(names):
        print(f"{name:24s} {min(r[i] for r in rows):.2f} - {max(r[i] for r in rows):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
