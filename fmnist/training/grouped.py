"""Opt-in `module=grouped_steps`: one Lightning step runs `data.steps_per_execution` optimizer steps, since Lightning's
fixed cost per step dominates small batches on a CPU (docs/speed.md); the same batches in order, the same weights."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    StochasticWeightAveraging,
)
from omegaconf import DictConfig

from fmnist.core.errors import ConfigError
from fmnist.training.module import ClassifierModule, apply_max_norm

# Per-step hooks a group would call too rarely (batch hooks) or skip (backward hooks: a plain `loss.backward()`)
STEP_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward")
PLAIN_BACKWARD_PRECISIONS = ("32-true", "64-true", "bf16-mixed", "bf16-true")  # no gradient scaler
# Lightning's per-batch callbacks that are cosmetic or configured per epoch here; fmnist's own say `group_aware = True`
LIGHTNING_GROUP_AWARE = (ProgressBar, ModelCheckpoint)


def acts_per_batch(callback: Callback) -> bool:
    """Whether a callback does something on every training batch or backward pass (so needs one per step)."""
    if getattr(callback, "group_aware", False) or isinstance(callback, LIGHTNING_GROUP_AWARE):
        return False
    if isinstance(callback, LearningRateMonitor):
        return callback.logging_interval == "step"
    return any(getattr(type(callback), hook) is not getattr(Callback, hook) for hook in STEP_HOOKS)


class GroupedStepsModule(ClassifierModule):
    """ClassifierModule that splits each training item into batches of `batch_size` images, one optimizer step each;
    schedules, max-norm and trainer.max_steps act per optimizer step, as under automatic optimization."""

    def __init__(self, *args: Any, batch_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        self.batch_size = batch_size
        self.epoch_complete = False
        self.plain_backward = False

    def on_fit_start(self) -> None:
        trainer = self.trainer
        self.plain_backward = trainer.precision in PLAIN_BACKWARD_PRECISIONS
        if any(isinstance(callback, StochasticWeightAveraging) for callback in trainer.callbacks):
            raise ConfigError("callbacks", "StochasticWeightAveraging swaps Lightning's schedule and skips the "
                              "backward passes of its automatic optimization, which grouped steps replace with their "
                              "own optimizer loop", "use module=default data.steps_per_execution=1 with callbacks=swa")
        per_batch = [type(callback).__name__ for callback in trainer.callbacks if acts_per_batch(callback)]
        if per_batch:
            raise ConfigError("module", f"{', '.join(per_batch)} act(s) on every training batch or backward pass, "
                              "and grouped steps would call them once per group of data.steps_per_execution batches",
                              "use module=default data.steps_per_execution=1 (one batch per Lightning step) with "
                              "this callback")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimizer step per `batch_size` images of the item; returns their mean loss (NaN if any is)."""
        x, y = batch
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self.scheduler_spec and self.scheduler_spec.interval == "step" else None
        max_steps = self.trainer.max_steps
        losses = []
        for x_step, y_step in zip(x.split(self.batch_size), y.split(self.batch_size), strict=True):
            loss = self.training_loss(x_step, y_step)
            optimizer.zero_grad(set_to_none=True)
            if self.plain_backward:  # the optimizer step still runs Lightning's wrapper: step counts, hooks
                loss.backward()
            else:
                self.manual_backward(loss)  # the precision plugin scales the loss for its gradient scaler
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if self.max_norm:
                apply_max_norm(self.net, self.max_norm)
            losses.append(loss.detach())
            if max_steps != -1 and self.trainer.global_step >= max_steps:
                break  # trainer.max_steps counts optimizer steps, and may fall inside a group
        return torch.stack(losses).mean()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.epoch_complete = False

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.epoch_complete = batch_idx + 1 == self.trainer.num_training_batches
        super().on_train_batch_end(outputs, batch, batch_idx)

    def on_train_epoch_end(self) -> None:
        """Under manual optimization Lightning steps no schedule: an epoch schedule steps here, after validation,
        once per completed epoch (before the epoch-end checkpoint, which therefore holds the stepped schedule)."""
        super().on_train_epoch_end()
        spec = self.scheduler_spec
        if spec is None or spec.interval != "epoch" or not self.epoch_complete:
            return
        scheduler = self.lr_schedulers()
        if spec.monitor:
            scheduler.step(self.trainer.callback_metrics[spec.monitor])
        else:
            scheduler.step()

    def planned_optimizer_steps(self) -> int:
        """Lightning counts items; each holds up to `steps_per_execution` optimizer steps."""
        trainer = self.trainer
        super().planned_optimizer_steps()  # refuses a run without a length; sets the train data up
        per_epoch = trainer.train_dataloader.batches_in(int(trainer.num_training_batches))
        total = per_epoch * trainer.max_epochs if trainer.max_epochs not in (None, -1) else math.inf
        return int(min(total, trainer.max_steps) if trainer.max_steps != -1 else total)


def check_grouping(module: L.LightningModule, steps_per_execution: int, trainer: DictConfig) -> None:
    """Groups of batches need the module that splits them (the default one would train on a group as one batch),
    and that module steps its own optimizer, which Lightning can neither clip nor accumulate."""
    grouped = isinstance(module, GroupedStepsModule)
    if steps_per_execution > 1 and not grouped:
        raise ConfigError("data.steps_per_execution", f"{steps_per_execution} needs the grouped-steps module",
                          "add module=grouped_steps, or set data.steps_per_execution=1")
    if grouped and trainer.get("gradient_clip_val"):
        raise ConfigError("trainer.gradient_clip_val", "grouped steps run their own optimizer loop, which Lightning "
                          "cannot clip", "use module=default data.steps_per_execution=1 to clip gradients")
    if grouped and trainer.get("accumulate_grad_batches", 1) != 1:
        raise ConfigError("trainer.accumulate_grad_batches", "grouped steps run one optimizer step per batch",
                          "use module=default data.steps_per_execution=1 for gradient accumulation")
