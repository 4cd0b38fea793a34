"""`python -m fmnist.cv model=<name> data.num_folds=5`: k-fold cross-validation, then `cv_summary.json`.

Every fold is an ordinary `fit_and_test` run (fresh module, trainer, callbacks, logger) in `<run dir>/fold_<k>/`,
so each fold reads like a train run; TensorBoard versions are `<run dir>/tensorboard/fold_<k>`.
Re-running the same command in the same run dir (`hydra.run.dir=<it>`) skips completed folds and resumes an
interrupted one from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from fmnist.core.atomic import write_json_atomic
from fmnist.core.cli import exit_unless_output_writable, run_guarded
from fmnist.core.config_dir import CONF_DIR
from fmnist.core.errors import ConfigError
from fmnist.core.job_failures import describe, write_failure
from fmnist.core.run_files import (
    COMPLETED,
    METRICS_FILE,
    PREDICTIONS_FILE,
    SUMMARY_FILE,
)
from fmnist.inference.ensemble import ensemble_test_metrics
from fmnist.train import fit_and_test
from fmnist.training.checkpoints import LAST, last_checkpoint
from fmnist.training.config_checks import check_train_config
from fmnist.training.process import apply_process_settings

# Per-fold figures summarised besides every "<stage>/..." scalar.
EXTRA_SCALARS = ("params", "epochs", "best_epoch", "train_seconds", "ms_per_step", "images_per_second")
log = logging.getLogger("fmnist.cv")


def fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold_{fold}"


def completed_metrics(directory: Path) -> dict[str, Any] | None:
    """A fold's metrics if it finished, else None (missing, half-written by a crash, or failed)."""
    try:
        metrics = json.loads((directory / METRICS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return metrics if metrics.get("status") == COMPLETED else None


def selected_folds(cfg: DictConfig) -> list[int]:
    if cfg.data.holdout_size is not None:
        raise ConfigError("data.holdout_size", "cross-validation needs folds, not a holdout",
                          "set data.holdout_size=null (or use python -m fmnist.train for a holdout run)")
    if cfg.ckpt_path not in (None, LAST):
        raise ConfigError("ckpt_path", "one checkpoint cannot start every fold",
                          "leave ckpt_path null; re-run the same command with hydra.run.dir=<the CV run dir> "
                          "to resume it")
    num_folds = cfg.data.num_folds
    folds = list(range(num_folds)) if cfg.cv.folds is None else list(cfg.cv.folds)
    bad = [fold for fold in folds if not isinstance(fold, int) or not 0 <= fold < num_folds]
    if bad or not folds or len(set(folds)) != len(folds):
        raise ConfigError("cv.folds", f"{folds!r} is not a list of distinct folds of {num_folds}",
                          f"use null for all, or e.g. cv.folds=[0,1] with values in 0..{num_folds - 1}")
    return folds


def fold_config(cfg: DictConfig, fold: int, run_dir: Path) -> DictConfig:
    """The run config of one fold: its own output dir; the loggers of all folds share the run dir."""
    fold_cfg = copy.deepcopy(cfg)
    with open_dict(fold_cfg):
        fold_cfg.data.fold = fold
        fold_cfg.paths.output_dir = str(fold_dir(run_dir, fold))
        fold_cfg.ckpt_path = LAST  # an interrupted fold continues from its own last.ckpt, a new one starts fresh
        if fold_cfg.get("logger") and "save_dir" in fold_cfg.logger:
            fold_cfg.logger.save_dir = str(run_dir)
    return fold_cfg


def run_fold(cfg: DictConfig, fold: int, run_dir: Path) -> dict[str, Any]:
    directory = fold_dir(run_dir, fold)
    done = completed_metrics(directory)
    if done is not None:
        log.info("fold %d already completed (%s); skipped", fold, directory / METRICS_FILE)
        return done
    fold_cfg = fold_config(cfg, fold, run_dir)
    if last_checkpoint(directory).is_file():
        log.info("fold %d resumes from its last checkpoint", fold)
    try:
        return fit_and_test(fold_cfg, directory)
    except Exception as exc:
        write_failure(directory, describe(exc), model=cfg.model.name, fold=fold)
        raise


def is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarize(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold values of every scalar, and their mean and sample standard deviation (ddof=1) over folds."""
    keys = [key for key, value in folds[0].items()
            if is_scalar(value) and ("/" in key or key in EXTRA_SCALARS)]
    per_fold = {key: [fold.get(key) for fold in folds] for key in keys}
    mean, std = {}, {}
    for key, values in per_fold.items():
        numbers = [value for value in values if is_scalar(value)]
        if len(numbers) == len(values):
            mean[key] = statistics.fmean(numbers)
            std[key] = statistics.stdev(numbers) if len(numbers) > 1 else None
    return {"per_fold": per_fold, "mean": mean, "std": std, "std_ddof": 1}


def cross_validate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    check_train_config(cfg)
    folds = selected_folds(cfg)
    results = [run_fold(cfg, fold, run_dir) for fold in folds]
    summary: dict[str, Any] = {
        "model": cfg.model.name,
        "num_folds": cfg.data.num_folds,
        "folds": folds,
        "fold_dirs": [str(fold_dir(run_dir, fold)) for fold in folds],
        **summarize(results),
        "fold_test": [{"fold": fold, **{key: value for key, value in result.items() if key.startswith("test/")}}
                      for fold, result in zip(folds, results, strict=True)],
    }
    predictions = [fold_dir(run_dir, fold) / PREDICTIONS_FILE for fold in folds]
    if cfg.cv.ensemble and all(path.is_file() for path in predictions):
        summary["ensemble"] = ensemble_test_metrics(predictions)
    elif cfg.cv.ensemble:  # e.g. data-parallel folds, whose processes each tested a shard
        log.warning("no fold ensemble: some folds wrote no %s", PREDICTIONS_FILE)
    summary["status"] = COMPLETED
    write_json_atomic(run_dir / SUMMARY_FILE, summary)
    log.info("%s: %d-fold CV val/acc %.4f +- %.4f%s; summary in %s", cfg.model.name, len(folds),
             summary["mean"]["val/acc"], summary["std"]["val/acc"] or 0.0,
             f", ensemble test/acc {summary['ensemble']['test/acc']:.4f}" if "ensemble" in summary else "",
             run_dir / SUMMARY_FILE)
    return summary


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="cv")
def main(cfg: DictConfig) -> float:
    """Return the mean validation accuracy over folds: what a sweeper should optimise (never the test set)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    apply_process_settings(cfg.process)
    summary = run_guarded(lambda: cross_validate(cfg, run_dir))
    return float(summary["mean"]["val/acc"])


if __name__ == "__main__":
    exit_unless_output_writable(sys.argv[1:])
    main()
