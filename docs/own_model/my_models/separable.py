"""A depthwise-separable CNN (MobileNet's building block) for 28x28 greyscale images: a plain nn.Module.

fmnist needs nothing else from a model: it takes (B, 1, 28, 28) images (`input: image` in its config) and
returns (B, 10) logits; the loss, metrics and optimizer live in fmnist's LightningModule.
"""

from __future__ import annotations

import torch
from torch import nn


class SeparableCNN(nn.Module):
    """conv 1->`stem` 3x3, ReLU, maxpool 2; depthwise 3x3 + pointwise `stem`->`width`, ReLU, maxpool 2; linear.

    The depthwise-separable layer costs about a ninth of a full 3x3 convolution of the same widths, which is
    why it suits a CPU budget.
    """

    def __init__(self, stem: int = 16, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, stem, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),                                               # stem x 14 x 14
            nn.Conv2d(stem, stem, kernel_size=3, padding=1, groups=stem),  # depthwise
            nn.Conv2d(stem, width, kernel_size=1),                         # pointwise
            nn.ReLU(),
            nn.MaxPool2d(2),                                               # width x 7 x 7
        )
        self.classifier = nn.Linear(width * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
