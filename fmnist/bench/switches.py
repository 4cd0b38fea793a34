"""Each per-fit speed switch timed side by side with what it replaces, on a study recipe (`--switches`).

The switches are public API and opt-in: fused Adam (instead of the default foreach step), `torch.compile`
(its compile time counted in the first fit's seconds), channels-last weights and batches, bf16 autocast through
Lightning's precision plugin (`trainer.precision=bf16-mixed`: fast only where the CPU or GPU computes in bf16
natively, which the report says), and the inference batch size of validation. A switch is worth turning on only
where its ratio is well below 1 and its results stay within float noise of the default's (docs/speed.md).
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from fmnist.bench.configs import compose_run
from fmnist.bench.framework import time_framework
from fmnist.bench.overhead import resident_datamodule
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
    datamodule = resident_datamodule(cfg, probe)
    timing = time_framework(cfg, datamodule, steps, warmup, run_dir)
    return timing.ms_per_step, time.perf_counter() - started


def validation_seconds(cfg: DictConfig, probe: L.Trainer, eval_batch_size: int, run_dir: Path) -> float:
    """One pass over the validation fold (12,000 images at 5 folds) with an untrained model."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.data.eval_batch_size = eval_batch_size
    datamodule = resident_datamodule(cfg, probe)
    module = build_module(cfg)
    trainer = build_trainer(cfg, run_dir)
    trainer.validate(module, datamodule=datamodule, verbose=False)  # warm-up: first-call allocations
    started = time.perf_counter()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return time.perf_counter() - started


def switch_report(experiments: list[str], overrides: list[str], probe: L.Trainer, work_dir: Path, *,
                  steps: int, warmup: int, repeats: int, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Per recipe and switch (all, or those named in `only`): baseline and switched ms/step alternating `repeats`
    times, their median ratio, and the first fit's seconds of each (where torch.compile's compile time shows)."""
    chosen = {name: switch for name, switch in SWITCHES.items() if only is None or name in only}
    rows = []
    for experiment in experiments:
        base_overrides = [f"experiment={experiment}", "data.num_folds=5", "logger=none", *overrides]
        base = compose_run(base_overrides, work_dir / experiment)
        if str(base.scheduler.monitor or "").startswith("val/"):
            # a timed fit runs no validation, which a plateau schedule (study C's) monitors: it reads the training
            # loss instead, one step an epoch either way
            base_overrides.append("scheduler.monitor=train/loss")
            base = compose_run(base_overrides, work_dir / experiment)
        per_group = int(base.data.steps_per_execution)
        group_steps = max(per_group, steps // per_group * per_group)
        for name, switch in chosen.items():
            switched = compose_run([*base_overrides, *switch], work_dir / experiment)
            timings: dict[str, list[tuple[float, float]]] = {"baseline": [], "switched": []}
            for repeat in range(repeats):  # A B A B ...: drift hits both alike
                for label, cfg in (("baseline", base), ("switched", switched)):
                    timings[label].append(timed_fit(cfg, probe, group_steps, warmup,
                                                    work_dir / experiment / f"{label}{repeat}"))
            ratios = [switched_ms / base_ms for (base_ms, _), (switched_ms, _)
                      in zip(timings["baseline"], timings["switched"], strict=True)]
            row = {"experiment": experiment, "switch": name, "overrides": list(switch), "steps": group_steps,
                   "baseline_ms_per_step": statistics.median(ms for ms, _ in timings["baseline"]),
                   "switched_ms_per_step": statistics.median(ms for ms, _ in timings["switched"]),
                   "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
                   "baseline_first_fit_seconds": timings["baseline"][0][1],
                   "switched_first_fit_seconds": timings["switched"][0][1]}
            log.info("%s, %s: %.2f -> %.2f ms/step (x%.3f); first fit %.1f s -> %.1f s", experiment, name,
                     row["baseline_ms_per_step"], row["switched_ms_per_step"], row["ratio"]["median"],
                     row["baseline_first_fit_seconds"], row["switched_first_fit_seconds"])
            rows.append(row)
        if only is not None and VALIDATION_SWITCH not in only:
            continue
        seconds = {size: validation_seconds(base, probe, size, work_dir / experiment / f"val{size}")
                   for size in EVAL_BATCH_SIZES}
        default = seconds[int(base.data.eval_batch_size)] if int(base.data.eval_batch_size) in seconds else None
        for size, value in seconds.items():
            rows.append({"experiment": experiment, "switch": f"data.eval_batch_size={size}",
                         "overrides": [f"data.eval_batch_size={size}"], "validation_seconds": value,
                         "ratio": {"median": value / default} if default else None})
            log.info("%s, validation at eval batch %d: %.2f s", experiment, size, value)
    return rows


def switches_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| experiment | switch | baseline ms/step | switched ms/step | ratio median (min-max) | first fit s "
             "(baseline -> switched) |", "|---|---|---|---|---|---|"]
    for row in rows:
        if "validation_seconds" in row:
            ratio = row["ratio"]["median"] if row["ratio"] else None
            lines.append(f"| {row['experiment']} | `{row['switch']}` (one validation pass) | | "
                         f"{row['validation_seconds']:.2f} s | {'' if ratio is None else f'{ratio:.3f}'} | |")
            continue
        ratio = row["ratio"]
        lines.append(f"| {row['experiment']} | {row['switch']} | {row['baseline_ms_per_step']:.2f} | "
                     f"{row['switched_ms_per_step']:.2f} | {ratio['median']:.3f} ({ratio['min']:.3f}-"
                     f"{ratio['max']:.3f}) | {row['baseline_first_fit_seconds']:.1f} -> "
                     f"{row['switched_first_fit_seconds']:.1f} |")
    return "\n".join(lines) + "\n"
