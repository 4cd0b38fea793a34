"""Wall-clock timing that is honest on asynchronous devices: every clock read follows a device sync."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def clock(device: torch.device) -> float:
    synchronize(device)
    return time.perf_counter()


def clocks(device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds. CPU time barely moves when other processes share the cores, so on a busy
    machine the CPU-time ratio still shows the framework's own cost when wall-clock ratios drown in noise."""
    synchronize(device)
    return time.perf_counter(), time.process_time()


@dataclass(frozen=True)
class Timing:
    """`steps` batches of `batch_size` images in `seconds` of wall time and `cpu_seconds` of this process's
    CPU time (all threads), warm-up excluded."""

    steps: int
    batch_size: int
    seconds: float
    cpu_seconds: float = float("nan")

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.seconds / self.steps

    @property
    def images_per_second(self) -> float:
        return self.steps * self.batch_size / self.seconds
