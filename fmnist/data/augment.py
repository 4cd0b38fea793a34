"""Augmentation as whole-batch tensor ops on the training device (no per-sample Python, no PIL)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right. x: (B, H, W)."""
    flip = torch.rand(x.shape[0], 1, 1, device=x.device, generator=generator) < 0.5
    return torch.where(flip, x.flip(-1), x)


def random_translate(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to `pixels` in x and y, filling with background (0). x: (B, H, W)."""
    batch, height, width = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    shifts = torch.randint(0, 2 * pixels + 1, (2, batch), device=x.device, generator=generator)
    rows = torch.arange(height, device=x.device)[None, :] + shifts[0][:, None]  # (B, H)
    cols = torch.arange(width, device=x.device)[None, :] + shifts[1][:, None]  # (B, W)
    batch_index = torch.arange(batch, device=x.device)[:, None, None]
    return padded[batch_index, rows[:, :, None], cols[:, None, :]]


def random_erase(x: torch.Tensor, probability: float, generator: torch.Generator,
                 min_side: int = 4, max_side: int = 14) -> torch.Tensor:
    """Zero one random rectangle in a random share of the images (random erasing, Zhong et al.)."""
    batch, height, width = x.shape
    device = x.device
    apply = torch.rand(batch, device=device, generator=generator) < probability
    sides = torch.randint(min_side, max_side + 1, (2, batch), device=device, generator=generator)
    top = (torch.rand(batch, device=device, generator=generator) * (height - sides[0] + 1)).long()
    left = (torch.rand(batch, device=device, generator=generator) * (width - sides[1] + 1)).long()
    rows = torch.arange(height, device=device)[None, :]
    cols = torch.arange(width, device=device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + sides[0])[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + sides[1])[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask, 0.0)


@dataclass(frozen=True)
class Augmentation:
    """Which batch augmentations run on training batches."""

    flip: bool = False
    translate: int = 0
    erase: float = 0.0

    @property
    def active(self) -> bool:
        return self.flip or self.translate > 0 or self.erase > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.flip:
            x = random_flip(x, generator)
        if self.translate > 0:
            x = random_translate(x, self.translate, generator)
        if self.erase > 0:
            x = random_erase(x, self.erase, generator)
        return x
