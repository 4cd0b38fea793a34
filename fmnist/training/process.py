"""Process-wide settings that the commands apply, visibly, before anything trains (conf/train.yaml: `process`).

Each can be turned off (`process.keep_freed_memory=false`); docs/speed.md has what each one measured.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

from omegaconf import DictConfig

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30


@functools.cache  # once per process: every trainer of a sweep or benchmark asks again
def keep_freed_memory(keep_bytes: int = KEEP_BYTES) -> bool:
    """glibc keeps up to `keep_bytes` of freed memory for reuse instead of page-faulting fresh pages every step.

    True when glibc took the thresholds; False elsewhere (macOS, Windows, musl), where nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, keep_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, keep_bytes))


def drop_futile_nvml_check() -> bool:
    """Drop Lightning's PYTORCH_NVML_BASED_CUDA_CHECK=1 where NVIDIA's management library is absent.

    There torch retries loading the library on every optimizer step's "is there a GPU?" check and then falls back
    to the query it would have made anyway, so the variable protects nothing. True when it was dropped.
    """
    if os.environ.get(NVML_CHECK) != "1" or ctypes.util.find_library("nvidia-ml") is not None:
        return False
    del os.environ[NVML_CHECK]
    return True


def apply_process_settings(process: DictConfig) -> None:
    """The `process` config group's switches, for the whole process (train, cv and the benchmark call it)."""
    if process.drop_futile_nvml_check:
        drop_futile_nvml_check()
    if process.keep_freed_memory:
        keep_freed_memory()
