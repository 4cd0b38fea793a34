"""Test-time augmentation, shared by training's val/test passes and by eval and predict, so they agree exactly."""

from __future__ import annotations

from collections.abc import Callable

import torch


def flip_averaged_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean logits of each image and its mirror image (the last axis in both layouts, as training's flip
    augmentation showed them)."""
    logits = forward(x)
    return (logits + forward(x.flip(-1))) / 2
