"""Process-wide settings the commands apply before anything trains (conf/train.yaml: `process`), each of which can
be turned off; docs/speed.md has what each one measured."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fmnist.core.cli import in_multirun
from fmnist.core.errors import ConfigError
from fmnist.core.numbers import is_int

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30


@functools.cache  # once per process: every trainer of a sweep or benchmark asks again
def keep_freed_memory() -> bool:
    """glibc keeps up to KEEP_BYTES of freed memory for reuse instead of page-faulting fresh pages every step;
    True when glibc took the thresholds, False elsewhere (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))


def drop_futile_nvml_check() -> bool:
    """Drop Lightning's PYTORCH_NVML_BASED_CUDA_CHECK=1 where NVIDIA's library is absent: torch would retry loading
    it at every optimizer step's GPU check, protecting nothing. True when it was dropped."""
    if os.environ.get(NVML_CHECK) != "1" or ctypes.util.find_library("nvidia-ml") is not None:
        return False
    del os.environ[NVML_CHECK]
    return True


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a SLURM or taskset share), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parallel_jobs() -> int:
    """How many jobs of this Hydra run share the machine at once: the joblib launcher's n_jobs in a multirun
    (-1: one per core, as joblib reads it), else 1."""
    if not in_multirun():
        return 1
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return available_cores() if n_jobs < 0 else n_jobs


def threads_per_job(setting: int | str | None, jobs: int, cores: int) -> int | None:
    """torch's thread count for `process.threads` (None: torch's choice): auto = an equal share of the cores (at
    least one) when jobs run side by side, torch's choice for a job alone."""
    if setting is None or (setting == "auto" and jobs <= 1):
        return None
    if setting == "auto":
        return max(1, cores // jobs)
    if is_int(setting) and setting > 0:
        return setting
    raise ConfigError("process.threads", f"expected auto, null or a positive integer, got {setting!r}",
                      "use process.threads=auto (a share of the cores per parallel job), e.g. process.threads=1")


def apply_process_settings(process: DictConfig) -> None:
    """The `process` config group's switches, for the whole process (train, cv and the benchmark call it)."""
    if process.drop_futile_nvml_check:
        drop_futile_nvml_check()
    if process.keep_freed_memory:
        keep_freed_memory()
    threads = threads_per_job(process.get("threads"), parallel_jobs(), available_cores())
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
