"""Grading invariants 1 and 3 for a5 (GPT-2 training-data extraction), in one live kernel;
invariant 2 is shown through nbgrader in test_demo.py."""
from __future__ import annotations

from kernel import equivalent_answer_test, invariant_tests

A5_TESTS = {"a5_p1_sampling_visible", "a5_p1_sampling_hidden", "a5_p2_metrics_visible", "a5_p2_metrics_hidden",
            "a5_p3_rank_visible", "a5_p3_rank_hidden", "a5_p3_e2e_hidden", "a5_p4_exposure_visible",
            "a5_p4_exposure_hidden", "a5_p4_e2e_hidden"}

P1 = ["a5_p1_sampling_visible", "a5_p1_sampling_hidden"]
P2 = ["a5_p2_metrics_visible", "a5_p2_metrics_hidden"]
P3 = ["a5_p3_rank_visible", "a5_p3_rank_hidden"]
P4 = ["a5_p4_exposure_visible", "a5_p4_exposure_hidden"]

# name -> (a wrong definition, the test cells that must catch it)
WRONG = {
    "perplexity averaged over the batch axis": ('''
def perplexity(nll, mask=None):
    m = torch.ones_like(nll) if mask is None else mask[:, 1:].to(nll.dtype)
    return torch.exp((nll * m).sum(0) / m.sum(0))
''', P2),
    "perplexity averaged over every token of the batch (one number)": ('''
def perplexity(nll, mask=None):
    m = torch.ones_like(nll) if mask is None else mask[:, 1:].to(nll.dtype)
    return torch.exp((nll * m).sum() / m.sum()).expand(nll.shape[0])
''', P2),
    "zlib entropy of the token ids instead of the text": ('''
def zlib_entropy(text):
    return 8 * len(zlib.compress(np.asarray(tok(text)["input_ids"], dtype=np.int64).tobytes()))
''', P2),
    "zlib entropy of the text with its non-ASCII characters dropped": ('''
def zlib_entropy(text):
    return 8 * len(zlib.compress(text.encode("ascii", errors="ignore")))
''', ["a5_p2_metrics_hidden"]),
    "ranking in the wrong direction (highest score first)": ('''
_ref_rank = rank_samples
def rank_samples(scores, texts, k):
    return _ref_rank(-np.asarray(scores, dtype=float), texts, k)
''', P3 + ["a5_p3_e2e_hidden"]),
    "duplicates judged on word sets, not multisets": ('''
def is_near_duplicate(a, b):
    ta, tb = set(word_trigrams(a)), set(word_trigrams(b))
    if not ta:
        return a == b
    return len(ta & tb) >= len(ta) / 2
''', ["a5_p3_rank_hidden"]),
    "no de-duplication at all": ('''
def rank_samples(scores, texts, k):
    return [int(i) for i in np.argsort(np.asarray(scores, dtype=float), kind="stable")[:k]]
''', P3 + ["a5_p3_e2e_hidden"]),
    "token NLL without the shift (token i scored by its own position)": ('''
@torch.no_grad()
def token_nll(model, ids, mask=None):
    mask = torch.ones_like(ids) if mask is None else mask.long()
    logits = model(input_ids=ids, attention_mask=mask).logits[:, 1:].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return nll * mask[:, 1:]
''', P2),
    "window metric: the mean over windows instead of the minimum": ('''
def window_perplexity(nll, window):
    w = min(window, nll.shape[1])
    return torch.exp(nll.unfold(1, w, 1).mean(-1).mean(1))
''', P2),
    "exposure with a rank that leaves out the canary itself": ('''
def exposure(canary_score, candidate_scores):
    c = np.asarray(candidate_scores, dtype=float)
    if c.size == 0:
        raise ValueError("no candidates")
    rank = max(1, int((c < float(canary_score)).sum()))
    return math.log2(c.size) - math.log2(rank)
''', P4),
    "exposure with ties in the canary's favour": ('''
def exposure(canary_score, candidate_scores):
    c = np.asarray(candidate_scores, dtype=float)
    if c.size == 0:
        raise ValueError("no candidates")
    return math.log2(c.size) - math.log2(1 + int((c < float(canary_score)).sum()))
''', ["a5_p4_exposure_hidden"]),
    "reference ratio inverted (reference over victim)": ('''
_ref_scores = membership_scores
def membership_scores(ppl, ppl_ref, ppl_lower, zlib_bits, ppl_window):
    out = _ref_scores(ppl, ppl_ref, ppl_lower, zlib_bits, ppl_window)
    out["reference"] = torch.log(ppl_ref) / torch.log(ppl)
    return out
''', ["a5_p2_metrics_hidden"]),
    "log-perplexity as the mean token NLL (bits per token)": ('''
def log_perplexity(nll, mask=None):
    m = torch.ones_like(nll) if mask is None else mask[:, 1:].to(nll.dtype)
    return (nll * m).sum(1) / m.sum(1) / math.log(2)
''', ["a5_p4_exposure_visible", "a5_p4_exposure_hidden"]),
    "top-k that keeps k + 1 tokens": ('''
def top_k_filter(logits, k):
    if k < 1:
        raise ValueError("k >= 1")
    kth = torch.topk(logits, min(k + 1, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))
''', P1),
    "temperature that never decays": ('''
def temperature_at(step, t_start, decay_tokens):
    return 1.0 if decay_tokens <= 0 else t_start
''', P1),
    "sampling that ignores the generator": ('''
_ref_generate = generate
def generate(model, prompt_ids, n_samples, length, top_k=40, t_start=1.0, decay_tokens=0, batch_size=250,
             generator=None):
    return _ref_generate(model, prompt_ids, n_samples, length, top_k, t_start, decay_tokens, batch_size, None)
''', ["a5_p1_sampling_hidden"]),
    "the KV cache fed the whole sequence again (positions drift)": ('''
@torch.no_grad()
def generate(model, prompt_ids, n_samples, length, top_k=40, t_start=1.0, decay_tokens=0, batch_size=250,
             generator=None):
    prompt = prompt_ids.view(1, -1)
    out = []
    for start in range(0, n_samples, batch_size):
        b = min(batch_size, n_samples - start)
        seq, cache = prompt.expand(b, -1), None
        for step in range(length):
            logits, cache = next_token_logits(model, seq, cache)
            logits = logits / temperature_at(step, t_start, decay_tokens)
            x = torch.multinomial(top_k_filter(logits, top_k).softmax(-1), 1, generator=generator)
            seq = torch.cat([seq, x], 1)
        out.append(seq)
    return torch.cat(out)
''', ["a5_p1_sampling_hidden"]),
    # issue 18: half-understood specifications, each written from the paper or found surviving by
    # tests/benchmarks/mutation.py; the hidden tests now check the sentence each one violates
    "decaying temperature one step ahead (step 0 already lowered)": ('''
def temperature_at(step, t_start, decay_tokens):
    if decay_tokens <= 0 or step + 1 >= decay_tokens:
        return 1.0
    return t_start + (1.0 - t_start) * (step + 1) / decay_tokens
''', ["a5_p1_sampling_hidden"]),
    "ranking with NumPy's default sort (tied samples reordered)": ('''
def rank_samples(scores, texts, k):
    kept = []
    for i in np.argsort(np.asarray(scores, dtype=float)):
        if len(kept) == k:
            break
        if not any(is_near_duplicate(texts[i], texts[j]) for j in kept):
            kept.append(int(i))
    return kept
''', ["a5_p3_rank_hidden"]),
    "exposure in natural logarithms (Carlini et al. 2019 use log2)": ('''
def exposure(canary_score, candidate_scores):
    c = np.asarray(candidate_scores, dtype=float)
    if c.size == 0:
        raise ValueError("exposure needs at least one candidate")
    return math.log(c.size) - math.log(max(1, int((c <= float(canary_score)).sum())))
''', P4),
    "token NLL that scores the right padding too (mask only given to the model)": ('''
@torch.no_grad()
def token_nll(model, ids, mask=None):
    mask = torch.ones_like(ids) if mask is None else mask.long()
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
''', ["a5_p2_metrics_hidden"]),
    "perplexity with the mask not shifted to the NLLs (mask[:, :-1])": ('''
def perplexity(nll, mask=None):
    m = torch.ones_like(nll) if mask is None else mask[:, :-1].to(nll.dtype)
    return torch.exp((nll * m).sum(1) / m.sum(1))
''', ["a5_p2_metrics_hidden"]),
}


reference, test_reference_passes_every_test_cell, test_wrong_answer_loses_the_targeted_points = invariant_tests(
    "a5_gpt2_extraction", A5_TESTS, WRONG)

# Issue 14: units that rank every sample identically earn the points (only rankings that differ lose them).
EQUIVALENT = {
    "zlib entropy in bytes, as the authors' code counts it": ('''
def zlib_entropy(text):
    return len(zlib.compress(text.encode("utf-8")))
''', P2),
    "log-perplexity in nats": ('''
def log_perplexity(nll, mask=None):
    m = torch.ones_like(nll) if mask is None else mask[:, 1:].to(nll.dtype)
    return (nll * m).sum(1)
''', P4 + ["a5_p4_e2e_hidden"]),
}
test_equivalent_answer_earns_the_targeted_points = equivalent_answer_test(EQUIVALENT)
