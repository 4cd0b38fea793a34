"""Study A's small PyTorch CNNs besides `conv_maxpool` (cnn.py), layer for layer as its code builds them.

All take (B, 1, 28, 28) and keep PyTorch's default initialisation, as the study did.
"""

from __future__ import annotations

import torch
from torch import nn

from fmnist.core.constants import NUM_CLASSES
from fmnist.models.init import initialise


class StrideConv(nn.Module):
    """`stride_conv`: a 2x2 stride-2 conv replaces the max-pool (67,178 params)."""

    def __init__(self, channels: int = 32, init: str = "default", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 2, stride=2), nn.ReLU(),
        )
        self.classifier = nn.Linear(channels * 14 * 14, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class SmallConv(nn.Module):
    """`small_conv`: two padded 2x2 stride-2 convs with LeakyReLU, 28 -> 15 -> 8 (24,778 params)."""

    def __init__(self, channels: int = 32, init: str = "default", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 2, stride=2, padding=1), nn.LeakyReLU(),
            nn.Conv2d(channels, channels, 2, stride=2, padding=1), nn.LeakyReLU(),
        )
        self.classifier = nn.Linear(channels * 8 * 8, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DropNormConv(nn.Module):
    """`drop_norm_l2` / `drop_norm_conv`: BatchNorm before each conv, dropout in the head.

    Two quirks of the original are kept because they change results: the first BatchNorm normalises
    the raw input image, and a LeakyReLU follows the logits (negative logits are squashed by 100x,
    which changes the loss surface). `affine=False` with `conv2_channels=32` gives `drop_norm_conv`.
    """

    def __init__(self, conv1_channels: int = 8, conv2_channels: int = 16, hidden: int = 128,
                 dropout: float = 0.5, affine: bool = True, logit_activation: bool = True,
                 init: str = "default", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.BatchNorm2d(1, affine=affine),
            nn.Conv2d(1, conv1_channels, 3, padding=1), nn.LeakyReLU(),
            nn.BatchNorm2d(conv1_channels, affine=affine),
            nn.Conv2d(conv1_channels, conv2_channels, 2, stride=2), nn.LeakyReLU(),
        )
        head: list[nn.Module] = [
            nn.Linear(conv2_channels * 14 * 14, hidden), nn.LeakyReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        ]
        if logit_activation:
            head.append(nn.LeakyReLU())
        self.classifier = nn.Sequential(*head)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
