"""A whole study timed two ways in one run (`--study study_a`): its fits one after another, each with every core,
and the parallel command (`python -m fmnist.cv -m study=study_a`: one-fold jobs side by side, one share of the
cores each). Wall time, CPU time, where the time went per model, and each model's accuracy under both."""

from __future__ import annotations

import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fmnist.core.run_files import METRICS_FILE, RUN_INFO_FILE, SUMMARY_FILE
from fmnist.training.process import available_cores

VARIANTS: dict[str, tuple[str, ...]] = {
    "sequential": ("hydra.launcher.n_jobs=1",),   # one fit after another in one process, torch's own threads
    "parallel": (),                               # the study config's joblib launcher: a job per core
}
log = logging.getLogger("fmnist.bench")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_study(study: str, overrides: list[str], sweep_dir: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "fmnist.cv", "-m", f"study={study}", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    cpu_before, started = children_cpu_seconds(), time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu_before
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return {"command": " ".join(["python", *command[1:]]), "wall_seconds": wall, "cpu_seconds": cpu,
            "models": per_model(sweep_dir)}


def per_model(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Per model dir: fits, mean val/test accuracy, seconds in fit (training and per-epoch validation) and in the
    rest of each job (start-up, data, the final validation and test), from the files the jobs wrote."""
    models = {}
    for run_dir in sorted(path for path in sweep_dir.iterdir() if path.is_dir()):
        folds = [json.loads(path.read_text()) | {"job_seconds": path.stat().st_mtime - (path.parent /
                 RUN_INFO_FILE).stat().st_mtime} for path in sorted(run_dir.glob(f"fold_*/{METRICS_FILE}"))]
        if not folds:
            continue
        models[run_dir.name] = {
            "fits": len(folds),
            "val_acc": statistics.fmean(fold["val/acc"] for fold in folds),
            "test_acc": statistics.fmean(fold["test/acc"] for fold in folds),
            "fit_seconds": sum(fold["train_seconds"] for fold in folds),
            "other_seconds": sum(fold["job_seconds"] - fold["train_seconds"] for fold in folds),
        }
    return models


def finished_study(sweep_dir: Path, reference: Path | None) -> dict[str, Any]:
    """A study already run (e.g. at its full budget, too long to run twice here): its span from the first job's
    start to the last job's end, job time per model, and accuracy against `reference`."""
    starts = [path.stat().st_mtime for path in sweep_dir.glob(f"*/fold_*/{RUN_INFO_FILE}")]
    ends = [path.stat().st_mtime for path in sweep_dir.glob(f"*/fold_*/{METRICS_FILE}")]
    if not starts or not ends:
        raise FileNotFoundError(f"{sweep_dir} holds no finished fold (*/fold_*/{METRICS_FILE})")
    run = {"command": f"python -m fmnist.cv -m study={sweep_dir.name} hydra.sweep.dir={sweep_dir}", "wall_seconds":
           max(ends) - min(starts), "cpu_seconds": None, "models": per_model(sweep_dir)}
    return {"study": sweep_dir.name, "overrides": [], "cores": available_cores(), "runs": {"parallel": run},
            "speedup": None, "max_val_acc_difference": None, "reference": reference_accuracy(reference),
            "reference_dir": str(reference) if reference else None}


def reference_accuracy(reference: Path | None) -> dict[str, float]:
    """Mean validation accuracy per model of a committed study (e.g. docs/results/study_a)."""
    if reference is None:
        return {}
    return {path.parent.name: json.loads(path.read_text())["mean"]["val/acc"]
            for path in sorted(reference.glob(f"*/{SUMMARY_FILE}"))}


def study_report(study: str, overrides: list[str], work_dir: Path, reference: Path | None) -> dict[str, Any]:
    runs = {}
    for name, variant in VARIANTS.items():
        log.info("study %s, %s ...", study, name)
        runs[name] = run_study(study, [*variant, *overrides], work_dir / name)
        log.info("study %s, %s: %.0f s wall, %.0f s CPU", study, name, runs[name]["wall_seconds"],
                 runs[name]["cpu_seconds"])
    sequential, parallel = runs["sequential"], runs["parallel"]
    accuracy_gap = max((abs(parallel["models"][model]["val_acc"] - values["val_acc"])
                        for model, values in sequential["models"].items() if model in parallel["models"]),
                       default=None)
    return {"study": study, "overrides": overrides, "cores": available_cores(), "runs": runs,
            "speedup": sequential["wall_seconds"] / parallel["wall_seconds"],
            "max_val_acc_difference": accuracy_gap, "reference": reference_accuracy(reference),
            "reference_dir": str(reference) if reference else None}


def study_markdown(report: dict[str, Any]) -> str:
    runs, reference = report["runs"], report["reference"]
    budget = " ".join(report["overrides"]) or "its own budgets"
    lines = [f"Study `{report['study']}` at {budget}, {report['cores']} cores"
             + (f": parallel / sequential wall time = {1 / report['speedup']:.3f} (speed-up {report['speedup']:.2f}x)."
                if report["speedup"] else "."), "", "| run | wall | CPU time | command |", "|---|---|---|---|"]
    for name, run in runs.items():
        cpu = "" if run["cpu_seconds"] is None else f"{run['cpu_seconds'] / 60:.1f} min"
        lines.append(f"| {name} | {run['wall_seconds'] / 60:.1f} min | {cpu} | `{run['command']}` |")
    names = list(runs)
    header = ["model", "fits", *(f"{name} val acc" for name in names), *(["reference val acc"] if reference else []),
              *(f"{name}: s in fit / s in the rest of the jobs" for name in names)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, values in runs[names[-1]]["models"].items():
        per_run = [runs[name]["models"].get(model, {}) for name in names]
        cells = [model, str(values["fits"]), *(f"{100 * run['val_acc']:.2f}" if run else "-" for run in per_run)]
        if reference:
            cells.append(f"{100 * reference[model]:.2f}" if model in reference else "-")
        cells += [f"{run['fit_seconds']:.0f} / {run['other_seconds']:.0f}" if run else "-" for run in per_run]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
