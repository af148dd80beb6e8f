"""The architectures the course uses, in one preset table."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

__all__ = ["MODELS", "build_model", "last_layer", "ResNetGN", "StackedMLP", "StackedNet", "build_stacked"]


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer head; ~60k parameters on 1x28x28 inputs.

    Input: float32 (N, C, H, W) in [0, 1]. Output: logits (N, K).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (N, 16, H/2, W/2)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # (N, 32, H/4, W/4)
        )
        flat = 32 * (image_size // 4) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU())    # (N, 64)
        self.fc = nn.Linear(64, num_classes)                                      # (N, K) -- the last layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.features(x)))


def _pixels(in_channels: int, image_size) -> int:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return in_channels * h * w


class SoftmaxRegression(nn.Module):
    """Multinomial logistic regression on raw pixels: logits = W x + b.

    Fredrikson et al. (CCS 2015, Sec. 5.1) "softmax" face-recognition target.
    Input (N, C, H, W) -> logits (N, K); the weights are ``fc`` (K, C*H*W).
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(x))                                     # (N, K)


class MLP(nn.Module):
    """One hidden layer of sigmoid units (Fredrikson et al., Sec. 5.1: 3,000 units).

    Input (N, C, H, W) -> logits (N, K).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 3000):
        super().__init__()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.Sigmoid())  # (N, hidden)
        self.fc = nn.Linear(hidden, num_classes)                                               # (N, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(x))


class FaceCNN(nn.Module):
    """A small CNN for any image size (adaptive pooling); the course's evaluation classifier.

    Input (N, C, H, W) -> logits (N, K).
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),     # (N, 16, H/2, W/2)
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool2d((7, 6)),  # (N, 32, 7, 6)
            nn.Flatten())
        self.fc = nn.Linear(32 * 7 * 6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stem for 32x32 inputs (as in Adi et al.'s CIFAR-10 runs)."""
    from torchvision.models import resnet18

    m = resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and a shortcut (He et al. 2016, Fig. 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.GroupNorm(groups, c_out))   # projection (option B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(h)) + self.shortcut(x))


class ResNetGN(nn.Module):
    """The CIFAR ResNet of He et al. ("Deep Residual Learning for Image Recognition", CVPR 2016,
    arXiv:1512.03385, Sec. 4.2): a 3x3 stem, three stages of n basic blocks with ``width``,
    2 ``width`` and 4 ``width`` channels (strides 1, 2, 2), global average pooling and a linear
    layer; depth = 6n + 2 (ResNet-20: n = 3, width 16). Two departures from the paper. Where a block
    changes width it uses a 1x1 projection shortcut (the paper's option B; its CIFAR nets use the
    parameter-free option A), which adds 2,752 parameters: 272,474 for ResNet-20 (Table 6: 0.27 M).
    And GroupNorm (Wu & He, ECCV 2018, arXiv:1803.08494) replaces BatchNorm: it has no running
    statistics, so many copies can be trained at once with ``torch.func.vmap`` (:class:`StackedNet`),
    and a model's output on one example never depends on the rest of its batch.

    Input float32 (N, C, H, W) -> logits (N, K).

    Raises:
        ValueError: ``depth`` is not 6n + 2 with n >= 1, or ``width`` is not a multiple of ``groups``.
    """

    def __init__(self, in_channels: int, num_classes: int, depth: int = 20, width: int = 16, groups: int = 8):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        if width % groups:
            raise ValueError(f"width {width} must be a multiple of the GroupNorm groups ({groups})")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.GroupNorm(groups, width),
                                  nn.ReLU())                                                     # (N, w, H, W)
        blocks, c = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(_BasicBlock(c, c_out, 2 if stage and i == 0 else 1, groups))
                c = c_out
        self.blocks = nn.Sequential(*blocks)                                                    # (N, 4w, H/4, W/4)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())                        # (N, 4w)
        self.fc = nn.Linear(c, num_classes)                                                     # (N, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.blocks(self.stem(x))))


#: key -> constructor(in_channels, num_classes, image_size, **options)
MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": lambda c, k, s: SmallCNN(c, k, s),
    "resnet18": _resnet18,
    "softmax_regression": lambda c, k, s: SoftmaxRegression(_pixels(c, s), k),
    "mlp": lambda c, k, s, hidden=3000: MLP(_pixels(c, s), k, hidden),
    "face_cnn": lambda c, k, s: FaceCNN(c, k),
    "resnet_gn": lambda c, k, s, depth=20, width=16: ResNetGN(c, k, depth, width),
}


def build_model(name: str, in_channels: int, num_classes: int, image_size: int | tuple[int, int],
                seed: int, **options) -> nn.Module:
    """Build a freshly initialised model.

    Args:
        name: a key of :data:`MODELS` (``"small_cnn"``, ``"resnet18"``, ``"resnet_gn"``, ...).
        in_channels: image channels C. num_classes: K. image_size: H (= W) or (H, W),
            pixels (``small_cnn`` and ``resnet18`` need square images).
        seed: initialisation seed (the global torch RNG is restored afterwards).
        options: model options, e.g. ``hidden=300`` (units) for ``"mlp"``.

    Returns:
        An ``nn.Module`` mapping (N, C, H, W) float32 to logits (N, K), on the CPU.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](in_channels, num_classes, image_size, **options)


def last_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer (``fc``) of a course model -- what FTLL fine-tunes.

    Raises:
        ValueError: the model has no ``fc`` linear layer.
    """
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"{type(model).__name__} has no final linear layer named 'fc'")
    return fc


class StackedMLP(nn.Module):
    """M independent one-hidden-layer ReLU MLPs whose weights are stacked, trained and
    evaluated together (one batched matrix product per layer instead of M small ones).

    Input x (N, D) or (N, C, H, W) -> logits (M, N, K); ``forward(x, members=slice(a, b))`` runs
    models a..b-1 only, and ``per_model=True`` takes one batch per model, x (m, N, ...).
    Parameters: w1 (M, D, H), b1 (M, 1, H), w2 (M, H, K), b2 (M, 1, K). Model m is exactly ``member(m)``, an ordinary MLP.
    Each model is initialised like ``nn.Linear`` (uniform in +-1/sqrt(fan_in)).
    """

    def __init__(self, n_models: int, in_features: int, hidden: int, num_classes: int, seed: int):
        super().__init__()
        if min(n_models, in_features, hidden, num_classes) < 1:
            raise ValueError("n_models, in_features, hidden and num_classes must be >= 1")
        g = torch.Generator().manual_seed(seed)
        def uniform(*shape, fan_in):
            return nn.Parameter((torch.rand(*shape, generator=g) * 2 - 1) / fan_in ** 0.5)
        self.w1 = uniform(n_models, in_features, hidden, fan_in=in_features)      # (M, D, H)
        self.b1 = uniform(n_models, 1, hidden, fan_in=in_features)                # (M, 1, H)
        self.w2 = uniform(n_models, hidden, num_classes, fan_in=hidden)           # (M, H, K)
        self.b2 = uniform(n_models, 1, num_classes, fan_in=hidden)                # (M, 1, K)

    @property
    def n_models(self) -> int:
        return self.w1.shape[0]

    def forward(self, x: torch.Tensor, members: slice | None = None, per_model: bool = False) -> torch.Tensor:
        """Logits (m, N, K) of the models ``members`` (default all M) on x (N, ...) shared by all,
        or, with ``per_model``, on x (m, N, ...) -- a separate batch for each model."""
        w1, b1, w2, b2 = (p[members or slice(None)] for p in (self.w1, self.b1, self.w2, self.b2))
        if per_model:
            h = torch.relu(torch.baddbmm(b1, x.flatten(2), w1))                     # (m, N, H)
        else:
            h = torch.relu(torch.einsum("nd,mdh->mnh", x.flatten(1), w1) + b1)      # (m, N, H)
        return torch.baddbmm(b2, h, w2)                                             # (m, N, K)

    def member(self, m: int) -> nn.Module:
        """Model ``m`` as an ordinary ``nn.Sequential`` MLP (a copy): (N, ...) -> logits (N, K)."""
        d, h = self.w1.shape[1:]
        k = self.w2.shape[2]
        mlp = nn.Sequential(nn.Flatten(), nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k))
        with torch.no_grad():
            mlp[1].weight.copy_(self.w1[m].T)
            mlp[1].bias.copy_(self.b1[m, 0])
            mlp[3].weight.copy_(self.w2[m].T)
            mlp[3].bias.copy_(self.b2[m, 0])
        return mlp.to(self.w1.device).eval()


class StackedNet(nn.Module):
    """M independent copies of any course network, trained and evaluated together with
    ``torch.func`` (``stack_module_state`` + ``functional_call`` + ``vmap``): one batched call
    per layer instead of M small ones (a convolution with stacked weights runs as one grouped
    convolution).

    Input x (N, C, H, W), shared by all models -> logits (M, N, K); ``forward(x, members=slice(a, b))``
    runs only models a..b-1 and returns (b - a, N, K), which bounds the activation memory
    (:func:`leaklab.train.fit_stacked` and :func:`leaklab.train.predict_stacked` go through the
    models ``chunk`` at a time); ``per_model=True`` takes one batch per model, x (m, N, C, H, W).
    Model m is exactly ``member(m)``, an ordinary ``nn.Module``.

    Args:
        factory: builds one freshly initialised network without buffers or random layers (no
            BatchNorm, no dropout); called M times in a row inside a forked global RNG seeded with
            ``seed`` (so initialisations differ and are reproducible).
        n_models: M (>= 1). seed: initialisation seed.
        chunk: models per forward/backward pass in training and prediction (None: all M at once).
        vectorize: True runs the models of a pass as one ``vmap`` call (grouped convolutions); False
            calls them one after another (the same function and gradients; faster where grouped
            convolutions are slow, e.g. on CPUs -- ``tests/benchmarks/bench_stacked.py`` compares).

    Raises:
        ValueError: ``n_models`` < 1, ``chunk`` < 1, or the network has buffers (BatchNorm's running
            statistics cannot be updated under ``vmap``; use GroupNorm, e.g. :class:`ResNetGN`).
    """

    def __init__(self, factory: Callable[[], nn.Module], n_models: int, seed: int, chunk: int | None = None,
                 vectorize: bool = True):
        super().__init__()
        if n_models < 1 or (chunk is not None and chunk < 1):
            raise ValueError(f"need n_models >= 1 and chunk >= 1 (or None), got {n_models} and {chunk}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nets = [factory() for _ in range(n_models)]
        if any(True for _ in nets[0].buffers()):
            raise ValueError(f"{type(nets[0]).__name__} has buffers (e.g. BatchNorm running statistics), which "
                             "vmap cannot update in training; use GroupNorm (leaklab.models.ResNetGN)")
        params, _ = torch.func.stack_module_state(nets)                   # name -> (M, *shape)
        self._names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[n]) for n in self._names])
        self.chunk = chunk
        self.vectorize = vectorize
        object.__setattr__(self, "_template", nets[0].to("meta"))          # structure only; not a submodule

    @property
    def n_models(self) -> int:
        return self.stacked[0].shape[0]

    def train(self, mode: bool = True) -> "StackedNet":
        super().train(mode)
        self._template.train(mode)                                          # the structure runs in this mode
        return self

    def forward(self, x: torch.Tensor, members: slice | None = None, per_model: bool = False) -> torch.Tensor:
        """Logits (m, N, K) of the models ``members`` (default all M) on x (N, C, H, W) shared by all,
        or, with ``per_model``, on x (m, N, C, H, W) -- a separate batch for each model."""
        params = {n: p[members or slice(None)] for n, p in zip(self._names, self.stacked)}

        def one(p: dict, xb: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self._template, p, (xb,))

        if self.vectorize:
            return torch.func.vmap(one, in_dims=(0, 0 if per_model else None))(params, x)   # (m, N, K)
        m = next(iter(params.values())).shape[0]
        return torch.stack([one({n: p[i] for n, p in params.items()}, x[i] if per_model else x) for i in range(m)])

    def member(self, m: int) -> nn.Module:
        """Model ``m`` as an ordinary network (a copy, in eval mode, on the stack's device)."""
        net = copy.deepcopy(self._template).to_empty(device=self.stacked[0].device)
        with torch.no_grad():
            for n, p in zip(self._names, self.stacked):
                net.get_parameter(n).copy_(p[m])
        return net.eval()


def build_stacked(name: str, n_models: int, in_shape: tuple[int, int, int], num_classes: int, seed: int,
                  chunk: int | None = None, vectorize: bool = True, **options) -> nn.Module:
    """M models of one architecture, stacked for batched training (LiRA's reference models).

    Args:
        name: ``"mlp"`` (:class:`StackedMLP`, one ReLU hidden layer; option ``hidden`` in units) or a
            key of :data:`MODELS` without buffers, e.g. ``"resnet_gn"`` (:class:`StackedNet`; options
            as in :func:`build_model`, e.g. ``depth=20, width=16``).
        n_models: M. in_shape: one input's (C, H, W). num_classes: K. seed: initialisation seed.
        chunk, vectorize: models per forward/backward pass (None: all at once) and whether they run as
            one ``vmap`` call (:class:`StackedNet` only).

    Returns:
        A module mapping x (N, C, H, W) to logits (M, N, K), on the CPU.

    Raises:
        ValueError: unknown ``name``, or an architecture with buffers (BatchNorm).
    """
    c, h, w = in_shape
    if name == "mlp":
        return StackedMLP(n_models, c * h * w, options.get("hidden", 256), num_classes, seed=seed)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose 'mlp' or one of {sorted(MODELS)}")
    return StackedNet(lambda: MODELS[name](c, num_classes, h if h == w else (h, w), **options), n_models, seed, chunk,
                      vectorize)
