"""Undo a per-step cost Lightning's import puts on machines without NVIDIA's management library.

`import lightning` sets `PYTORCH_NVML_BASED_CUDA_CHECK=1` so that asking "is there a GPU?" cannot
initialise CUDA before a fork. Every `optimizer.step()` asks that question (torch's graph-capture
health check), and where `libnvidia-ml` is missing torch then tries to load it again on every call
(about 70 us on the 2-core CPU machine, measured) before falling back to the CUDA runtime query it
would have made without the variable. There the variable protects nothing, so it is dropped.
"""

from __future__ import annotations

import os

import torch

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def drop_futile_nvml_check() -> bool:
    """True when the variable was dropped (it was set and NVML cannot be loaded here)."""
    if os.environ.get(NVML_CHECK) != "1":
        return False
    count_with_nvml = getattr(torch.cuda, "_device_count_nvml", None)  # private: keep the variable if it moves
    if count_with_nvml is None or count_with_nvml() >= 0:
        return False
    del os.environ[NVML_CHECK]
    return True
