"""OmegaConf resolvers the configs use; registered when an entry point is imported."""

from __future__ import annotations

from omegaconf import OmegaConf


def job_gpu(job_number: int | None = None, gpu_count: int | None = None) -> list[int]:
    """The GPU a sweep job should own, so parallel jobs on one machine do not share a device."""
    if job_number is None:
        from hydra.core.hydra_config import HydraConfig

        job_number = HydraConfig.get().job.num if HydraConfig.initialized() else 0
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    return [job_number % max(1, gpu_count)]


def ceil_div(numerator: int, denominator: int) -> int:
    """Batches needed to cover `numerator` images at `denominator` per batch (data.steps_per_execution)."""
    return max(1, -(-int(numerator) // int(denominator)))


def register() -> None:
    if not OmegaConf.has_resolver("fmnist_job_gpu"):
        OmegaConf.register_new_resolver("fmnist_job_gpu", lambda: job_gpu())
    if not OmegaConf.has_resolver("fmnist_ceil_div"):
        OmegaConf.register_new_resolver("fmnist_ceil_div", ceil_div)
