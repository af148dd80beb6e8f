"""The architectures the course uses, in one preset table."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["MODELS", "build_model", "last_layer", "StackedMLP"]


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


#: key -> constructor(in_channels, num_classes, image_size, **options)
MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": lambda c, k, s: SmallCNN(c, k, s),
    "resnet18": _resnet18,
    "softmax_regression": lambda c, k, s: SoftmaxRegression(_pixels(c, s), k),
    "mlp": lambda c, k, s, hidden=3000: MLP(_pixels(c, s), k, hidden),
    "face_cnn": lambda c, k, s: FaceCNN(c, k),
}


def build_model(name: str, in_channels: int, num_classes: int, image_size: int | tuple[int, int],
                seed: int, **options) -> nn.Module:
    """Build a freshly initialised model.

    Args:
        name: a key of :data:`MODELS` (``"small_cnn"``, ``"resnet18"``).
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

    Input x (N, D) or (N, C, H, W) -> logits (M, N, K). Parameters: w1 (M, D, H), b1 (M, 1, H),
    w2 (M, H, K), b2 (M, 1, K). Model m is exactly ``member(m)``, an ordinary MLP.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)                                                          # (N, D)
        h = torch.relu(torch.einsum("nd,mdh->mnh", x, self.w1) + self.b1)         # (M, N, H)
        return torch.baddbmm(self.b2, h, self.w2)                                 # (M, N, K)

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
