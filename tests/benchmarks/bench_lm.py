"""Benchmark: a5's throughput -- training, generated and scored tokens per second.

    python tests/benchmarks/bench_lm.py [PROFILE]        (default: ci)

Uses the profile's model shape, the reference `generate` and `token_nll` of the source
notebook, and random token ids (throughput does not depend on the values). Prints figures;
asserts nothing. On a GPU with PROFILE=full it loads GPT-2 from the hub (or its cache).
"""
from __future__ import annotations

import sys

from reference import reference_namespace
from timing import timed


def main(profile_name: str) -> None:
    import torch

    from leaklab import get_device, get_profile
    from leaklab.lm import LM_PRESETS, tiny_gpt2, train_lm

    p = get_profile(profile_name)
    dev = get_device("auto")
    ns = reference_namespace("a5_gpt2_extraction", lambda src: src if src.startswith("import math, re") else None)
    if p.lm_model == "gpt2-tiny":
        model, vocab = tiny_gpt2(p.lm_vocab, p.lm_model).to(dev), p.lm_vocab
    else:
        from transformers import GPT2LMHeadModel
        model, vocab = GPT2LMHeadModel.from_pretrained(p.lm_model).to(dev).eval(), 50257
    n_params = sum(q.numel() for q in model.parameters())
    g = torch.Generator().manual_seed(0)
    stream = torch.randint(1, vocab, (p.lm_block * p.lm_batch * 20,), generator=g)


    dt = timed(lambda: train_lm(model, stream, epochs=1, lr=1e-4, block=p.lm_block, batch_size=p.lm_batch), dev)
    print(f"profile {p.name}, {dev}, {p.lm_model} ({n_params / 1e6:.2f} M parameters, {LM_PRESETS[p.lm_model]})")
    print(f"training : {len(stream) / dt:>10,.0f} tokens/s  (block {p.lm_block}, batch {p.lm_batch})")
    n = p.lm_gen_batch * 2
    gen = torch.Generator(device=dev).manual_seed(0)
    dt = timed(lambda: ns["generate"](model, torch.tensor([0]), n, p.lm_sample_tokens, p.lm_top_k,
                                      batch_size=p.lm_gen_batch, generator=gen), dev)
    print(f"generated: {n * p.lm_sample_tokens / dt:>10,.0f} tokens/s  ({n} samples x {p.lm_sample_tokens} tokens, "
          f"batches of {p.lm_gen_batch}, KV cache)")
    ids = torch.randint(1, vocab, (n, p.lm_sample_tokens), generator=g)
    dt = timed(lambda: [ns["token_nll"](model, b) for b in ids.split(256)], dev)
    print(f"scored   : {ids.numel() / dt:>10,.0f} tokens/s  (batches of 256)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ci")
