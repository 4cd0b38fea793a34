"""Wall-clock timing that is honest on asynchronous devices: every clock read follows a device sync."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import torch

from fmnist.training.devices import synchronize


def clock(device: torch.device) -> float:
    synchronize(device)
    return time.perf_counter()


@dataclass(frozen=True)
class Clocks:
    """(wall, process CPU) seconds and minor page faults so far. CPU time barely moves when other processes
    share the cores, so on a busy machine the CPU-time ratio still shows the framework's own cost when
    wall-clock ratios drown in noise; page faults count fresh memory touched, which no noise moves."""

    wall: float
    cpu: float
    page_faults: int


def clocks(device: torch.device) -> Clocks:
    synchronize(device)
    return Clocks(time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


@dataclass(frozen=True)
class Timing:
    """`steps` batches of `batch_size` images in `seconds` of wall time and `cpu_seconds` of this process's
    CPU time (all threads), warm-up excluded."""

    steps: int
    batch_size: int
    seconds: float
    cpu_seconds: float = float("nan")
    page_faults: int = 0

    @classmethod
    def between(cls, start: Clocks, end: Clocks, steps: int, batch_size: int) -> Timing:
        return cls(steps=steps, batch_size=batch_size, seconds=end.wall - start.wall, cpu_seconds=end.cpu - start.cpu,
                   page_faults=end.page_faults - start.page_faults)

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.seconds / self.steps

    @property
    def images_per_second(self) -> float:
        return self.steps * self.batch_size / self.seconds

    @property
    def page_faults_per_step(self) -> float:
        return self.page_faults / self.steps
