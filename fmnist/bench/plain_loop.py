"""The baseline: a minimal hand-written PyTorch loop over the same resident tensors.

Per step it does what any training loop must (slice a shuffled batch, scale and normalise it,
forward, loss, backward, optimizer step) and nothing else, so that `framework / plain` is the
price of everything fmnist adds: Lightning's loop, hooks, metrics, logging and callbacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.bench.timing import Timing, clocks
from fmnist.training.module import OptimizerFactory


def autocast_for(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """The autocast Lightning's `trainer.precision` would apply; other precisions are not benchmarked."""
    if precision in ("32-true", "32", 32):
        return contextlib.nullcontext
    if precision == "bf16-mixed":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"the benchmark's plain loop supports trainer.precision 32-true or bf16-mixed, not {precision!r}")


def shuffled_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                     generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless full batches, reshuffled every pass."""
    while True:
        order = torch.randperm(len(labels), device=labels.device, generator=generator)
        for start in range(0, len(labels) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield images.index_select(0, index), labels.index_select(0, index)


def time_plain_loop(net: nn.Module, optimizer_factory: OptimizerFactory, images: torch.Tensor, labels: torch.Tensor,
                    batch_size: int, mean: float, std: float, input_kind: str, steps: int, warmup: int,
                    label_smoothing: float = 0.0, channels_last: bool = False, precision: str = "32-true",
                    seed: int = 0) -> Timing:
    """Train `net` for warmup + steps steps on uint8 `images` (N, 28, 28) already on the device; time the last steps."""
    device = images.device
    net.train()
    optimizer = optimizer_factory(net.parameters())
    autocast = autocast_for(precision, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    batches = shuffled_batches(images, labels, batch_size, generator)
    start = clocks(device)
    for step in range(warmup + steps):
        if step == warmup:
            start = clocks(device)
        raw, y = next(batches)
        x = raw.float().mul_(1.0 / 255.0).sub_(mean).div_(std)
        if input_kind == "image":
            x = x.unsqueeze(1)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            loss = F.cross_entropy(net(x), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    end = clocks(device)
    return Timing.between(start, end, steps, batch_size)
