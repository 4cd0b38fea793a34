"""The Keras CNNs of studies B and C, rebuilt in PyTorch layer for layer; all take (B, 1, 28, 28). Keras defaults
that change training are carried over: Glorot init and BatchNorm's momentum and epsilon."""

from __future__ import annotations

import torch
from torch import nn

from fmnist.core.constants import NUM_CLASSES
from fmnist.models.init import initialise
from fmnist.models.study_a import FlatHead

KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99: weight of the *old* running statistics
KERAS_BN_EPS = 1e-3


def keras_batchnorm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=KERAS_BN_MOMENTUM, eps=KERAS_BN_EPS)


def conv(in_channels: int, out_channels: int, kernel: int, same: bool = True) -> nn.Sequential:
    """Keras `Conv2D(out, kernel, padding='same'|'valid', activation='relu')` for odd kernels."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2 if same else 0), nn.ReLU())


def dense_head(in_features: int, hidden: tuple[int, ...], dropout: float, num_classes: int) -> nn.Sequential:
    """Flatten, then Dense(h, relu) -> Dropout for each hidden width, then the logits (softmax is in the loss)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


class GeronCNN(FlatHead):
    """Study B's `cnn_geron` (after Geron's book): 64-128-128-256-256 convs, three pools (1,413,834 params)."""

    def __init__(self, dropout: float = 0.5, init: str = "glorot", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv(1, 64, 7), nn.MaxPool2d(2),                        # 64x14x14
            conv(64, 128, 3), conv(128, 128, 3), nn.MaxPool2d(2),   # 128x7x7
            conv(128, 256, 3), conv(256, 256, 3), nn.MaxPool2d(2),  # 256x3x3 (Keras pools drop the odd row)
        )
        self.classifier = dense_head(256 * 3 * 3, (128, 64), dropout, num_classes)
        initialise(self, init)


class Conv2dNet(FlatHead):
    """Study C's `conv2dnet`: one 3x3 conv, pool, BatchNorm, and a wide dense layer (3,214,986 Keras
    params counting BatchNorm's moving statistics; 3,214,858 trainable)."""

    def __init__(self, filters: int = 64, hidden: int = 256, dropout: float = 0.25, init: str = "glorot",
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(conv(1, filters, 3), nn.MaxPool2d(2), keras_batchnorm(filters),
                                      nn.Dropout(dropout))
        self.classifier = dense_head(filters * 14 * 14, (hidden,), dropout, num_classes)
        initialise(self, init)


class NaiveInception(nn.Module):
    """A naive Inception block: 1x1->3x3, 1x1->5x5, 3x3 max-pool->1x1 and 1x1 branches, concatenated."""

    def __init__(self, in_channels: int = 1, reduce: int = 16, width: int = 32) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(conv(in_channels, reduce, 1), conv(reduce, width, 3)),
            nn.Sequential(conv(in_channels, reduce, 1), conv(reduce, width, 5)),
            nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(in_channels, width, 1)),
            conv(in_channels, width, 1),
        ])
        self.out_channels = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class InceptionCNN(FlatHead):
    """Study C's `inception_cnn`: one Inception block on the raw image, flattened whole (20,109,374 params)."""

    def __init__(self, dropout: float = 0.25, init: str = "glorot", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = NaiveInception()
        self.classifier = dense_head(self.features.out_channels * 28 * 28, (200, 100), dropout, num_classes)
        initialise(self, init)


class Conv2dSimple(FlatHead):
    """Study C's `conv2dsimple`: 1x1 then 3x3 conv, 4x4 max-pool (409,034 params counting BatchNorm's moving
    statistics as Keras does; 408,970 trainable)."""

    def __init__(self, dropout: float = 0.25, init: str = "glorot", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(conv(1, 16, 1), conv(16, 32, 3), nn.MaxPool2d(4),  # 32x7x7
                                      keras_batchnorm(32), nn.Dropout(dropout))
        self.classifier = dense_head(32 * 7 * 7, (256,), dropout, num_classes)
        initialise(self, init)


class Conv2dSimple2(FlatHead):
    """Study C's `conv2dsimple2`, its best model: two pooled conv stages (616,202 Keras params; 616,010 trainable)."""

    def __init__(self, dropout: float = 0.25, init: str = "glorot", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv(1, 16, 1), conv(16, 32, 3), nn.MaxPool2d(2), keras_batchnorm(32), nn.Dropout(dropout),  # 32x14x14
            conv(32, 64, 3, same=False), nn.MaxPool2d(2), keras_batchnorm(64), nn.Dropout(dropout),      # 64x6x6
        )
        self.classifier = dense_head(64 * 6 * 6, (256,), dropout, num_classes)
        initialise(self, init)


class Conv2dSimple3(FlatHead):
    """Study C's `conv2dsimple3`: a stride-1 pool keeps 27x27, then 1x1 and valid 3x3 convs
    (5,657,840 Keras params; 5,657,520 trainable)."""

    def __init__(self, dropout: float = 0.25, init: str = "glorot", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv(1, 16, 1), conv(16, 32, 3), nn.MaxPool2d(2, stride=1), keras_batchnorm(32),  # 32x27x27
            nn.Dropout(dropout),
            conv(32, 64, 1), conv(64, 128, 3, same=False), nn.MaxPool2d(2), keras_batchnorm(128),  # 128x12x12
            nn.Dropout(dropout),
        )
        self.classifier = dense_head(128 * 12 * 12, (300, 150), dropout, num_classes)
        initialise(self, init)
