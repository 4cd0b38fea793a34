"""Batches sliced straight from resident tensors: the data never waits on workers or PIL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fmnist.data.augment import Augmentation

MIXING_STREAM = 0x6D6978  # "mix": the mixing draws' own random stream, apart from shuffling and pixel moves


@dataclass(frozen=True)
class BatchTransform:
    """uint8 (B, 28, 28) -> normalised float in the layout the model expects."""

    mean: float
    std: float
    input_kind: str = "image"
    augmentation: Augmentation = Augmentation()
    channels_last: bool = False

    def __call__(self, images: torch.Tensor, augment: bool, generator: torch.Generator | None) -> torch.Tensor:
        if augment and self.augmentation.active:
            images = self.augmentation(images, generator)  # on uint8: background is 0 there too
        x = images.to(torch.float32, copy=True).mul_(1.0 / 255.0).sub_(self.mean).div_(self.std)  # never the source
        if self.input_kind == "rows":
            return x
        x = x.unsqueeze(1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class TensorBatches:
    """An epoch of (x, y) items; shuffling and augmentation are a function of (seed, epoch), so a resumed run sees
    the same batches. An item holds `steps_per_execution` consecutive batches (GroupedStepsModule)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, transform: BatchTransform,
                 train: bool = False, seed: int = 0, drop_last: bool = False, steps_per_execution: int = 1) -> None:
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.transform = transform
        self.train = train
        self.seed = seed
        self.drop_last = drop_last
        self.steps_per_execution = steps_per_execution
        self.epoch = 0

    batch_sampler = None  # Lightning inspects DataLoader-like attributes; batching is done here.

    @property
    def sampler(self) -> TensorBatches:
        """Lightning looks for `loader.sampler.set_epoch`; this object is its own sampler."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def batches_per_epoch(self) -> int:
        count = len(self.labels) / self.batch_size
        return math.floor(count) if self.drop_last else math.ceil(count)

    @property
    def full_items(self) -> int:
        """Items of `steps_per_execution` full batches each (the benchmark times only these)."""
        return len(self.labels) // self.batch_size // self.steps_per_execution

    def batches_in(self, items: int) -> int:
        """How many batches the first `items` items hold: the optimizer steps they make."""
        return min(items * self.steps_per_execution, self.batches_per_epoch)

    def __len__(self) -> int:
        return math.ceil(self.batches_per_epoch / self.steps_per_execution)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.images.device
        augmentation = self.transform.augmentation
        generator = order = mixing_rng = None
        if self.train:
            generator = torch.Generator(device=device).manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(len(self.labels), device=device, generator=generator)
            if augmentation.mixing:
                mixing_rng = np.random.default_rng((self.seed % 2**63, self.epoch, MIXING_STREAM))
        end = min(self.batches_per_epoch * self.batch_size, len(self.labels))
        item_size = self.batch_size * self.steps_per_execution
        for start in range(0, end, item_size):
            stop = min(start + item_size, end)
            if order is None:
                images, labels = self.images[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]  # index_select beats images[index] on a CPU (docs/speed.md)
                images, labels = self.images.index_select(0, index), self.labels.index_select(0, index)
            x = self.transform(images, self.train, generator)
            if mixing_rng is not None:
                x, labels = augmentation.mix(x, labels, self.batch_size, mixing_rng)
            yield x, labels
