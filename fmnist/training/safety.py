"""The callback that stops a run cleanly when training diverges, before a NaN model is checkpointed."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from fmnist.core.errors import FmnistError


class NonFiniteLossError(FmnistError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(L.Callback):
    """Stop at a non-finite training loss: the kept losses are checked together every `check_every_n_steps` and
    before every checkpoint save, since a check per step costs time on a CPU and stalls the host on a GPU."""

    group_aware = True  # counts optimizer steps (trainer.global_step): fine under module=grouped_steps

    def __init__(self, check_every_n_steps: int = 100) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be at least 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self._losses: list[torch.Tensor] = []
        self._checked_at_step = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(loss.detach())
        if trainer.global_step - self._checked_at_step >= self.check_every_n_steps:
            self._raise_if_bad(trainer, f"epoch {trainer.current_epoch}, by step {trainer.global_step}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_bad(trainer, f"epoch {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_bad(trainer, f"epoch {trainer.current_epoch}")

    def _raise_if_bad(self, trainer: L.Trainer, where: str) -> None:
        losses, self._losses = self._losses, []
        self._checked_at_step = trainer.global_step
        if not losses or bool(torch.stack(losses).isfinite().all()):
            return
        # the unmonitored checkpoint (conf/callbacks: last_checkpoint, every epoch) first, else the best one
        newest = (callback.best_model_path for callback in getattr(trainer, "checkpoint_callbacks", [])
                  if callback.monitor is None and callback.best_model_path)
        last = next(newest, "") or getattr(trainer.checkpoint_callback, "best_model_path", "")
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been saved yet"
        raise NonFiniteLossError(f"the training loss became NaN or infinite ({where}); stopped, {kept}. "
                                 "Fix: lower optimizer.lr, or clip gradients with trainer.gradient_clip_val=1.0.")
