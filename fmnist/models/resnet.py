"""A pre-activation ResNet (He et al., 2016), the strong modern baseline: a CIFAR-style 3x3 stem without pooling,
as ImageNet's stem would leave a 1x1 map after the second stage on 28x28."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.core.constants import NUM_CLASSES
from fmnist.models.init import initialise


class PreActBlock(nn.Module):
    """BN -> ReLU -> conv 3x3 -> BN -> ReLU -> (dropout) -> conv 3x3, added to a clean identity path."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection sees the pre-activated input, so the identity path never passes a BN/ReLU twice.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem conv, stages of pre-activation blocks (stride 2 from the second on), BN-ReLU, global pool, linear.
    The defaults give PreAct ResNet-18; `blocks=[4,4,4], widths=[160,320,640], dropout=0.3` a WRN-28-10."""

    def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), widths: Sequence[int] = (64, 128, 256, 512),
                 stem_width: int = 64, dropout: float = 0.0, init: str = "default",
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError(f"blocks and widths must have the same length, got {list(blocks)} and {list(widths)}")
        self.stem = nn.Conv2d(1, stem_width, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        channels = stem_width
        for index, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                stages.append(PreActBlock(channels, width, stride, dropout))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, num_classes))
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
