"""One benchmark case (a model at a batch size): framework and plain loop interleaved A B A B ..., so that
machine drift (other processes, thermal state) hits both alike, plus the model's inference throughput."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from fmnist.bench.bare_lightning import time_bare_lightning
from fmnist.bench.framework import time_framework, warmup_groups
from fmnist.bench.inference import images_per_second
from fmnist.bench.plain_loop import time_plain_loop
from fmnist.bench.timing import Timing
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.models.catalog import count_params
from fmnist.training.builders import build_datamodule, build_net, prepare_net

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """How long to measure: `seconds` per timed run decides the step count, within [min_steps, max_steps]."""

    repeats: int = 5
    warmup: int = 5
    seconds: float = 2.0
    min_steps: int = 10
    max_steps: int = 2000
    probe_steps: int = 5
    inference_seconds: float = 1.0


def resident_datamodule(cfg: DictConfig, probe: L.Trainer) -> FashionMnistDataModule:
    """Set up on the device the trainer config selects, so both loops read the same resident tensors."""
    datamodule = build_datamodule(cfg)
    datamodule.trainer = probe
    datamodule.setup("fit")
    datamodule.trainer = None
    return datamodule


def summarize(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": median(values), "max": max(values)}


class Case:
    """Everything measured for one (model, batch size)."""

    def __init__(self, cfg: DictConfig, datamodule: FashionMnistDataModule, work_dir: Path,
                 grouped_cfg: DictConfig | None = None,
                 grouped_datamodule: FashionMnistDataModule | None = None) -> None:
        self.cfg = cfg
        self.datamodule = datamodule
        self.grouped_cfg = grouped_cfg  # the opt-in module=grouped_steps, timed beside the default module
        self.grouped_datamodule = grouped_datamodule
        self.work_dir = work_dir
        loader = datamodule.train_dataloader()
        self.images, self.labels = loader.images, loader.labels
        self.device = self.images.device
        self.runs = 0

    def new_net(self) -> torch.nn.Module:
        return prepare_net(build_net(self.cfg.model), self.cfg.model).to(self.device)

    def plain(self, steps: int, warmup: int) -> Timing:
        cfg = self.cfg
        return time_plain_loop(self.new_net(), instantiate(cfg.optimizer), self.images, self.labels,
                               cfg.data.batch_size, self.datamodule.mean, self.datamodule.std, cfg.model.input,
                               steps=steps, warmup=warmup, label_smoothing=cfg.regularization.label_smoothing,
                               channels_last=bool(cfg.model.get("channels_last", False)),
                               precision=str(cfg.trainer.precision))

    def bare_lightning(self, steps: int, warmup: int) -> Timing:
        return time_bare_lightning(self.cfg, self.new_net(), instantiate(self.cfg.optimizer),
                                   self.datamodule.train_batches(1), steps, warmup)  # one batch per Lightning step

    def framework(self, steps: int, warmup: int) -> Timing:
        self.runs += 1
        return time_framework(self.cfg, self.datamodule, steps, warmup, self.work_dir / f"run{self.runs}")

    def grouped(self, steps: int, warmup: int) -> Timing:
        assert self.grouped_cfg is not None and self.grouped_datamodule is not None
        self.runs += 1
        return time_framework(self.grouped_cfg, self.grouped_datamodule, steps, warmup,
                              self.work_dir / f"run{self.runs}")

    def step_count(self, budget: Budget) -> int:
        """Optimizer steps per timed run from a short plain probe: whole groups of data.steps_per_execution
        (the grouped module's Lightning steps), capped by one epoch of full batches after the warm-up."""
        probe = self.plain(budget.probe_steps, budget.warmup)
        wanted = math.ceil(budget.seconds / probe.seconds * probe.steps)
        datamodule = self.grouped_datamodule or self.datamodule
        per_group = datamodule.steps_per_execution
        groups_per_epoch = datamodule.train_dataloader().full_items - warmup_groups(budget.warmup, per_group)
        wanted_groups = max(math.ceil(budget.min_steps / per_group), min(math.ceil(wanted / per_group),
                                                                       math.ceil(budget.max_steps / per_group)))
        return per_group * max(1, min(wanted_groups, groups_per_epoch))

    def inference(self, budget: Budget, batch_sizes: tuple[int, ...] = (1, 1024)) -> dict[str, float]:
        net = self.new_net()
        images = self.datamodule.test_dataloader().images
        found = {}
        for batch_size in batch_sizes:
            x = self.datamodule.transform(images[:batch_size], augment=False, generator=None)
            found[f"batch_{batch_size}"] = images_per_second(net, x, budget.inference_seconds,
                                                             precision=str(self.cfg.trainer.precision))
        return found


def measure_case(case: Case, budget: Budget, with_inference: bool) -> dict[str, Any]:
    cfg = case.cfg
    steps = case.step_count(budget)
    framework: list[Timing] = []
    plain: list[Timing] = []
    bare: list[Timing] = []
    grouped: list[Timing] = []
    for repeat in range(budget.repeats):  # A B C D A B C D ...: drift on the machine hits all alike
        framework.append(case.framework(steps, budget.warmup))
        plain.append(case.plain(steps, budget.warmup))
        bare.append(case.bare_lightning(steps, budget.warmup))
        if case.grouped_cfg is not None:
            grouped.append(case.grouped(steps, budget.warmup))
        log.info("%s batch %d, repeat %d: fmnist %.2f, plain %.2f, bare Lightning %.2f ms/step; page faults/step "
                 "%.0f, %.0f, %.0f", cfg.model.name, cfg.data.batch_size, repeat + 1, framework[-1].ms_per_step,
                 plain[-1].ms_per_step, bare[-1].ms_per_step, framework[-1].page_faults_per_step,
                 plain[-1].page_faults_per_step, bare[-1].page_faults_per_step)
    ratios = [a.seconds / b.seconds for a, b in zip(framework, plain, strict=True)]
    cpu_ratios = [a.cpu_seconds / b.cpu_seconds for a, b in zip(framework, plain, strict=True)]
    floor_ratios = [a.seconds / b.seconds for a, b in zip(bare, plain, strict=True)]
    own_ratios = [a.seconds / b.seconds for a, b in zip(framework, bare, strict=True)]
    result: dict[str, Any] = {
        "model": cfg.model.name,
        "batch_size": int(cfg.data.batch_size),
        "params": count_params(build_net(cfg.model)),
        "steps": steps,
        "grouped_steps_per_execution": case.grouped_datamodule.steps_per_execution if grouped else None,
        "warmup": budget.warmup,
        "repeats": budget.repeats,
        "framework_ms_per_step": [timing.ms_per_step for timing in framework],
        "plain_ms_per_step": [timing.ms_per_step for timing in plain],
        "bare_lightning_ms_per_step": [timing.ms_per_step for timing in bare],
        "framework": {"ms_per_step": median(t.ms_per_step for t in framework),
                      "images_per_second": median(t.images_per_second for t in framework)},
        "plain": {"ms_per_step": median(t.ms_per_step for t in plain),
                  "images_per_second": median(t.images_per_second for t in plain)},
        "bare_lightning": {"ms_per_step": median(t.ms_per_step for t in bare)},
        "page_faults_per_step": {"framework": median(t.page_faults_per_step for t in framework),
                                 "plain": median(t.page_faults_per_step for t in plain),
                                 "bare_lightning": median(t.page_faults_per_step for t in bare)},
        "ratio": summarize(ratios),
        "cpu_time_ratio": summarize(cpu_ratios),
        "lightning_floor_ratio": summarize(floor_ratios),  # bare Lightning / plain
        "fmnist_over_lightning_ratio": summarize(own_ratios),  # fmnist / bare Lightning
    }
    if grouped:
        result["grouped_ms_per_step"] = [timing.ms_per_step for timing in grouped]
        result["grouped"] = {"ms_per_step": median(t.ms_per_step for t in grouped),
                             "images_per_second": median(t.images_per_second for t in grouped)}
        result["grouped_ratio"] = summarize([a.seconds / b.seconds for a, b in zip(grouped, plain, strict=True)])
    if with_inference:
        result["inference_images_per_second"] = case.inference(budget)
    return result
