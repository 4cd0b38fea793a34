"""A small BatchNorm CNN built for time-to-accuracy (after Keller Jordan's airbench), taking (B, 1, 28, 28)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fmnist.core.constants import IMAGE_SIZE, NUM_CLASSES

HEADS = ("max", "flatten")


def conv_bn(in_channels: int, out_channels: int, pool: bool, momentum: float) -> nn.Sequential:
    """Conv -> (max-pool) -> BatchNorm -> GELU. Pooling before the norm halves the BatchNorm work."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(out_channels, momentum=momentum), nn.GELU()]
    return nn.Sequential(*layers)


class FastCNN(nn.Module):
    """One pooled conv block per width, then a linear head on the global max-pool or the whole map; its logits are
    scaled down (as airbench does) so a high learning rate does not blow them up in the first steps."""

    def __init__(self, stem: int = 0, widths: Sequence[int] = (32, 64, 128), extra_conv: bool = False,
                 head: str = "max", bn_momentum: float = 0.2, logit_scale: float = 0.2,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(1, stem, pool=False, momentum=bn_momentum)] if stem else []
        channels = stem or 1
        for width in widths:
            layers.append(conv_bn(channels, width, pool=True, momentum=bn_momentum))
            if extra_conv:
                layers.append(conv_bn(width, width, pool=False, momentum=bn_momentum))
            channels = width
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.features = nn.Sequential(*layers)
        side = IMAGE_SIZE // 2 ** len(widths)
        self.pool = nn.AdaptiveMaxPool2d(1) if head == "max" else nn.Identity()
        self.classifier = nn.Linear(channels * (1 if head == "max" else side * side), num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1)) * self.logit_scale
