"""The speed table: per model and batch size, fmnist, the opt-in grouped module, bare Lightning and the plain loop
interleaved A B C D A B C D ... (so machine drift hits all alike), inference, and the data pipeline's headroom."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from fmnist.bench import loops
from fmnist.bench.configs import compose_run, probe_trainer, resident_datamodule, study_batch_size
from fmnist.bench.loops import Timing, clocks
from fmnist.bench.report import PIPELINE_TARGET, machine, ratio_target
from fmnist.core.config_dir import CONF_DIR
from fmnist.data.augment import Augmentation
from fmnist.data.batches import BatchTransform, TensorBatches
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.models.catalog import count_params
from fmnist.training.builders import build_net, prepare_net

log = logging.getLogger("fmnist.bench")
GROUP_IMAGES = 1024  # the opt-in grouped module gets about this many images per Lightning step, as the studies do


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


QUICK_BUDGET = Budget(repeats=2, warmup=2, seconds=0.05, min_steps=3, max_steps=20, probe_steps=2,
                      inference_seconds=0.02)


class Case:
    """One (model, batch size): its config and resident data, and the grouped module's beside them if timed."""

    def __init__(self, overrides: list[str], batch_size: int, grouped: bool, probe: L.Trainer, work_dir: Path) -> None:
        self.work_dir, self.runs = work_dir, 0
        self.cfg = compose_run(overrides, work_dir)
        self.datamodule = resident_datamodule(self.cfg, probe)
        self.device = self.datamodule.train_dataloader().images.device
        self.grouped_cfg: DictConfig | None = None  # the opt-in module=grouped_steps, timed beside the default
        self.grouped_datamodule: FashionMnistDataModule | None = None
        if grouped:
            per_group = max(1, math.ceil(GROUP_IMAGES / batch_size))
            self.grouped_cfg = compose_run(["module=grouped_steps", f"data.steps_per_execution={per_group}",
                                            *overrides], work_dir)
            self.grouped_datamodule = resident_datamodule(self.grouped_cfg, probe)

    def new_net(self) -> torch.nn.Module:
        return prepare_net(build_net(self.cfg.model), self.cfg.model).to(self.device)

    def plain(self, steps: int, warmup: int) -> Timing:
        cfg, loader = self.cfg, self.datamodule.train_dataloader()
        return loops.time_plain_loop(self.new_net(), instantiate(cfg.optimizer), loader.images, loader.labels,
                                     cfg.data.batch_size, self.datamodule.mean, self.datamodule.std, cfg.model.input,
                                     steps=steps, warmup=warmup, label_smoothing=cfg.regularization.label_smoothing,
                                     channels_last=bool(cfg.model.get("channels_last", False)),
                                     precision=str(cfg.trainer.precision))

    def bare_lightning(self, steps: int, warmup: int) -> Timing:
        return loops.time_bare_lightning(self.cfg, self.new_net(), instantiate(self.cfg.optimizer),
                                         self.datamodule.train_batches(1), steps, warmup)  # a batch a Lightning step

    def framework(self, steps: int, warmup: int, grouped: bool = False) -> Timing:
        self.runs += 1
        cfg, datamodule = (self.grouped_cfg, self.grouped_datamodule) if grouped else (self.cfg, self.datamodule)
        return loops.time_framework(cfg, datamodule, steps, warmup, self.work_dir / f"run{self.runs}")

    def step_count(self, budget: Budget) -> int:
        """Optimizer steps per timed run from a short plain probe: whole groups of data.steps_per_execution
        (the grouped module's Lightning steps), capped by one epoch of full batches after the warm-up."""
        probe = self.plain(budget.probe_steps, budget.warmup)
        wanted = math.ceil(budget.seconds / probe.seconds * probe.steps)
        datamodule = self.grouped_datamodule or self.datamodule
        per_group = datamodule.steps_per_execution
        groups_per_epoch = datamodule.train_dataloader().full_items - max(1, math.ceil(budget.warmup / per_group))
        wanted_groups = max(math.ceil(budget.min_steps / per_group), min(math.ceil(wanted / per_group),
                                                                       math.ceil(budget.max_steps / per_group)))
        return per_group * max(1, min(wanted_groups, groups_per_epoch))

    def inference(self, budget: Budget) -> dict[str, float]:
        net, images, found = self.new_net(), self.datamodule.test_dataloader().images, {}
        for size in (1, 1024):
            x = self.datamodule.transform(images[:size], augment=False, generator=None)
            found[f"batch_{size}"] = images_per_second(net, x, budget.inference_seconds, self.cfg.trainer.precision)
        return found


@torch.inference_mode()
def images_per_second(net: torch.nn.Module, x: torch.Tensor, min_seconds: float, precision: Any) -> float:
    """Eval-mode forward passes on the ready batch `x` (only the model is timed) until both 3 calls and
    `min_seconds` are reached, after one warm-up call."""
    net.eval()
    autocast = loops.autocast_for(str(precision), x.device)
    with autocast():
        net(x)
    calls, start = 0, clocks(x.device).wall
    while calls < 3 or time.perf_counter() - start < min_seconds:
        with autocast():
            net(x)
        calls += 1
    return calls * len(x) / (clocks(x.device).wall - start)


def ratios(over: list[Timing], under: list[Timing], cpu: bool = False) -> dict[str, float]:
    values = [a.cpu_seconds / b.cpu_seconds if cpu else a.seconds / b.seconds
              for a, b in zip(over, under, strict=True)]
    return {"min": min(values), "median": median(values), "max": max(values)}


def measure_case(case: Case, budget: Budget, with_inference: bool) -> dict[str, Any]:
    """The case's row of bench.json: every repetition, medians, page faults and the ratios the table shows."""
    cfg, steps = case.cfg, case.step_count(budget)
    timed: dict[str, list[Timing]] = {"framework": [], "plain": [], "bare_lightning": [], "grouped": []}
    for repeat in range(budget.repeats):
        timed["framework"].append(case.framework(steps, budget.warmup))
        timed["plain"].append(case.plain(steps, budget.warmup))
        timed["bare_lightning"].append(case.bare_lightning(steps, budget.warmup))
        if case.grouped_cfg is not None:
            timed["grouped"].append(case.framework(steps, budget.warmup, grouped=True))
        log.info("%s batch %d, repeat %d: %s", cfg.model.name, cfg.data.batch_size, repeat + 1, ", ".join(
            f"{name} {t[-1].ms_per_step:.2f} ms/step ({t[-1].page_faults_per_step:.0f} page faults)"
            for name, t in timed.items() if t))
    timed = {name: timings for name, timings in timed.items() if timings}
    framework, plain, bare = timed["framework"], timed["plain"], timed["bare_lightning"]
    result: dict[str, Any] = {
        "model": cfg.model.name, "batch_size": int(cfg.data.batch_size), "params": count_params(build_net(cfg.model)),
        "steps": steps, "warmup": budget.warmup, "repeats": budget.repeats,
        "grouped_steps_per_execution": case.grouped_datamodule.steps_per_execution if "grouped" in timed else None,
        "page_faults_per_step": {name: median(t.page_faults_per_step for t in timed[name])
                                 for name in ("framework", "plain", "bare_lightning")},
        "ratio": ratios(framework, plain), "cpu_time_ratio": ratios(framework, plain, cpu=True),
        "lightning_floor_ratio": ratios(bare, plain),  # bare Lightning / plain
        "fmnist_over_lightning_ratio": ratios(framework, bare),  # fmnist / bare Lightning
    }
    for name, timings in timed.items():
        result[f"{name}_ms_per_step"] = [t.ms_per_step for t in timings]
        result[name] = {"ms_per_step": median(t.ms_per_step for t in timings),
                        "images_per_second": median(t.images_per_second for t in timings)}
    if "grouped" in timed:
        result["grouped_ratio"] = ratios(timed["grouped"], plain)
    if with_inference:
        result["inference_images_per_second"] = case.inference(budget)
    return result


def time_data_pipeline(datamodule: FashionMnistDataModule, batch_size: int, batches: int,
                       augmentation: Augmentation | None) -> Timing:
    """Shuffled, transformed training batches as `train_dataloader` makes them, no model (at most one epoch, so
    the per-epoch shuffle is included); `augmentation` replaces the config's if given."""
    loader, transform = datamodule.train_dataloader(), datamodule.transform
    if augmentation is not None:
        transform = BatchTransform(transform.mean, transform.std, transform.input_kind, augmentation,
                                   transform.channels_last)
    loader = TensorBatches(loader.images, loader.labels, batch_size, transform, train=True, seed=0, drop_last=True)
    batches, count = min(batches, len(loader)), 0
    start = clocks(loader.images.device)
    for x, _ in loader:
        count += 1
        if count == batches:
            x.sum()  # the last batch is really computed before the clock stops
            break
    return Timing.between(start, clocks(loader.images.device), count, batch_size)


def pipeline_report(datamodule: FashionMnistDataModule, batch_size: int, batches: int, model: str,
                    model_images_per_second: float) -> dict[str, Any]:
    """Pipeline throughput with the config's augmentation and with flip + translate (the speedrun's), each as a
    multiple of what the fastest model consumes: training must never wait on data."""
    runs = []
    for name, augmentation in (("config", None), ("flip+translate", Augmentation(flip=True, translate=2))):
        timing = time_data_pipeline(datamodule, batch_size, batches, augmentation)
        runs.append({"augmentation": name, "batches": timing.steps, "batches_per_second": timing.steps / timing.seconds,
                     "images_per_second": timing.images_per_second,
                     "headroom": timing.images_per_second / model_images_per_second})
    return {"batch_size": batch_size, "fastest_model": model,
            "fastest_model_images_per_second": model_images_per_second, "runs": runs,
            "meets_target": all(run["headroom"] >= PIPELINE_TARGET for run in runs)}


def batch_sizes_for(model: str, requested: list[str]) -> list[tuple[int, str]]:
    """[(batch size, where it came from)] without duplicates: 'study' is the batch of the model's own recipe."""
    found: dict[int, str] = {}
    for entry in requested:
        if entry != "study":
            found.setdefault(int(entry), "common")
            continue
        size, experiment = study_batch_size(model)
        if size is None:
            log.warning("%s: no recipe in conf/experiment/ sets its batch size; skipping 'study'", model)
        else:
            found.setdefault(size, f"experiment={experiment}")
    return list(found.items())


def speed_report(models: list[str], batch_sizes: list[str], overrides: list[str], budget: Budget, grouped: bool,
                 inference: bool, work_dir: Path) -> dict[str, Any]:
    """Every case's row, then the data pipeline at the batch size of the fastest model."""
    probe = probe_trainer(compose_run(overrides, work_dir))
    target = ratio_target(probe.strategy.root_device)
    report: dict[str, Any] = {"machine": machine(probe.strategy.root_device), "overrides": overrides,
                              "budget": budget.__dict__, "targets": {"ratio": target, "pipeline_headroom":
                                                                     PIPELINE_TARGET}, "training": [], "skipped": []}
    cases: dict[tuple[str, int], Case] = {}
    for model in models:
        if not (Path(CONF_DIR) / "model" / f"{model}.yaml").is_file():
            report["skipped"].append({"model": model, "reason": f"conf/model/{model}.yaml does not exist"})
            log.warning("skipping %s: no conf/model/%s.yaml", model, model)
            continue
        for index, (batch_size, source) in enumerate(batch_sizes_for(model, batch_sizes)):
            L.seed_everything(0, verbose=False)
            case = Case([f"model={model}", f"data.batch_size={batch_size}", *overrides], batch_size, grouped, probe,
                        work_dir / f"{model}_b{batch_size}")
            row = measure_case(case, budget, with_inference=index == 0 and inference)
            row.update(batch_source=source, meets_target=row["ratio"]["median"] <= target)
            report["training"].append(row)
            cases[(model, batch_size)] = case
    if report["training"]:
        fastest = max(report["training"], key=lambda row: row["framework"]["images_per_second"])
        report["data_pipeline"] = pipeline_report(cases[(fastest["model"], fastest["batch_size"])].datamodule,
                                                  fastest["batch_size"], max(50, 10 * fastest["steps"]),
                                                  fastest["model"], fastest["framework"]["images_per_second"])
    return report
