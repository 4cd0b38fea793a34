"""`--switches`: each opt-in per-fit speed switch timed beside its recipe unchanged, since a switch is worth turning
on only where it is clearly faster there (bf16 autocast only where the chip computes in bf16 natively)."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from fmnist.bench.configs import compose_run, resident_datamodule
from fmnist.bench.loops import time_framework
from fmnist.bench.report import spread
from fmnist.training.builders import build_module, build_trainer

SWITCHES: dict[str, tuple[str, ...]] = {
    "fused Adam": ("optimizer.foreach=false", "+optimizer.fused=true"),
    "torch.compile": ("model.compile=true",),
    "channels-last": ("model.channels_last=true",),
    "bf16 autocast": ("trainer.precision=bf16-mixed",),
}
VALIDATION_SWITCH = "eval batch"  # the name `only` selects EVAL_BATCH_SIZES by
EVAL_BATCH_SIZES = (256, 1024, 4096)  # data.eval_batch_size, default 1024
log = logging.getLogger("fmnist.bench")


def validation_seconds(cfg: DictConfig, probe: L.Trainer, run_dir: Path) -> float:
    """One pass over the validation fold with an untrained model, after a warm-up pass."""
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
    timings: dict[str, list[tuple[float, float]]] = {"baseline": [], "switched": []}  # (ms/step, fit seconds)
    for repeat in range(repeats):
        for label, cfg in cfgs.items():
            started = time.perf_counter()  # the whole fit: set-up, compile and warm-up too
            timing = time_framework(cfg, resident_datamodule(cfg, probe), steps, warmup, work_dir / f"{label}{repeat}")
            timings[label].append((timing.ms_per_step, time.perf_counter() - started))
    ratios = [switched / baseline for (baseline, _), (switched, _) in zip(*timings.values(), strict=True)]
    row = {"experiment": experiment, "switch": name, "overrides": list(SWITCHES[name]), "steps": steps,
           **{f"{label}_ms_per_step": statistics.median(ms for ms, _ in runs) for label, runs in timings.items()},
           "ratio": spread(ratios),
           **{f"{label}_first_fit_seconds": runs[0][1] for label, runs in timings.items()}}
    log.info("%s, %s: %.2f -> %.2f ms/step (x%.3f); first fit %.1f s -> %.1f s", experiment, name,
             row["baseline_ms_per_step"], row["switched_ms_per_step"], row["ratio"]["median"],
             row["baseline_first_fit_seconds"], row["switched_first_fit_seconds"])
    return row


def validation_rows(experiment: str, base: list[str], probe: L.Trainer, work_dir: Path) -> list[dict[str, Any]]:
    """One validation pass per eval batch size, as a ratio to the recipe's own eval batch size."""
    seconds = {size: validation_seconds(compose_run([*base, f"data.eval_batch_size={size}"], work_dir), probe,
                                        work_dir / f"val{size}") for size in EVAL_BATCH_SIZES}
    default = seconds.get(int(compose_run(base, work_dir).data.eval_batch_size))
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
