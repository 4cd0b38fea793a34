"""Devices: the GPU each job of a parallel local sweep owns (conf/trainer/gpu_per_job.yaml), and the sync that
makes a clock read honest on an asynchronous device."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when called, as in job_gpu: the config's _target_ resolution stays light
    import torch


def job_gpu(job_number: int | None = None, gpu_count: int | None = None) -> list[int]:
    """Job N gets GPU N mod (GPUs present), so parallel jobs do not share a device. The config names this
    function as a `_target_` that the trainer's instantiation calls, so composing needs no custom resolver."""
    if job_number is None:
        from hydra.core.hydra_config import HydraConfig

        job_number = HydraConfig.get().job.num if HydraConfig.initialized() else 0
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    return [job_number % max(1, gpu_count)]


def synchronize(device: torch.device) -> None:  # noqa: F821 - torch is imported lazily, like job_gpu's
    """Wait for the device's queued work, so a clock read after it measures that work (CUDA and MPS run async)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
