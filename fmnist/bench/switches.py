"""`--switches`: each opt-in per-fit speed switch timed side by side with its recipe unchanged. A switch is worth
turning on only where its ratio is well below 1 and its results stay within float noise (docs/speed.md); bf16
autocast is fast only where the CPU or GPU computes in bf16 natively, which the report says."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from fmnist.bench.configs import compose_run, resident_datamodule
from fmnist.bench.loops import time_framework
from fmnist.training.builders import build_module, build_trainer

# name -> overrides on top of the recipe; each is timed against the recipe unchanged
SWITCHES: dict[str, tuple[str, ...]] = {
    "fused Adam": ("optimizer.foreach=false", "+optimizer.fused=true"),
    "torch.compile": ("model.compile=true",),
    "channels-last": ("model.channels_last=true",),
    "bf16 autocast": ("trainer.precision=bf16-mixed",),
}
VALIDATION_SWITCH = "eval batch"  # the validation batch sizes below, selected by this name in `only`
EVAL_BATCH_SIZES = (256, 1024, 4096)  # validation's inference batch (data.eval_batch_size, default 1024)
log = logging.getLogger("fmnist.bench")


def timed_fit(cfg: DictConfig, probe: L.Trainer, steps: int, warmup: int, run_dir: Path) -> tuple[float, float]:
    """(ms per optimizer step in the steady window, seconds of the whole call: set-up, compile, warm-up)."""
    started = time.perf_counter()
    timing = time_framework(cfg, resident_datamodule(cfg, probe), steps, warmup, run_dir)
    return timing.ms_per_step, time.perf_counter() - started


def validation_seconds(cfg: DictConfig, probe: L.Trainer, eval_batch_size: int, run_dir: Path) -> float:
    """One pass over the validation fold (12,000 images at 5 folds) with an untrained model, after a warm-up pass."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.data.eval_batch_size = eval_batch_size
    datamodule, module, trainer = resident_datamodule(cfg, probe), build_module(cfg), build_trainer(cfg, run_dir)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    started = time.perf_counter()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return time.perf_counter() - started


def recipe(experiment: str, overrides: list[str], work_dir: Path) -> list[str]:
    """The recipe's overrides at 5 folds without a logger; a timed fit runs no validation, so a plateau schedule
    (study C's) that monitors it reads the training loss instead, one step an epoch either way."""
    base = [f"experiment={experiment}", "data.num_folds=5", "logger=none", *overrides]
    if str(compose_run(base, work_dir).scheduler.monitor or "").startswith("val/"):
        base.append("scheduler.monitor=train/loss")
    return base


def time_switch(experiment: str, name: str, base: list[str], probe: L.Trainer, work_dir: Path, steps: int,
                warmup: int, repeats: int) -> dict[str, Any]:
    """Baseline and switched fits alternating A B A B ... (drift hits both alike): median ms/step, ratios, and the
    first fit's seconds of each, where torch.compile's compile time shows."""
    cfgs = {"baseline": compose_run(base, work_dir), "switched": compose_run([*base, *SWITCHES[name]], work_dir)}
    timings: dict[str, list[tuple[float, float]]] = {"baseline": [], "switched": []}
    for repeat in range(repeats):
        for label, cfg in cfgs.items():
            timings[label].append(timed_fit(cfg, probe, steps, warmup, work_dir / f"{label}{repeat}"))
    ratios = [switched / baseline for (baseline, _), (switched, _) in zip(*timings.values(), strict=True)]
    row = {"experiment": experiment, "switch": name, "overrides": list(SWITCHES[name]), "steps": steps,
           **{f"{label}_ms_per_step": statistics.median(ms for ms, _ in runs) for label, runs in timings.items()},
           "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
           **{f"{label}_first_fit_seconds": runs[0][1] for label, runs in timings.items()}}
    log.info("%s, %s: %.2f -> %.2f ms/step (x%.3f); first fit %.1f s -> %.1f s", experiment, name,
             row["baseline_ms_per_step"], row["switched_ms_per_step"], row["ratio"]["median"],
             row["baseline_first_fit_seconds"], row["switched_first_fit_seconds"])
    return row


def validation_rows(experiment: str, base: list[str], probe: L.Trainer, work_dir: Path) -> list[dict[str, Any]]:
    """One validation pass per eval batch size, as a ratio to the recipe's own eval batch size."""
    cfg = compose_run(base, work_dir)
    seconds = {size: validation_seconds(cfg, probe, size, work_dir / f"val{size}") for size in EVAL_BATCH_SIZES}
    default = seconds.get(int(cfg.data.eval_batch_size))
    for size, value in seconds.items():
        log.info("%s, validation at eval batch %d: %.2f s", experiment, size, value)
    return [{"experiment": experiment, "switch": f"data.eval_batch_size={size}",
             "overrides": [f"data.eval_batch_size={size}"], "validation_seconds": value,
             "ratio": {"median": value / default} if default else None} for size, value in seconds.items()]


def switch_report(experiments: list[str], overrides: list[str], probe: L.Trainer, work_dir: Path, *,
                  steps: int, warmup: int, repeats: int, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Per recipe, every switch (or those named in `only`) at `steps` optimizer steps rounded to whole groups."""
    rows = []
    for experiment in experiments:
        run_dir = work_dir / experiment
        base = recipe(experiment, overrides, run_dir)
        per_group = int(compose_run(base, run_dir).data.steps_per_execution)
        group_steps = max(per_group, steps // per_group * per_group)
        for name in SWITCHES:
            if only is None or name in only:
                rows.append(time_switch(experiment, name, base, probe, run_dir, group_steps, warmup, repeats))
        if only is None or VALIDATION_SWITCH in only:
            rows.extend(validation_rows(experiment, base, probe, run_dir))
    return rows
