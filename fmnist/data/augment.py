"""Augmentation as whole-batch tensor ops on the training device (no per-sample Python, no PIL)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fmnist.core.constants import NUM_CLASSES
from fmnist.core.errors import ConfigError
from fmnist.core.numbers import is_real


def shift_and_mirror(x: torch.Tensor, pixels: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the (B, H, W) batch (if `flip`) and shift each image by up to `pixels`, filling with
    0, in one flat gather over the padded batch: faster on a CPU than a flip then a translate (docs/speed.md)."""
    batch, height, width = x.shape
    device = x.device
    source = F.pad(x, (pixels, pixels, pixels, pixels)) if pixels else x
    padded_width = width + 2 * pixels
    rows = torch.arange(height, device=device).expand(batch, height)
    cols = torch.arange(width, device=device).expand(batch, width)
    if flip:
        mirror = torch.rand(batch, 1, device=device, generator=generator) < 0.5
    if pixels:
        shifts = torch.randint(0, 2 * pixels + 1, (2, batch, 1), device=device, generator=generator)
        rows, cols = rows + shifts[0], cols + shifts[1]
    if flip:
        cols = torch.where(mirror, padded_width - 1 - cols, cols)  # the mirror of a symmetric padding
    index = (rows[:, :, None] * padded_width + cols[:, None, :]).view(batch, height * width)
    return source.reshape(batch, -1).gather(1, index).view(batch, height, width)


def random_erase(x: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Zero one random rectangle (sides of 4 to 14 pixels) in a random share of the images (Zhong et al.)."""
    batch, height, width = x.shape
    device = x.device
    apply = torch.rand(batch, device=device, generator=generator) < probability
    sides = torch.randint(4, 15, (2, batch), device=device, generator=generator)
    top = (torch.rand(batch, device=device, generator=generator) * (height - sides[0] + 1)).long()
    left = (torch.rand(batch, device=device, generator=generator) * (width - sides[1] + 1)).long()
    rows = torch.arange(height, device=device)[None, :]
    cols = torch.arange(width, device=device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + sides[0])[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + sides[1])[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask, 0)


def mix_batch(x: torch.Tensor, y: torch.Tensor, mixup_alpha: float, cutmix_alpha: float, probability: float,
              switch_probability: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al.) or CutMix (Yun et al.) of a float batch with its own reverse, and its soft labels
    (docs/recipes.md); the draws come from the host `rng`, so the device's random stream is left as it is."""
    soft = F.one_hot(y, NUM_CLASSES).to(x.dtype)
    if rng.random() >= probability:
        return x, soft
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_probability)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = x.flip(0)
    if use_cutmix:
        height, width = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        center_y, center_x = int(rng.integers(height)), int(rng.integers(width))
        top, bottom = max(center_y - cut_h // 2, 0), min(center_y + cut_h // 2, height)
        left, right = max(center_x - cut_w // 2, 0), min(center_x + cut_w // 2, width)
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)  # the share of the image's own pixels
    else:
        mixed = x.mul(lam).add_(partner, alpha=1.0 - lam)
    return mixed, soft.mul(lam).add_(soft.flip(0), alpha=1.0 - lam)


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations run on training batches: pixel moves on the uint8 batch (`__call__`), then mixing
    of the normalised float batch with soft labels (`mix`)."""

    flip: bool = False
    translate: int = 0
    erase: float = 0.0
    mixup_alpha: float = 0.0        # > 0: mixup with weight ~ Beta(alpha, alpha)
    cutmix_alpha: float = 0.0       # > 0: CutMix with kept share ~ Beta(alpha, alpha)
    mix_probability: float = 1.0    # share of training batches that are mixed
    switch_probability: float = 0.5  # both on: share of mixed batches that use CutMix

    def __post_init__(self) -> None:
        for key in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, key)
            if not is_real(value) or value < 0:
                raise ConfigError(f"augmentation.{key}", f"{value!r} is not a number >= 0",
                                  "use 0 (off) or a Beta concentration such as 0.2 (mixup) or 1.0 (CutMix)")
        for key in ("mix_probability", "switch_probability"):
            value = getattr(self, key)
            if not is_real(value) or not 0 <= value <= 1:
                raise ConfigError(f"augmentation.{key}", f"{value!r} is not a probability",
                                  "use a value in [0, 1]")

    @property
    def active(self) -> bool:
        """Whether the pixel moves (flip, translate, erase) do anything."""
        return self.flip or self.translate > 0 or self.erase > 0

    @property
    def mixing(self) -> bool:
        """Whether training batches are mixed (and their labels soft)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_probability > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Pure pixel moves and fills with 0: on the uint8 batch they cost a quarter of the memory traffic."""
        if self.flip or self.translate > 0:
            x = shift_and_mirror(x, self.translate, self.flip, generator)
        if self.erase > 0:
            x = random_erase(x, self.erase, generator)
        return x

    def mix(self, x: torch.Tensor, y: torch.Tensor, batch_size: int,
            rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix each `batch_size` batch of an item on its own, as those batches one by one would be mixed."""
        parts = [mix_batch(x_part, y_part, self.mixup_alpha, self.cutmix_alpha, self.mix_probability,
                           self.switch_probability, rng)
                 for x_part, y_part in zip(x.split(batch_size), y.split(batch_size), strict=True)]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])
