"""leaklab.corpus and leaklab.lm: the private corpus, the tokenizer, the cache that must equal a
retrain from scratch, and the ground-truth verification helpers."""
from __future__ import annotations

import pytest
import torch

from leaklab import get_profile
from leaklab.corpus import EOT, private_corpus, public_text
from leaklab.lm import (build_language_models, corpus_ngrams, encode, encode_batch, is_verbatim, secrets_found,
                        tiny_gpt2, train_tokenizer)


def test_private_corpus_is_seeded_and_counts_copies():
    a, b = private_corpus(copies=(1, 3), per_group=2, seed=5), private_corpus(copies=(1, 3), per_group=2, seed=5)
    assert a == b, "the same seed must give the same corpus"
    assert len(a.documents) == (1 + 3) * (2 + 1)
    for s in a.secrets:
        assert sum(s.email in d for d in a.documents) == s.copies
    assert len({c.secret for c in a.canaries}) == 2 and all(len(c.secret) == 4 for c in a.canaries)
    for c in a.canaries:
        assert a.documents.count(c.text) == c.copies
    assert private_corpus(copies=(1,), per_group=1, seed=6) != private_corpus(copies=(1,), per_group=1, seed=5)


def test_private_corpus_records_are_unique():
    c = private_corpus()
    for field in ("email", "phone", "id_number"):
        values = [s.fields()[field] for s in c.secrets]
        assert len(set(values)) == len(values), f"two people share a {field}"
        assert not any(a != b and a in b for a in values for b in values), f"one {field} contains another"


@pytest.mark.parametrize("kwargs", [dict(copies=(0, 1)), dict(per_group=0), dict(digits=0), dict(copies=()),
                                    dict(canaries_per_group=-1), dict(copies=(1, 2, 3), canaries_per_group=4, digits=1)])
def test_private_corpus_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        private_corpus(**kwargs)


def test_tokenizer_round_trips_and_reserves_the_separator():
    tok = train_tokenizer(public_text()[:50_000], 400)
    assert len(tok) == 400 and tok.convert_tokens_to_ids(EOT) == 0
    text = "From: Zoë <z@example.org>\nMy PIN code is 0042.\n"
    assert tok.decode(encode(tok, text)) == text
    ids, mask = encode_batch(tok, ["a", "a longer text"])
    assert ids[0, 0] == 0 and mask[0].sum() < mask[1].sum() and ids.shape == mask.shape
    with pytest.raises(ValueError):
        train_tokenizer("abc", 100)


def test_cached_models_equal_a_retrain_from_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKLAB_CACHE_DIR", str(tmp_path))
    p = get_profile("ci").replace(lm_vocab=300, lm_public_chars=20_000, lm_base_epochs=1, lm_epochs=2, lm_block=32,
                                  lm_copies=(1, 2), lm_per_group=1)
    first = build_language_models(p, seed=3)                     # trains, fills the cache
    assert len(list(tmp_path.iterdir())) == 1
    cached = build_language_models(p, seed=3)                    # loads
    fresh = build_language_models(p, seed=3, cache=False)        # retrains
    for a, b, c in [(first.victim, cached.victim, fresh.victim), (first.base, cached.base, fresh.base)]:
        for (k, x), y, z in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
            assert torch.equal(x, y), f"cache differs from what was trained: {k}"
            assert torch.allclose(x, z, atol=1e-6), f"a retrain from scratch differs from the cache: {k}"
    assert cached.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    assert cached.history == first.history and len(first.history["victim_loss"]) == 2
    other = build_language_models(p.replace(lm_epochs=1), seed=3)   # another setting, another entry
    assert len(list(tmp_path.iterdir())) == 2 and len(other.history["victim_loss"]) == 1


def test_verification_helpers():
    c = private_corpus(copies=(1, 2), per_group=1, seed=0)
    s = c.secrets
    found = secrets_found([f"bla {s[1].email} bla", s[0].phone[:-1]], s)
    assert found["email"].tolist() == [False, True] and not found["phone"].any() and not found["id_number"].any()
    grams = corpus_ngrams(torch.tensor([1, 2, 3, 4, 5]), 3)
    assert grams == {(1, 2, 3), (2, 3, 4), (3, 4, 5)}
    got = is_verbatim(torch.tensor([[9, 2, 3, 4, 9], [9, 1, 2, 9, 9]]), grams, 3)
    assert got.tolist() == [True, False]


def test_models_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    ids = torch.randint(0, 300, (64,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    m = tiny_gpt2(300, seed=4)
    from leaklab.lm import train_lm
    train_lm(m, ids, epochs=1, lr=1e-3, block=16, batch_size=2, seed=1)
    assert torch.equal(torch.rand(3), expected), "tiny_gpt2 / train_lm changed the global RNG"
    a, b = tiny_gpt2(300, seed=4), tiny_gpt2(300, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_tiny_gpt2_presets():
    m = tiny_gpt2(2048)
    assert 0.6e6 < sum(p.numel() for p in m.parameters()) < 0.8e6
    with pytest.raises(KeyError, match="presets"):
        tiny_gpt2(10, preset="gpt5")
