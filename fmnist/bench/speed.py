"""The speed table: per model and batch size, fmnist, the opt-in grouped module, bare Lightning and the plain loop
interleaved A B C D A B C D ... (so machine drift hits all alike), inference, and the data pipeline's headroom."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from statistics import median
from typing import Any

import lightning as L
import torch

from fmnist.bench import loops
from fmnist.bench.configs import compose_run, probe_trainer, resident_datamodule, study_batch_size
from fmnist.bench.loops import Timing, clocks
from fmnist.bench.report import PIPELINE_TARGET, machine, spread
from fmnist.core.config_dir import CONF_DIR
from fmnist.data.augment import Augmentation
from fmnist.data.batches import TensorBatches
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.models.catalog import count_params
from fmnist.training.builders import build_net

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
    """One (model, batch size): its config and resident data, and the opt-in module=grouped_steps's beside them."""

    def __init__(self, overrides: list[str], batch_size: int, probe: L.Trainer, work_dir: Path) -> None:
        self.work_dir, self.runs = work_dir, 0
        self.cfg = compose_run(overrides, work_dir)
        self.datamodule = resident_datamodule(self.cfg, probe)
        per_group = math.ceil(GROUP_IMAGES / batch_size)
        self.grouped_cfg = compose_run(["module=grouped_steps", f"data.steps_per_execution={per_group}", *overrides],
                                       work_dir)
        self.grouped_datamodule = resident_datamodule(self.grouped_cfg, probe)

    def framework(self, steps: int, warmup: int, grouped: bool = False) -> Timing:
        self.runs += 1
        cfg, datamodule = (self.grouped_cfg, self.grouped_datamodule) if grouped else (self.cfg, self.datamodule)
        return loops.time_framework(cfg, datamodule, steps, warmup, self.work_dir / f"run{self.runs}")

    def step_count(self, budget: Budget) -> int:
        """Steps for about `budget.seconds` by a short plain probe, in whole groups of the grouped module and
        within one epoch after the warm-up, so every timing runs the same steps."""
        probe = loops.time_plain_loop(self.cfg, self.datamodule, budget.probe_steps, budget.warmup)
        wanted = min(max(budget.seconds / probe.seconds * probe.steps, budget.min_steps), budget.max_steps)
        per_group = self.grouped_datamodule.steps_per_execution
        groups_per_epoch = self.grouped_datamodule.train_dataloader().full_items - math.ceil(budget.warmup / per_group)
        return per_group * max(1, min(math.ceil(wanted / per_group), groups_per_epoch))

    def inference(self, budget: Budget) -> dict[str, float]:
        """Eval-mode forward passes on a ready batch of 1 and of 1024 (only the model is timed), each at least 3
        times and for `budget.inference_seconds`."""
        images, found = self.datamodule.test_dataloader().images, {}
        net = loops.fresh_net(self.cfg, images.device).eval()
        for size in (1, 1024):
            x = self.datamodule.transform(images[:size], augment=False, generator=None)
            with torch.inference_mode(), loops.autocast_for(str(self.cfg.trainer.precision), x.device):
                net(x)  # warm-up
                calls, start = 0, clocks(x.device)
                while calls < 3 or time.perf_counter() - start[0] < budget.inference_seconds:
                    net(x)
                    calls += 1
                found[f"batch_{size}"] = Timing.between(start, clocks(x.device), calls, size).images_per_second
        return found


def ratios(over: list[Timing], under: list[Timing], cpu: bool = False) -> dict[str, float]:
    return spread([a.cpu_seconds / b.cpu_seconds if cpu else a.seconds / b.seconds
                   for a, b in zip(over, under, strict=True)])


def measure_case(case: Case, budget: Budget, with_inference: bool) -> dict[str, Any]:
    """The case's row of bench.json: every repetition, medians, page faults and the ratios the table shows."""
    cfg, steps, warmup = case.cfg, case.step_count(budget), budget.warmup
    runs = {"framework": lambda: case.framework(steps, warmup),
            "plain": lambda: loops.time_plain_loop(cfg, case.datamodule, steps, warmup),
            "bare_lightning": lambda: loops.time_bare_lightning(cfg, case.datamodule, steps, warmup),
            "grouped": lambda: case.framework(steps, warmup, grouped=True)}
    timed: dict[str, list[Timing]] = {name: [] for name in runs}
    for repeat in range(budget.repeats):
        for name, run in runs.items():
            timed[name].append(run())
        log.info("%s batch %d, repeat %d: %s", cfg.model.name, cfg.data.batch_size, repeat + 1, ", ".join(
            f"{name} {t[-1].ms_per_step:.2f} ms/step ({t[-1].page_faults_per_step:.0f} page faults)"
            for name, t in timed.items()))
    framework, plain, bare = timed["framework"], timed["plain"], timed["bare_lightning"]
    result: dict[str, Any] = {
        "model": cfg.model.name, "batch_size": int(cfg.data.batch_size), "params": count_params(build_net(cfg.model)),
        "steps": steps, "warmup": warmup, "repeats": budget.repeats,
        "grouped_steps_per_execution": case.grouped_datamodule.steps_per_execution,
        "page_faults_per_step": {name: median(t.page_faults_per_step for t in timings)
                                 for name, timings in timed.items()},
        "ratio": ratios(framework, plain), "cpu_time_ratio": ratios(framework, plain, cpu=True),
        "lightning_floor_ratio": ratios(bare, plain), "fmnist_over_lightning_ratio": ratios(framework, bare),
        "grouped_ratio": ratios(timed["grouped"], plain),
    }
    for name, timings in timed.items():
        result[f"{name}_ms_per_step"] = [t.ms_per_step for t in timings]
        result[name] = {"ms_per_step": median(t.ms_per_step for t in timings),
                        "images_per_second": median(t.images_per_second for t in timings)}
    if with_inference:
        result["inference_images_per_second"] = case.inference(budget)
    return result


def pipeline_report(datamodule: FashionMnistDataModule, fastest: dict[str, Any]) -> dict[str, Any]:
    """Training batches alone, shuffled within one epoch, with the config's augmentation and with flip + translate (the
    speedrun's), as a multiple of what the fastest model consumes: training must never wait on data."""
    consumed, runs, source = fastest["framework"]["images_per_second"], [], datamodule.train_dataloader()
    device, flip_translate = source.images.device, Augmentation(flip=True, translate=2)
    for name, augmentation in (("config", datamodule.augmentation), ("flip+translate", flip_translate)):
        loader = TensorBatches(source.images, source.labels, datamodule.batch_size,
                               replace(datamodule.transform, augmentation=augmentation), train=True, seed=0,
                               drop_last=True)
        batches, start = min(max(50, 10 * fastest["steps"]), len(loader)), clocks(device)
        deque(islice(loader, batches), maxlen=0)  # makes the batches and keeps none; the clock syncs the device
        timing = Timing.between(start, clocks(device), batches, datamodule.batch_size)
        runs.append({"augmentation": name, "batches": timing.steps, "batches_per_second": timing.steps / timing.seconds,
                     "images_per_second": timing.images_per_second, "headroom": timing.images_per_second / consumed})
    return {"batch_size": datamodule.batch_size, "fastest_model": fastest["model"],
            "fastest_model_images_per_second": consumed, "runs": runs,
            "meets_target": all(run["headroom"] >= PIPELINE_TARGET for run in runs)}


def speed_report(models: list[str], batch_sizes: list[str], overrides: list[str], budget: Budget, inference: bool,
                 work_dir: Path) -> dict[str, Any]:
    """Every case's row, then the data pipeline at the batch size of the fastest model."""
    probe = probe_trainer(compose_run(overrides, work_dir))
    device = probe.strategy.root_device
    target = 1.05 if device.type == "cpu" else 1.15  # a GPU step is short: Lightning's fixed per-step cost weighs more
    report: dict[str, Any] = {"machine": machine(device), "overrides": overrides, "budget": budget.__dict__,
                              "targets": {"ratio": target, "pipeline_headroom": PIPELINE_TARGET},
                              "training": [], "skipped": []}
    datamodules: dict[tuple[str, int], FashionMnistDataModule] = {}
    for model in models:
        if not (Path(CONF_DIR) / "model" / f"{model}.yaml").is_file():
            report["skipped"].append({"model": model, "reason": f"conf/model/{model}.yaml does not exist"})
            log.warning("skipping %s: no conf/model/%s.yaml", model, model)
            continue
        sources: dict[int, str] = {}  # batch size: where it came from ('study': the model's own recipe), once each
        for entry in batch_sizes:
            size, experiment = study_batch_size(model) if entry == "study" else (int(entry), None)
            if size is None:
                log.warning("%s: no recipe in conf/experiment/ sets its batch size; skipping 'study'", model)
            else:
                sources.setdefault(size, "common" if experiment is None else f"experiment={experiment}")
        for index, (batch_size, source) in enumerate(sources.items()):
            L.seed_everything(0, verbose=False)
            case = Case([f"model={model}", f"data.batch_size={batch_size}", *overrides], batch_size, probe,
                        work_dir / f"{model}_b{batch_size}")
            row = measure_case(case, budget, with_inference=index == 0 and inference)
            row.update(batch_source=source, meets_target=row["ratio"]["median"] <= target)
            report["training"].append(row)
            datamodules[(model, batch_size)] = case.datamodule
    if report["training"]:
        fastest = max(report["training"], key=lambda row: row["framework"]["images_per_second"])
        report["data_pipeline"] = pipeline_report(datamodules[(fastest["model"], fastest["batch_size"])], fastest)
    return report
