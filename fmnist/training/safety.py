"""Callbacks that make runs reproducible across resumes and stop them cleanly when training diverges."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from fmnist.errors import FmnistError


class NonFiniteLossError(FmnistError):
    """The training loss became NaN or infinite."""


class EpochSeed(L.Callback):
    """Reseed torch's RNG (dropout, init-free randomness) from (seed, epoch) at each epoch start.

    Shuffling and augmentation already depend on (seed, epoch) only; with this, a run resumed from an
    epoch-end checkpoint draws exactly the random numbers the uninterrupted run drew.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed * 1_000_003 + trainer.current_epoch)


class NonFiniteLossGuard(L.Callback):
    """Stop at the first non-finite training loss, before a NaN model can be checkpointed.

    The flag accumulates on the device and is read every `check_every_n_steps` steps and before
    validation (which precedes every checkpoint save). By default (None) that is every step on a CPU,
    where reading it is free, and every `ACCELERATOR_CHECK_EVERY` steps on a GPU, where each read
    would stall the host until the device catches up.
    """

    ACCELERATOR_CHECK_EVERY = 100

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        if check_every_n_steps is not None and check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be at least 1 or None, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self._bad: torch.Tensor | None = None

    def steps_between_checks(self, device: torch.device) -> int:
        if self.check_every_n_steps is not None:
            return self.check_every_n_steps
        return 1 if device.type == "cpu" else self.ACCELERATOR_CHECK_EVERY

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        bad = ~torch.isfinite(loss.detach())
        self._bad = bad if self._bad is None else self._bad | bad
        if (batch_idx + 1) % self.steps_between_checks(pl_module.device) == 0:
            self._raise_if_bad(trainer, f"epoch {trainer.current_epoch}, step {batch_idx}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_bad(trainer, f"epoch {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_bad(trainer, f"epoch {trainer.current_epoch}")

    def _raise_if_bad(self, trainer: L.Trainer, where: str) -> None:
        if self._bad is None or not bool(self._bad):
            return
        checkpoint = trainer.checkpoint_callback
        last = getattr(checkpoint, "last_model_path", "") or getattr(checkpoint, "best_model_path", "")
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been saved yet"
        raise NonFiniteLossError(f"the training loss became NaN or infinite ({where}); stopped, {kept}. "
                                 "Fix: lower optimizer.lr, or clip gradients with trainer.gradient_clip_val=1.0.")
