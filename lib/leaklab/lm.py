"""Language models for a5: a tokenizer, a base (reference) GPT-2, the victim fine-tuned on the
private corpus, and the ground-truth checks that verify extracted samples.

- ``full``: GPT-2 (124M) and its BPE from the Hugging Face hub are the base; fine-tuning it on
  the private corpus gives the victim.
- ``ci`` (offline): a byte-level BPE trained by ``tokenizers`` on ``pydoc_data`` text, a small
  ``transformers.GPT2LMHeadModel`` trained on that text (the base), then fine-tuned.

Trained models are cached under :func:`cache_dir`, keyed by a SHA-256 of everything that
determines them (profile fields, seed, corpus, library versions); :func:`build_language_models`
with ``cache=False`` retrains from scratch, and the tests check both give the same weights.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .corpus import EOT, PrivateCorpus, Secret, private_corpus, public_text
from .train import History, progress_enabled

__all__ = ["LM_PRESETS", "LanguageModels", "cache_dir", "train_tokenizer", "tiny_gpt2", "train_lm",
           "build_language_models", "encode", "encode_batch", "next_token_logits", "decode", "secrets_found", "corpus_ngrams", "is_verbatim"]

#: GPT-2 shapes, one row each: width, layers, heads, context (tokens). ``gpt2`` is the hub's 124M.
LM_PRESETS: dict[str, dict[str, int]] = {
    "gpt2-tiny": dict(n_embd=128, n_layer=2, n_head=4, n_positions=128),   # 0.68 M parameters at vocab 2,048
    "gpt2": dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024),      # 124 M, pretrained from the hub
}
_CACHE_VERSION = 1


class LanguageModels(NamedTuple):
    """What a5 attacks: ``victim`` (fine-tuned on ``corpus``), ``base`` (the reference model
    before fine-tuning, the same tokenizer), ``tokenizer`` (a ``PreTrainedTokenizerFast`` with
    ``<|endoftext|>`` as bos/eos/pad) and the ground-truth ``corpus``. Models are in eval mode."""

    tokenizer: object
    base: torch.nn.Module
    victim: torch.nn.Module
    corpus: PrivateCorpus
    history: dict


def cache_dir() -> Path:
    """Where trained language models are cached: ``$LEAKLAB_CACHE_DIR`` or ``~/.cache/leaklab/lm``."""
    return Path(os.environ.get("LEAKLAB_CACHE_DIR") or Path.home() / ".cache" / "leaklab" / "lm")


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()      # stderr in a graded cell scores it 0
    transformers.utils.logging.disable_progress_bar()


def train_tokenizer(text: str, vocab_size: int):
    """A byte-level BPE (GPT-2's scheme) trained on ``text`` with the ``tokenizers`` library.

    Args:
        text: training text (str); documents separated by ``<|endoftext|>``.
        vocab_size: tokens in the vocabulary (>= 300: 256 bytes + the separator + merges).

    Returns:
        ``transformers.PreTrainedTokenizerFast``; id 0 is ``<|endoftext|>`` (bos, eos and pad),
        padding on the right. Deterministic for a given text and size.

    Raises:
        ValueError: ``vocab_size`` below 300.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 byte tokens + merges), got {vocab_size}")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text.split(EOT), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT)


def tiny_gpt2(vocab_size: int, preset: str = "gpt2-tiny", seed: int = 0):
    """A randomly initialised ``transformers.GPT2LMHeadModel`` of a :data:`LM_PRESETS` shape.

    Args:
        vocab_size: tokens in the vocabulary (>= 1); id 0 is bos/eos/pad.
        preset: a key of :data:`LM_PRESETS`. seed: initialisation seed (the global RNG is left untouched).

    Returns:
        The model on the CPU in eval mode; ``gpt2-tiny`` at vocabulary 2,048 has 0.68 M parameters.

    Raises:
        KeyError: unknown preset (the message lists them).
    """
    if preset not in LM_PRESETS:
        raise KeyError(f"unknown language-model preset {preset!r}; presets: {', '.join(LM_PRESETS)}")
    _quiet_transformers()
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                     **LM_PRESETS[preset])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(cfg).eval()


def encode(tokenizer, text: str) -> torch.Tensor:
    """Token ids of ``text`` as it is (no separator added in front; ``<|endoftext|>`` inside becomes
    its id, 0 for the offline tokenizer): int64 (T,) on the CPU."""
    return torch.tensor(tokenizer(text)["input_ids"], dtype=torch.int64)


def encode_batch(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``<|endoftext|>`` + each text, right-padded: int64 (B, T) ids and (B, T) mask.

    The leading separator makes every character of the text a scored (predicted) token.
    """
    enc = tokenizer([EOT + t for t in texts], padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@functools.lru_cache(maxsize=None)
def _cache_argument(cls) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def next_token_logits(model, ids: torch.Tensor, cache=None) -> tuple[torch.Tensor, object]:
    """One decoding step with the KV cache, whatever the ``transformers`` version.

    The first call takes the whole prompt and ``cache=None``; later calls take only the newest
    tokens and the cache the previous call returned (newer ``transformers`` name the argument
    ``cache``, older ones ``past_key_values``; this hides the difference).

    Args:
        model: a causal LM (``GPT2LMHeadModel``). ids: int64 (B, t) new tokens on the model's device.
        cache: the cache returned by the previous step, or None.

    Returns:
        ``(logits, cache)``: float32 (B, V) next-token logits after the last of ``ids``, and the updated cache.
    """
    name = _cache_argument(type(model))
    out = model(input_ids=ids, use_cache=True, **({name: cache} if cache is not None else {}))
    new = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
    return out.logits[:, -1, :].float(), new


def decode(tokenizer, ids: torch.Tensor) -> list[str]:
    """Texts of a (B, T) int64 batch of token ids, separators dropped (list of B str)."""
    return tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)


def train_lm(model, ids: torch.Tensor, *, epochs: int, lr: float, block: int, batch_size: int, seed: int = 0,
             desc: str = "train LM") -> History:
    """Next-token training of a causal LM on one token stream, in place (AdamW + one-cycle LR).

    The stream is cut into non-overlapping blocks of ``block`` tokens (the tail is dropped),
    shuffled every epoch by a private generator seeded with ``seed``.

    Args:
        model: a ``GPT2LMHeadModel`` (trained on its own device).
        ids: int64 (T,) token stream, T >= ``block``.
        epochs: passes over the stream (>= 1). lr: peak learning rate.
        block: tokens per training sequence (<= the model's context). batch_size: sequences per step.

    Returns:
        :class:`leaklab.train.History` with the mean loss per epoch (nats per token).

    Dropout draws from the global RNG; it is seeded with ``seed`` inside a forked RNG state, so
    the result depends only on the arguments and the global RNG is left as it was.

    Raises:
        ValueError: fewer than ``block`` tokens, or ``epochs`` < 1.
    """
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)                            # dropout draws from the global RNG: fix it too
        return _train_lm(model, ids, epochs, lr, block, batch_size, seed, desc)


def _train_lm(model, ids, epochs, lr, block, batch_size, seed, desc) -> History:
    from tqdm.auto import tqdm

    if epochs < 1 or len(ids) < block:
        raise ValueError(f"need epochs >= 1 and at least block={block} tokens, got {epochs} epochs, {len(ids)} tokens")
    device = next(model.parameters()).device
    blocks = ids[: len(ids) // block * block].view(-1, block)                  # (nb, block)
    steps = math.ceil(len(blocks) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    hist = History()
    model.train()
    bar = tqdm(range(epochs), desc=desc, disable=not progress_enabled(), leave=False)
    for _ in bar:
        total = 0.0
        for idx in torch.randperm(len(blocks), generator=g).split(batch_size):
            xb = blocks[idx].to(device)                                         # (B, block)
            loss = model(input_ids=xb, labels=xb).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        hist.loss.append(total / len(blocks))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}")
    model.eval()
    return hist


def _key(profile, seed: int, corpus: PrivateCorpus, device: torch.device) -> str:
    import tokenizers
    import transformers

    fields = {k: v for k, v in vars(profile).items() if k.startswith("lm_") and k not in _SAMPLING_FIELDS}
    public = hashlib.sha256(public_text().encode()).hexdigest() if profile.lm_model == "gpt2-tiny" else "hub"
    blob = json.dumps({"v": _CACHE_VERSION, "fields": fields, "seed": seed, "corpus": corpus.text(),
                       "public_text": public, "device": device.type, "torch": torch.__version__,
                       "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
                      sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


_SAMPLING_FIELDS = {"lm_samples", "lm_sample_tokens", "lm_top_k", "lm_t_start", "lm_decay_tokens", "lm_window",
                    "lm_top_n", "lm_gen_batch", "lm_score_batch", "lm_verbatim_tokens"}


def _pretrained(profile, device):
    _quiet_transformers()
    from transformers import GPT2LMHeadModel, GPT2TokenizerFast

    try:
        tok = GPT2TokenizerFast.from_pretrained(profile.lm_model)
        base = GPT2LMHeadModel.from_pretrained(profile.lm_model)
    except OSError as err:
        raise OSError(f"could not load the pretrained {profile.lm_model!r} from the Hugging Face hub ({err}); "
                      "run online once to fill the hub cache, or use the ci profile (trained offline): "
                      "PROFILE = \"ci\" in the set-up cell, or LEAKLAB_PROFILE=ci") from err
    tok.pad_token = tok.eos_token
    return tok, base.to(device).eval(), {}


def _from_scratch_base(profile, seed: int, device):
    text = public_text()[:profile.lm_public_chars]
    tok = train_tokenizer(text, profile.lm_vocab)
    base = tiny_gpt2(len(tok), profile.lm_model, seed=seed).to(device)
    hist = train_lm(base, encode(tok, text), epochs=profile.lm_base_epochs, lr=profile.lm_base_lr,
                    block=profile.lm_block, batch_size=profile.lm_batch, seed=seed, desc="base LM (public text)")
    return tok, base, {"base_loss": hist.loss}


def build_language_models(profile, seed: int = 0, device: torch.device | str = "cpu",
                          cache: bool = True) -> LanguageModels:
    """The base model, the victim fine-tuned on the private corpus, and the corpus (a5's setting).

    ``ci``: tokenizer and base trained on public text (``profile.lm_base_epochs``), then a copy
    fine-tuned on the private corpus (``profile.lm_epochs``) -- about 2 minutes on 2 cores.
    ``full``: GPT-2 from the hub as the base, fine-tuned the same way.

    Args:
        profile: a :class:`leaklab.config.Profile` (its ``lm_*`` fields).
        seed: training seed (weights' initialisation and batch order); the corpus has its own
            fixed seed ``profile.lm_corpus_seed``.
        device: where the models live and train.
        cache: reuse / fill the on-disk cache (:func:`cache_dir`); ``False`` always retrains.

    Returns:
        :class:`LanguageModels`; ``history`` holds the per-epoch losses (nats per token).

    The cache key covers the ``lm_*`` training fields, ``seed``, the corpus, the public text, the
    device type and the torch / transformers / tokenizers versions.

    Raises:
        OSError: ``full`` without the hub or its cache.
        KeyError: ``profile.lm_model`` is not a preset of :data:`LM_PRESETS`.
        ValueError: bad corpus settings (see :func:`leaklab.corpus.private_corpus`).
        ImportError: ``pydoc_data`` is missing from this Python (``ci``).
    """
    corpus = private_corpus(profile.lm_copies, profile.lm_per_group, profile.lm_canary_digits,
                            seed=profile.lm_corpus_seed)
    device = torch.device(device)
    path = cache_dir() / _key(profile, seed, corpus, device)
    if cache and (path / "history.json").exists():
        return _load(path, profile, corpus, device)
    if profile.lm_model not in LM_PRESETS:
        raise KeyError(f"unknown language-model preset {profile.lm_model!r}; presets: {', '.join(LM_PRESETS)}")
    if profile.lm_model != "gpt2-tiny":
        tok, base, history = _pretrained(profile, device)
    else:
        tok, base, history = _from_scratch_base(profile, seed, device)
    victim = copy.deepcopy(base)
    hist = train_lm(victim, encode(tok, corpus.text()), epochs=profile.lm_epochs, lr=profile.lm_lr,
                    block=profile.lm_block, batch_size=profile.lm_batch, seed=seed + 1, desc="victim (fine-tune)")
    history["victim_loss"] = hist.loss
    if cache:
        _save(path, tok, base, victim, history)
    return LanguageModels(tok, base.eval(), victim.eval(), corpus, history)


def _save(path: Path, tok, base, victim, history: dict) -> None:
    from .artifacts import save_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".partial-"))
    except OSError:                                       # a read-only cache (the grader's sandbox): keep it in memory
        return
    try:
        tok.save_pretrained(tmp / "tokenizer")
        base.save_pretrained(tmp / "base")                # safetensors; the tied embedding saved once
        victim.save_pretrained(tmp / "victim")
        save_json(history, tmp / "history.json")          # written last: its presence marks a complete entry
        if path.exists() and not (path / "history.json").exists():
            shutil.rmtree(path, ignore_errors=True)       # an incomplete entry left by hand: replace it
        tmp.rename(path)                                  # atomic: a reader never sees half a cache entry
    except OSError:                                       # another process filled it meanwhile, or disk full
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(path: Path, profile, corpus: PrivateCorpus, device) -> LanguageModels:
    _quiet_transformers()
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from .artifacts import load_json

    tok = AutoTokenizer.from_pretrained(path / "tokenizer")
    models = [GPT2LMHeadModel.from_pretrained(path / name).to(device).eval() for name in ("base", "victim")]
    return LanguageModels(tok, models[0], models[1], corpus, load_json(path / "history.json"))


def secrets_found(texts: list[str], secrets: list[Secret]) -> dict[str, np.ndarray]:
    """Which planted records appear verbatim in any of ``texts`` (the lab's ground truth).

    Args:
        texts: generated samples (str).
        secrets: the planted people (:attr:`PrivateCorpus.secrets`).

    Returns:
        ``{"email" | "phone" | "id_number": bool array (S,)}``: entry s is True when
        that record of secret s occurs as an exact substring of some text.
    """
    blob = "\n\0".join(texts)
    return {f: np.array([s.fields()[f] in blob for s in secrets]) for f in ("email", "phone", "id_number")}


def corpus_ngrams(ids: torch.Tensor, n: int) -> set[tuple[int, ...]]:
    """Every n-gram of token ids in a training stream (int64 (T,)): a set of n-tuples."""
    seq = ids.tolist()
    return {tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)}


def is_verbatim(sample_ids: torch.Tensor, ngrams: set[tuple[int, ...]], n: int) -> np.ndarray:
    """Whether each sample holds an exact copy of at least ``n`` consecutive training tokens
    (the verbatim memorisation of Carlini et al. 2021, Sec. 6).

    Args:
        sample_ids: int64 (B, T) token ids of the samples (padding may be included; it rarely matches).
        ngrams: :func:`corpus_ngrams` of the training stream with the same ``n``.
        n: the shortest copy that counts (tokens, >= 1).

    Returns:
        bool array (B,).
    """
    out = []
    for row in sample_ids.tolist():
        out.append(any(tuple(row[i:i + n]) in ngrams for i in range(len(row) - n + 1)))
    return np.array(out, dtype=bool)
