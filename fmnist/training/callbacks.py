"""Small Lightning callbacks for what the built-in ones do not record or restore."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from statistics import median
from typing import Any

import lightning as L
import torch
from torchmetrics import Metric

from fmnist.core.atomic import write_csv_atomic
from fmnist.core.checkpoints import CheckpointError
from fmnist.core.limits import clip
from fmnist.core.numbers import is_real
from fmnist.training.devices import synchronize

log = logging.getLogger("fmnist.train")  # EpochLine's lines read as the train command's own


class StepTimer(L.Callback):
    """Wall time of each training epoch's steps, validation left out, with one device sync per epoch; it must come
    before EpochHistory (conf/callbacks/default.yaml), which writes the figures of a cut epoch."""

    group_aware = True  # counts optimizer steps (trainer.global_step): fine under module=grouped_steps

    def __init__(self) -> None:
        self.epoch_ms_per_step: list[float] = []
        self.epoch_images_per_second: list[float] = []
        self._start = 0.0
        self._images = 0
        self._first_step = 0  # optimizer steps: a Lightning step may run several (data.steps_per_execution)
        self._clock_running = False
        self._unlogged = False  # this epoch's figures are measured, not yet logged

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module.device)
        self._images, self._first_step, self._clock_running = 0, trainer.global_step, True
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._images += len(batch[1])
        if batch_idx + 1 == trainer.num_training_batches:  # measured and logged before validation
            self.on_train_epoch_end(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.should_stop:  # validation right after the step that ended a cut epoch
            self._stop_clock(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_clock(trainer, pl_module)
        if self._unlogged:
            self._unlogged = False
            pl_module.log_dict({"train/ms_per_step": self.epoch_ms_per_step[-1],
                                "train/images_per_second": self.epoch_images_per_second[-1]},
                               on_step=False, on_epoch=True)

    def _stop_clock(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steps = trainer.global_step - self._first_step
        if not self._clock_running or steps == 0:
            return
        synchronize(pl_module.device)
        seconds = time.perf_counter() - self._start
        self._clock_running, self._unlogged = False, True
        self.epoch_ms_per_step.append(1000.0 * seconds / steps)
        self.epoch_images_per_second.append(self._images / seconds)

    @property
    def ms_per_step(self) -> float | None:
        """Median over epochs, so the first epoch's warm-up does not dominate."""
        return median(self.epoch_ms_per_step) if self.epoch_ms_per_step else None

    @property
    def images_per_second(self) -> float | None:
        return median(self.epoch_images_per_second) if self.epoch_images_per_second else None


class EpochHistory(L.Callback):
    """Every epoch's scalar metrics in `history.csv`, rewritten atomically, for learning curves in reports."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float | int]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        row: dict[str, float | int] = {"epoch": trainer.current_epoch}
        for key, value in sorted(trainer.callback_metrics.items()):
            if "/class_" not in key and isinstance(value, torch.Tensor) and value.numel() == 1:
                row[key] = float(value)
        self.rows.append(row)
        write_csv_atomic(self.path, self.rows)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Rows from a checkpoint are data: each a mapping of metric names to numbers, else one line."""
        rows = state_dict.get("rows", [])
        valid = isinstance(rows, list) and all(
            isinstance(row, dict) and all(isinstance(key, str) and is_real(value) for key, value in row.items())
            for row in rows)
        if not valid:
            raise CheckpointError("the checkpoint's epoch history is not a list of rows of numbers; it was not "
                                  "written by fmnist. Fix: continue from a checkpoint fmnist wrote, or start afresh.")
        self.rows = [dict(row) for row in rows]


class EpochLine(L.Callback):
    """Off a terminal (a pipe, a log file, a sweep job), where no progress bar shows it: one line per epoch, such as
    `epoch 3/9: train loss 0.3121 acc 0.8874 | val loss 0.3301 acc 0.8810 | 12.4 s`; `always` logs it everywhere."""

    def __init__(self, always: bool = False) -> None:
        self.always = always
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        quiet = not self.always and trainer.progress_bar_callback is not None
        if not trainer.is_global_zero or quiet:
            return
        metrics = trainer.callback_metrics
        parts = []
        for stage in ("train", "val"):
            figures = [f"{name} {float(metrics[f'{stage}/{name}']):.4f}" for name in ("loss", "acc")
                       if f"{stage}/{name}" in metrics]
            if figures:
                parts.append(f"{stage} {' '.join(figures)}")
        last = f"/{trainer.max_epochs - 1}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        line = (f"epoch {trainer.current_epoch}{last}: {' | '.join(parts) or 'no metrics'} | "
                f"{time.perf_counter() - self._start:.1f} s")
        log.info("%s", line)


class SpawnedProcessMetrics(L.Callback):
    """Under trainer=ddp_spawn: a reset gives each process its own metric states (else shared memory makes them
    one), and rank 0's test confusion goes back to the launching process through callback_metrics."""

    KEY = "test/confusion"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for metric in pl_module.modules():
            if isinstance(metric, Metric):
                metric.reset()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        matrix = getattr(pl_module, "last_confusion", {}).get("test")
        if matrix is not None:
            trainer.callback_metrics[self.KEY] = matrix


class RestoreFinished(L.Callback):
    """Notes when Lightning has restored everything from `ckpt_path`, so that an error raised earlier comes from the
    checkpoint's contents, and fit_and_test names the file instead of showing Lightning's traceback."""

    def __init__(self) -> None:
        self.done = False
        self.trained = False  # an epoch started: false when ckpt_path had already reached max_epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trained = True

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.done = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.done = True


class FitClock(L.Callback):
    """Seconds of `trainer.fit` before this process, kept in every checkpoint, so a run resumed from one reports
    its whole training time, not only the part after the stop."""

    def __init__(self) -> None:
        self.before = 0.0  # restored from the checkpoint a resumed fit starts from
        self._started: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        elapsed = 0.0 if self._started is None else time.perf_counter() - self._started
        return {"seconds": self.before + elapsed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        seconds = state_dict.get("seconds")
        if not is_real(seconds) or not 0.0 <= seconds < float("inf"):
            raise CheckpointError(f"the checkpoint's fit clock {clip(repr(seconds), 60)} is not a finite number of "
                                  "seconds; fmnist did not write it. Fix: continue from a checkpoint fmnist wrote, or "
                                  "start afresh.")
        self.before = float(seconds)


class EpochSeed(L.Callback):
    """Reseed torch's RNG from (seed, epoch) at each epoch start, so a run resumed from an epoch-end checkpoint
    draws the random numbers the uninterrupted run drew."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed * 1_000_003 + trainer.current_epoch)
