"""Lightning's own floor: the same backbone in the smallest LightningModule Lightning accepts (training_step
and configure_optimizers; no metrics, logger, callbacks or checkpoints) over the same batches.

`fmnist / plain` mixes two costs: Lightning's loop (hooks, optimizer closure, progress tracking), which
no LightningModule can avoid, and what fmnist adds on top (metrics, logging, callbacks). This third
timing separates them: `bare / plain` is the floor, `fmnist / bare` is fmnist's own share.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from fmnist.bench.framework import StepWindow
from fmnist.bench.timing import Timing
from fmnist.data.batches import TensorBatches
from fmnist.training.module import OptimizerFactory


class BareModule(L.LightningModule):
    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, label_smoothing: float) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.label_smoothing = label_smoothing

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y, label_smoothing=self.label_smoothing)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())


def time_bare_lightning(cfg: DictConfig, net: nn.Module, optimizer: OptimizerFactory, batches: TensorBatches,
                        steps: int, warmup: int) -> Timing:
    """One `trainer.fit` of warmup + steps batches; clocked like the fmnist run (same StepWindow callback)."""
    window = StepWindow(warmup)
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        max_epochs=1, limit_train_batches=warmup + steps, limit_val_batches=0, logger=False,
                        callbacks=[window], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(BareModule(net, optimizer, cfg.regularization.label_smoothing), train_dataloaders=batches)
    if window.start is None or window.end is None:
        raise RuntimeError("the timed window did not close: the trainer stopped early")
    return Timing.between(window.start, window.end, steps, batches.batch_size)
