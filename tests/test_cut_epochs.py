"""An epoch cut short (trainer.max_time, max_steps, a stop signal) still gets its own history row.

Before, train metrics and step timing were logged only at an epoch's last batch, so the row of a cut
epoch repeated the previous epoch's train figures, and so did metrics.json when that epoch was best.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
from omegaconf import open_dict

from fmnist.training.builders import build_datamodule, build_module, build_trainer
from fmnist.training.callbacks import EpochHistory, StepTimer
from tests.helpers import DATA_DIR, compose

BATCHES_PER_EPOCH = 12  # 1,200 training images in batches of 100


class StopAfter(L.Callback):
    """Signals a stop after a given global step, as Lightning's Timer does when trainer.max_time runs out."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


@pytest.mark.parametrize("how", ["stop_signal", "max_steps"])
def test_a_cut_epoch_logs_its_own_train_metrics(how: str, tmp_path: Path) -> None:
    cut_at = BATCHES_PER_EPOCH + 4  # the second epoch stops after 4 of its 12 batches
    cfg = compose("train", f"data.data_dir={DATA_DIR}", "model=conv_maxpool", "data.train_subset=1200",
                  "data.batch_size=100", "data.eval_batch_size=2000", "trainer.max_epochs=3", "logger=csv", "seed=0",
                  "++trainer.limit_val_batches=1", output_dir=tmp_path)  # the training figures are the question
    if how == "max_steps":
        with open_dict(cfg):
            cfg.trainer.max_steps = cut_at
    trainer = build_trainer(cfg, tmp_path)
    if how == "stop_signal":
        trainer.callbacks.append(StopAfter(cut_at))
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))

    timer = next(callback for callback in trainer.callbacks if isinstance(callback, StepTimer))
    rows = next(callback for callback in trainer.callbacks if isinstance(callback, EpochHistory)).rows
    assert [row["epoch"] for row in rows] == [0, 1]
    assert len(timer.epoch_ms_per_step) == 2
    for row, ms_per_step in zip(rows, timer.epoch_ms_per_step, strict=True):
        assert row["train/ms_per_step"] == pytest.approx(ms_per_step)
    for key in ("train/loss", "train/acc", "train/ms_per_step"):
        assert rows[1][key] != rows[0][key], key  # the cut epoch's own figures, not the previous epoch's
    assert rows[1]["train/loss"] < rows[0]["train/loss"]  # and they are training figures: the loss fell
