"""Learning-rate schedules built from torch's own, for what one torch scheduler does not do alone."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from fmnist.core.errors import ConfigError
from fmnist.core.numbers import is_int


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                  warmup_steps: int | None = None, start_factor: float = 0.01, eta_min: float = 0.0) -> LRScheduler:
    """Linear warm-up from `start_factor` x lr to lr over `warmup_steps` (else `warmup_fraction` of the run, at least
    one step), then cosine decay to `eta_min` at the run's last optimizer step (`total_steps`, from the module)."""
    if not 0 < start_factor <= 1:
        raise ConfigError("scheduler.factory.start_factor", f"{start_factor!r} is not in (0, 1]",
                          "use the share of optimizer.lr to start the warm-up at, e.g. 0.01")
    if warmup_steps is None:
        if not isinstance(warmup_fraction, (int, float)) or not 0 <= warmup_fraction < 1:
            raise ConfigError("scheduler.factory.warmup_fraction", f"{warmup_fraction!r} is not in [0, 1)",
                              "use a share of the run such as 0.05, or set scheduler.factory.warmup_steps")
        warmup_steps = max(1, round(warmup_fraction * total_steps)) if warmup_fraction > 0 else 0
    elif not is_int(warmup_steps) or warmup_steps < 0:
        raise ConfigError("scheduler.factory.warmup_steps", f"{warmup_steps!r} is not an integer >= 0",
                          "use a number of optimizer steps, or null to use warmup_fraction")
    warmup = min(warmup_steps, max(total_steps - 1, 0))  # always at least one step of cosine decay
    cosine = CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup, 1), eta_min=eta_min)
    if warmup == 0:
        return cosine
    ramp = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, schedulers=[ramp, cosine], milestones=[warmup])
