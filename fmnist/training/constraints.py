"""Keras-style weight constraints, applied after each optimizer step."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def apply_max_norm(net: nn.Module, max_norm: float) -> None:
    """Cap the L2 norm of each output unit's incoming weights (Keras `MaxNorm`) in conv and linear layers."""
    for layer in net.modules():
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            layer.weight.copy_(torch.renorm(layer.weight, p=2, dim=0, maxnorm=max_norm))
