"""Study A's small PyTorch CNNs, layer for layer as its code builds them; all take (B, 1, 28, 28) and keep
PyTorch's default initialisation, as the study did."""

from __future__ import annotations

import torch
from torch import nn

from fmnist.core.constants import NUM_CLASSES
from fmnist.models.init import initialise


class FlatHead(nn.Module):
    """A feature stack, flattened into the classifier; the subclasses (also the Keras CNNs) only say which layers."""

    features: nn.Module
    classifier: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class ConvMaxPool(FlatHead):
    """`conv_maxpool`: one 3x3 conv, 2x2 max-pool, one linear layer (63,050 params)."""

    def __init__(self, channels: int = 32, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(channels * 14 * 14, num_classes)


class StrideConv(FlatHead):
    """`stride_conv`: a 2x2 stride-2 conv replaces the max-pool (67,178 params)."""

    def __init__(self, channels: int = 32, init: str = "default", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 2, stride=2), nn.ReLU(),
        )
        self.classifier = nn.Linear(channels * 14 * 14, num_classes)
        initialise(self, init)


class SmallConv(FlatHead):
    """`small_conv`: two padded 2x2 stride-2 convs with LeakyReLU, 28 -> 15 -> 8 (24,778 params)."""

    def __init__(self, channels: int = 32, init: str = "default", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 2, stride=2, padding=1), nn.LeakyReLU(),
            nn.Conv2d(channels, channels, 2, stride=2, padding=1), nn.LeakyReLU(),
        )
        self.classifier = nn.Linear(channels * 8 * 8, num_classes)
        initialise(self, init)


class DropNormConv(FlatHead):
    """`drop_norm_l2` / `drop_norm_conv`: BatchNorm before each conv, dropout in the head, and the original's two
    quirks, which change results: a BatchNorm of the raw image and a LeakyReLU on the logits (docs/models.md)."""

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
