"""`--switches`: each opt-in per-fit speed switch timed beside its recipe unchanged, since a switch is worth turning
on only where it is clearly faster there (bf16 autocast only where the chip computes in bf16 natively)."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L

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
    """One pass over the validation fold with an untrained model, after a warm-up pass, per eval batch size, as a
    ratio to the recipe's own eval batch size."""
    seconds = {}
    for size in EVAL_BATCH_SIZES:
        cfg = compose_run([*base, f"data.eval_batch_size={size}"], work_dir)
        datamodule, module = resident_datamodule(cfg, probe), build_module(cfg)
        trainer = build_trainer(cfg, work_dir / f"val{size}")
        trainer.validate(module, datamodule=datamodule, verbose=False)
        started = time.perf_counter()
        trainer.validate(module, datamodule=datamodule, verbose=False)
        seconds[size] = time.perf_counter() - started
        log.info("%s, validation at eval batch %d: %.2f s", experiment, size, seconds[size])
    default = seconds.get(int(compose_run(base, work_dir).data.eval_batch_size))
    return [{"experiment": experiment, "switch": f"data.eval_batch_size={size}",
             "overrides": [f"data.eval_batch_size={size}"], "validation_seconds": value,
             "ratio": {"median": value / default} if default else None} for size, value in seconds.items()]


def switch_report(experiments: list[str], overrides: list[str], probe: L.Trainer, work_dir: Path, *,
                  steps: int, warmup: int, repeats: int, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Per recipe at 5 folds without a logger, every switch (or those named in `only`) at `steps` optimizer steps
    rounded to whole groups."""
    rows = []
    for experiment in experiments:
        run_dir = work_dir / experiment
        base = [f"experiment={experiment}", "data.num_folds=5", "logger=none", *overrides]
        cfg = compose_run(base, run_dir)
        if str(cfg.scheduler.monitor or "").startswith("val/"):  # timed fits skip validation: a plateau schedule
            base.append("scheduler.monitor=train/loss")  # (study C's) reads the training loss, once an epoch too
        per_group = int(cfg.data.steps_per_execution)
        group_steps = max(per_group, steps // per_group * per_group)
        for name in SWITCHES:
            if only is None or name in only:
                rows.append(time_switch(experiment, name, base, probe, run_dir, group_steps, warmup, repeats))
        if only is None or VALIDATION_SWITCH in only:
            rows.extend(validation_rows(experiment, base, probe, run_dir))
    return rows
