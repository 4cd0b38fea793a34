"""The three training loops the speed table compares (fmnist's `trainer.fit`, the smallest LightningModule and a
hand-written PyTorch loop), each clocked after a device sync so asynchronous devices cannot hide work."""

from __future__ import annotations

import contextlib
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import nn

from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.training.builders import build_module, build_net, build_trainer, prepare_net
from fmnist.training.devices import synchronize
from fmnist.training.module import OptimizerFactory

Clocks = tuple[float, float, int]  # wall seconds, CPU seconds, minor page faults


def clocks(device: torch.device) -> Clocks:
    """Wall and CPU seconds and minor page faults: the last two stay readable where other jobs make wall time noise."""
    synchronize(device)
    return time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@dataclass(frozen=True)
class Timing:
    """`steps` batches of `batch_size` images between two clock readings, warm-up excluded."""

    steps: int
    batch_size: int
    seconds: float
    cpu_seconds: float
    page_faults: int

    @classmethod
    def between(cls, start: Clocks, end: Clocks, steps: int, batch_size: int) -> Timing:
        return cls(steps, batch_size, *(after - before for before, after in zip(start, end, strict=True)))

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.seconds / self.steps

    @property
    def images_per_second(self) -> float:
        return self.steps * self.batch_size / self.seconds

    @property
    def page_faults_per_step(self) -> float:
        return self.page_faults / self.steps


class StepWindow(L.Callback):
    """Clocks from the end of the last warm-up Lightning step to the end of the last one, so the timed batches
    include their fetch, hooks and metric updates."""

    group_aware = True  # its window is whole Lightning steps, groups included, by design

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: Clocks | None = None
        self.end: Clocks | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx + 1 == self.warmup:
            self.start = clocks(pl_module.device)
        if batch_idx + 1 == trainer.num_training_batches:
            self.end = clocks(pl_module.device)

    def timing(self, steps: int, batch_size: int) -> Timing:
        if self.start is None or self.end is None:
            raise RuntimeError("the timed window did not close: the trainer stopped early")
        return Timing.between(self.start, self.end, steps, batch_size)


def time_framework(cfg: DictConfig, datamodule: FashionMnistDataModule, steps: int, warmup: int,
                   run_dir: Path) -> Timing:
    """fmnist as a user runs it (module, logger, callbacks, metrics) without validation; `steps` are whole groups
    of `data.steps_per_execution`, as a Lightning step holds them."""
    per_group = datamodule.steps_per_execution
    warmup_count = max(1, math.ceil(warmup / per_group))  # whole Lightning steps, at least one
    groups = warmup_count + steps // per_group
    if groups > datamodule.train_dataloader().full_items:
        raise ValueError(f"{groups * per_group} steps do not fit in one epoch of batch {datamodule.batch_size}")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.trainer.max_epochs, cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches = 1, groups, 0
    module = build_module(cfg)
    trainer = build_trainer(cfg, run_dir)
    window = StepWindow(warmup_count)
    trainer.callbacks.append(window)
    trainer.fit(module, datamodule=datamodule)
    return window.timing(steps, datamodule.batch_size)


def fresh_net(cfg: DictConfig, device: torch.device) -> nn.Module:
    """The config's backbone with new weights, prepared as `build_module` prepares it, on `device`."""
    return prepare_net(build_net(cfg.model), cfg.model).to(device)


class BareModule(L.LightningModule):
    """The smallest LightningModule: `bare / plain` is the price of Lightning's own loop, which no LightningModule
    avoids, so `fmnist / bare` is what fmnist adds (metrics, logging, callbacks)."""

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, label_smoothing: float) -> None:
        super().__init__()
        self.net, self.optimizer_factory, self.label_smoothing = net, optimizer, label_smoothing

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y, label_smoothing=self.label_smoothing)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())


def time_bare_lightning(cfg: DictConfig, datamodule: FashionMnistDataModule, steps: int, warmup: int) -> Timing:
    """A fresh net in `BareModule` over the datamodule's batches, one a Lightning step."""
    net = fresh_net(cfg, datamodule.train_dataloader().images.device)
    module = BareModule(net, instantiate(cfg.optimizer), cfg.regularization.label_smoothing)
    window = StepWindow(warmup)
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        max_epochs=1, limit_train_batches=warmup + steps, limit_val_batches=0, logger=False,
                        callbacks=[window], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, train_dataloaders=datamodule.train_batches(1))
    return window.timing(steps, datamodule.batch_size)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast Lightning's `trainer.precision` would apply; other precisions are not benchmarked."""
    if precision in ("32-true", "32"):
        return contextlib.nullcontext()
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"the benchmark's plain loop supports trainer.precision 32-true or bf16-mixed, not {precision!r}")


def time_plain_loop(cfg: DictConfig, datamodule: FashionMnistDataModule, steps: int, warmup: int) -> Timing:
    """What any training loop must do per step (shuffled batch, scale, normalise, forward, loss, backward, step) on
    the datamodule's resident uint8 images, with a fresh net, so `fmnist / plain` prices all fmnist adds."""
    loader, batch_size = datamodule.train_dataloader(), datamodule.batch_size
    images, labels, device = loader.images, loader.labels, loader.images.device
    # read once: a DictConfig lookup in the loop would add to every step
    mean, std, smoothing = datamodule.mean, datamodule.std, cfg.regularization.label_smoothing
    image_input, channels_last = cfg.model.input == "image", bool(cfg.model.channels_last)
    net = fresh_net(cfg, device)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    autocast = autocast_for(str(cfg.trainer.precision), device)
    generator = torch.Generator(device=device).manual_seed(0)
    order, start = None, clocks(device)
    for step in range(warmup + steps):
        if step == warmup:
            start = clocks(device)
        if order is None or len(order) < batch_size:  # full batches only, reshuffled every pass
            order = torch.randperm(len(labels), device=device, generator=generator)
        index, order = order[:batch_size], order[batch_size:]
        raw, y = images.index_select(0, index), labels.index_select(0, index)
        x = raw.float().mul_(1.0 / 255.0).sub_(mean).div_(std)
        if image_input:
            x = x.unsqueeze(1)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = F.cross_entropy(net(x), y, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return Timing.between(start, clocks(device), steps, batch_size)
