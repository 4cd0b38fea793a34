"""metrics.json, one run's figures and how it ended: the one module that writes, reads and checks it (a completed
run's file may come from anyone, so metrics_problem checks it before it counts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fmnist.core.atomic import write_json_atomic
from fmnist.core.constants import NUM_CLASSES
from fmnist.core.limits import clip, model_name_problem
from fmnist.core.numbers import is_finite_number, is_int, is_real
from fmnist.core.run_files import METRICS_FILE, RunFileError, read_run_json

COMPLETED = "completed"
FAILED = "failed"
INTERRUPTED = "interrupted"  # stopped by SIGTERM or SIGINT; its last.ckpt continues it (fmnist.resume)
PRUNED = "pruned"  # stopped early by a hyperparameter search's pruner (fmnist.search.trial); not a failure
# The data.* settings that make two runs' validation sets the same; metrics.json records each, an integer or null.
SPLIT_KEYS = ("num_folds", "fold", "split_seed", "holdout_size", "train_subset", "inner_folds", "inner_fold")
SHARE = re.compile(r"(train|val|test)/(class_)?(acc|precision|recall|f1)(/.*)?")  # fractions in [0, 1]
NON_NEGATIVE = ("params", "epochs", "ms_per_step", "images_per_second", "train_seconds")
# key -> smallest allowed value (None: any integer); each may also be null
INTEGERS = {"fold": 0, "seed": None, "split_seed": None, "num_folds": 2, "holdout_size": 0, "train_subset": 1,
            "inner_folds": 2, "inner_fold": 0, "best_epoch": 0}


def run_identity(cfg: Any) -> dict[str, Any]:
    """The fields every metrics.json a run writes starts with, whatever ended it: which run it is."""
    from omegaconf import OmegaConf

    return {"model": OmegaConf.select(cfg, "model.name"), "seed": OmegaConf.select(cfg, "seed"),
            "tags": list(OmegaConf.select(cfg, "tags") or []),
            **{key: OmegaConf.select(cfg, f"data.{key}") for key in SPLIT_KEYS}}


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Replace the run's metrics.json atomically (a crash leaves the old file or the new one); `metrics` back."""
    write_json_atomic(run_dir / METRICS_FILE, metrics)
    return metrics


def write_stopped(cfg: Any, run_dir: Path, status: str, error: str, **fields: Any) -> dict[str, Any]:
    """metrics.json of a run that stopped before its test (INTERRUPTED, PRUNED): who it is, `fields`, why."""
    return write_metrics(run_dir, {**run_identity(cfg), **fields, "status": status, "error": error})


def write_failure(run_dir: Path, error: str, **fields: Any) -> None:
    """Mark a run FAILED; figures it had already written stay in the file, `fields` that are None add nothing."""
    try:
        previous = read_metrics(run_dir)
    except RunFileError:  # none yet, or not a readable JSON object: the failure is recorded afresh
        previous = {}
    write_metrics(run_dir, {**previous, **{key: value for key, value in fields.items() if value is not None},
                            "status": FAILED, "error": error})


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's metrics.json, a JSON object (unchecked: see metrics_problem), or RunFileError."""
    return read_run_json(run_dir / METRICS_FILE)


def completed_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's metrics if it completed and they pass metrics_problem, else None (missing, half-written by a crash,
    failed, interrupted, pruned or not what fmnist writes)."""
    try:
        metrics = read_metrics(run_dir)
    except RunFileError:
        return None
    return metrics if metrics.get("status") == COMPLETED and metrics_problem(metrics) is None else None


def metrics_problem(metrics: dict[str, Any]) -> str | None:
    """Why a completed run's metrics.json cannot be counted, or None."""
    problem = model_name_problem(metrics.get("model"))
    if problem:
        return f"model {problem}"
    if "val/acc" not in metrics:
        return "val/acc is missing"
    for key, value in metrics.items():
        problem = value_problem(key, value)
        if problem is not None:
            return problem
    return None


def value_problem(key: str, value: Any) -> str | None:
    """Why this metrics.json entry is unusable, or None (keys no reader uses are not checked)."""
    if key == "test/confusion":
        return _confusion_problem(value)
    if key in INTEGERS:
        smallest = INTEGERS[key]
        if value is None or (is_int(value) and (smallest is None or value >= smallest)):
            return None
        return f"{key} is {clip(repr(value), 60)}, expected an integer" + (f" >= {smallest}" if smallest else "")
    share = SHARE.fullmatch(key) is not None
    if not share and key not in NON_NEGATIVE:
        # NaN and infinity pass here (a diverged run's loss); shares and counts are checked further below
        if key.startswith(("train/", "val/", "test/")) and value is not None and not is_real(value):
            return f"{key} is {clip(repr(value), 60)}, expected a number"
        return None
    if value is None and key != "val/acc":
        return None
    if not is_finite_number(value):
        return f"{key} is {clip(repr(value), 60)}, expected a finite number"
    if share and not 0.0 <= value <= 1.0:
        return f"{key} is {value}, expected a share in [0, 1]"
    if value < 0:
        return f"{key} is {value}, expected a non-negative number"
    return None


def _confusion_problem(value: Any) -> str | None:
    rows = value if isinstance(value, list) and len(value) == NUM_CLASSES else None
    if rows is None or any(not isinstance(row, list) or len(row) != NUM_CLASSES for row in rows):
        return f"test/confusion is not a {NUM_CLASSES}x{NUM_CLASSES} list of lists"
    if any(not is_int(cell) or cell < 0 for row in rows for cell in row):
        return "test/confusion holds something other than counts"
    return None


def split_of(metrics: dict[str, Any]) -> tuple:
    """What makes two runs' validation sets the same: k-fold leaves the split seed out (a repeated k-fold pairs by
    (split seed, fold)), a holdout keeps it (it picks the train subset)."""
    holdout = metrics.get("holdout_size")
    return (metrics.get("split_seed") if holdout else "folds", None if holdout else metrics.get("num_folds"),
            holdout, metrics.get("train_subset"), metrics.get("inner_folds"), metrics.get("inner_fold"))
