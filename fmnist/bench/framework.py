"""fmnist as a user runs it: ClassifierModule, FashionMnistDataModule, metrics, logger and callbacks from the
config, driven by `trainer.fit`; only the number of steps is fixed and validation is left out of the window."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from fmnist.bench.timing import Clocks, Timing, clocks
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.training.builders import build_module, build_trainer


class StepWindow(L.Callback):
    """Clock from the end of the last warm-up Lightning step to the end of the last one: exactly the timed
    batches fetched and trained, hooks and metric updates included."""

    group_aware = True  # its window is whole Lightning steps, groups included, by design

    def __init__(self, warmup: int) -> None:
        if warmup < 1:
            raise ValueError("the framework timing needs at least one warm-up step")
        self.warmup = warmup
        self.start: Clocks | None = None
        self.end: Clocks | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx + 1 == self.warmup:
            self.start = clocks(pl_module.device)
        if batch_idx + 1 == trainer.num_training_batches:
            self.end = clocks(pl_module.device)


def warmup_groups(warmup: int, per_group: int) -> int:
    """Warm-up optimizer steps rounded up to whole Lightning steps of `per_group` each, at least one."""
    return max(1, math.ceil(warmup / per_group))


def time_framework(cfg: DictConfig, datamodule: FashionMnistDataModule, steps: int, warmup: int,
                   run_dir: Path) -> Timing:
    """One `trainer.fit` of warmup + steps optimizer steps with the config's logger, callbacks and metrics.

    Lightning steps hold `data.steps_per_execution` optimizer steps each, so `steps` must be a multiple of
    it and the warm-up is rounded up to whole Lightning steps."""
    per_group = datamodule.steps_per_execution
    if steps % per_group:
        raise ValueError(f"{steps} steps are not whole groups of data.steps_per_execution={per_group}")
    warmup_count = warmup_groups(warmup, per_group)
    groups = warmup_count + steps // per_group
    if groups > datamodule.train_dataloader().full_items:
        raise ValueError(f"{groups * per_group} steps do not fit in one epoch of batch {datamodule.batch_size}")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.trainer.max_epochs = 1
        cfg.trainer.limit_train_batches = groups
        cfg.trainer.limit_val_batches = 0
    module = build_module(cfg)
    trainer = build_trainer(cfg, run_dir)
    window = StepWindow(warmup_count)
    trainer.callbacks.append(window)
    trainer.fit(module, datamodule=datamodule)
    if window.start is None or window.end is None:
        raise RuntimeError("the timed window did not close: the trainer stopped early")
    return Timing.between(window.start, window.end, steps, datamodule.batch_size)
