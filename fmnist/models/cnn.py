"""Convolutional backbones taking (B, 1, 28, 28)."""

from __future__ import annotations

import torch
from torch import nn

from fmnist.core.constants import NUM_CLASSES


class ConvMaxPool(nn.Module):
    """Study A's `conv_maxpool`: one 3x3 conv, 2x2 max-pool, one linear layer (63,050 params)."""

    def __init__(self, channels: int = 32, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(channels * 14 * 14, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
