"""Study D's deeper PyTorch CNN (`qstp_cnn`), taking (B, 1, 28, 28)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from fmnist.core.constants import NUM_CLASSES
from fmnist.models.init import initialise
from fmnist.models.study_a import FlatHead


def block(in_channels: int, out_channels: int, pool: bool, dropout: float) -> nn.Sequential:
    """conv 3x3 p1 -> BatchNorm2d -> LeakyReLU(0.01) -> Dropout2d, then a 2x2 max-pool where the study had one."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                               nn.LeakyReLU(0.01), nn.Dropout2d(dropout)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class QstpCNN(FlatHead):
    """Five conv blocks 32-64-128-256-512 (pooling after the 2nd and 4th: 28 -> 14 -> 7), then a
    100-unit BatchNorm head (4,080,094 params). The study initialised with Kaiming-normal (`init: kaiming`)."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256, 512), pool_after: Sequence[int] = (1, 3),
                 dropout2d: float = 0.1, hidden: int = 100, dropout: float = 0.5, init: str = "kaiming",
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = 1, 28
        for index, width in enumerate(widths):
            pool = index in pool_after
            layers.append(block(channels, width, pool, dropout2d))
            channels, size = width, size // 2 if pool else size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * size * size, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.01),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )
        initialise(self, init)
