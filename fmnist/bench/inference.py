"""Inference throughput of a backbone in eval mode: batch 1 (latency-bound) and a large batch (throughput)."""

from __future__ import annotations

import time

import torch
from torch import nn

from fmnist.bench.plain_loop import autocast_for
from fmnist.bench.timing import clock


@torch.inference_mode()
def images_per_second(net: nn.Module, x: torch.Tensor, min_seconds: float, min_calls: int = 3,
                      precision: str = "32-true") -> float:
    """Forward passes on the ready batch `x` until both `min_calls` and `min_seconds` are reached (after one
    warm-up call); the batch is prepared beforehand, so only the model is timed."""
    net.eval()
    autocast = autocast_for(precision, x.device)
    with autocast():
        net(x)
    calls = 0
    start = clock(x.device)
    while True:
        with autocast():
            net(x)
        calls += 1
        if calls >= min_calls and time.perf_counter() - start >= min_seconds:
            break
    return calls * len(x) / (clock(x.device) - start)
