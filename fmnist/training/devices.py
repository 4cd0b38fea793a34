"""The GPU each job of a parallel local sweep owns (conf/trainer/gpu_per_job.yaml)."""

from __future__ import annotations


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
