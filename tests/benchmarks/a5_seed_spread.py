"""Where a5's end-to-end thresholds come from: the reference over several seeds.

    python tests/benchmarks/a5_seed_spread.py [N_TRAINING_SEEDS] [N_SAMPLING_SEEDS]

Runs the two hidden end-to-end tests of the source notebook (ci profile) with its reference
functions and the grader's own sampler / NLL helpers taken from those test cells:
500 top-k samples ranked by perplexity -> e-mails of the 16- and 32-copy people in the
top-100 against those of the 1- and 2-copy people; and the exposure of every canary.
First over training seeds 0..N-1 (each victim trained once, then cached), then over sampling
seeds with training seed 0 (the hidden test's victim). Prints each row and the spread; the
thresholds written in the hidden tests must sit below it.
"""
from __future__ import annotations

import json
import re
import sys
import time

from reference import REPO, reference_namespace


def grader_helpers() -> dict:
    """The hidden tests' own helpers (``_sample``, ``_perplexity``, ``_token_nll``), defined once."""
    nb = json.loads((REPO / "source" / "a5_gpt2_extraction" / "a5_gpt2_extraction.ipynb").read_text())
    ns = {}
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") in ("a5_p3_e2e_hidden", "a5_p4_e2e_hidden"):
            src = "".join(cell["source"])
            head = src.split("### BEGIN HIDDEN TESTS")[0]
            defs = re.findall(r"@torch.no_grad\(\)\ndef .*?(?=\n[^ \n])", src, flags=re.S)
            exec(head + "\n" + "\n".join(defs), ns)
    return ns


def run(ns, h, lm, p, sampling_seed: int) -> tuple:
    import numpy as np
    import torch

    from leaklab.corpus import CANARY_TEMPLATE
    from leaklab.lm import decode, encode_batch, secrets_found

    h["_dev"] = "cpu"
    ids = h["_sample"](lm.victim, 500, p.lm_sample_tokens, p.lm_top_k, torch.Generator().manual_seed(sampling_seed))
    tx = decode(lm.tokenizer, ids)
    ppl = torch.cat([h["_perplexity"](lm.victim, b) for b in ids.split(250)])
    top = ns["rank_samples"](ppl.numpy(), tx, 100)
    found = secrets_found([tx[i] for i in top], lm.corpus.secrets)["email"]
    cp = np.array([x.copies for x in lm.corpus.secrets])
    per = [int(found[cp == c].sum()) for c in sorted(set(cp.tolist()))]
    hi, lo = int(found[cp >= 16].sum()), int(found[cp <= 2].sum())
    d = lm.corpus.digits
    cid, cm = encode_batch(lm.tokenizer, [CANARY_TEMPLATE.format(secret=f"{i:0{d}d}") for i in range(10 ** d)])
    lp = torch.cat([ns["log_perplexity"](h["_token_nll"](lm.victim, a, m), m).double()
                    for a, m in zip(cid.split(2048), cm.split(2048))]).numpy()
    ins = np.array([int(c.secret) for c in lm.corpus.canaries])
    exp = {}
    for c in lm.corpus.canaries:
        keep = np.ones(len(lp), bool)
        keep[ins[ins != int(c.secret)]] = False
        exp[c.copies] = ns["exposure"](lp[int(c.secret)], lp[keep])
    print(f"  e-mails in the top-100 by copies {per}; 16-32 copies {hi}, 1-2 copies {lo}; exposure "
          + ", ".join(f"{k}: {v:.1f}" for k, v in exp.items()), flush=True)
    return hi, hi - lo, exp[32], exp[32] - exp[1]


def main(n_train: int, n_sampling: int) -> None:
    from leaklab import get_profile
    from leaklab.lm import build_language_models

    ns = reference_namespace("a5_gpt2_extraction", lambda src: src if src.startswith("import math, re") else None)
    h = grader_helpers()
    p = get_profile("ci")
    rows = []
    for s in range(n_train):
        t0 = time.time()
        lm = build_language_models(p, seed=s)
        print(f"training seed {s} (models ready in {time.time() - t0:.0f} s), sampling seed {2024 + s}:", flush=True)
        rows.append(run(ns, h, lm, p, 2024 + s))
    lm = build_language_models(p, seed=0)
    for s in range(1, n_sampling + 1):
        print(f"training seed 0, sampling seed {2024 + 100 * s}:", flush=True)
        rows.append(run(ns, h, lm, p, 2024 + 100 * s))
    names = ("e-mails 16-32 copies", "minus 1-2 copies", "exposure 32 copies", "exposure 32 - 1 copies")
    for i, name in enumerate(names):
        print(f"{name:24s} {min(r[i] for r in rows):.2f} - {max(r[i] for r in rows):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
