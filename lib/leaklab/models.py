"""The architectures the course uses, in one preset table."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["MODELS", "build_model", "last_layer"]


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


def _resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stem for 32x32 inputs (as in Adi et al.'s CIFAR-10 runs)."""
    from torchvision.models import resnet18

    m = resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


#: key -> constructor(in_channels, num_classes, image_size)
MODELS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "small_cnn": lambda c, k, s: SmallCNN(c, k, s),
    "resnet18": _resnet18,
}


def build_model(name: str, in_channels: int, num_classes: int, image_size: int,
                seed: int) -> nn.Module:
    """Build a freshly initialised model.

    Args:
        name: a key of :data:`MODELS` (``"small_cnn"``, ``"resnet18"``).
        in_channels: image channels C. num_classes: K. image_size: H (= W), pixels.
        seed: initialisation seed (the global torch RNG is restored afterwards).

    Returns:
        An ``nn.Module`` mapping (N, C, H, W) float32 to logits (N, K), on the CPU.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](in_channels, num_classes, image_size)


def last_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer (``fc``) of a course model -- what FTLL fine-tunes.

    Raises:
        ValueError: the model has no ``fc`` linear layer.
    """
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"{type(model).__name__} has no final linear layer named 'fc'")
    return fc
