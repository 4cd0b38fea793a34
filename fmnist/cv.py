"""`python -m fmnist.cv model=<name> data.num_folds=5`: k-fold cross-validation (`cv.repeats=r`: over r split seeds),
each fold an ordinary `fit_and_test` run in `fold_<k>/`, then `cv_summary.json`; a rerun skips completed folds."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

from fmnist.core.atomic import write_json_atomic
from fmnist.core.checkpoints import LAST, last_checkpoint
from fmnist.core.command import hydra_command
from fmnist.core.console import print_summary
from fmnist.core.errors import ConfigError, RunInterrupted
from fmnist.core.job_failures import describe
from fmnist.core.metric_keys import run_scalars
from fmnist.core.metrics_file import COMPLETED, PRUNED, completed_metrics, write_failure
from fmnist.core.numbers import is_finite_number, is_int, mean_and_std, percent
from fmnist.core.run_files import METRICS_FILE, PREDICTIONS_FILE, SUMMARY_FILE, TRIAL_CALLBACK
from fmnist.data.folds import check_split_seed
from fmnist.inference.ensemble import ensemble_test_metrics
from fmnist.search.trial import JobTrial, RunPruned, record_pruned, trial_spec
from fmnist.train import fit_and_test
from fmnist.training.config_checks import check_train_config
from fmnist.training.loggers import share_run_dir

log = logging.getLogger("fmnist.cv")


def repeat_dir(run_dir: Path, split_seed: int | None = None, base_seed: int | None = None) -> Path:
    """Where one partition's folds live: the run dir for the first (data.split_seed), a subfolder for repeats."""
    return run_dir if split_seed == base_seed else run_dir / f"split_seed_{split_seed}"


def fold_dir(run_dir: Path, fold: int, split_seed: int | None = None, base_seed: int | None = None) -> Path:
    return repeat_dir(run_dir, split_seed, base_seed) / f"fold_{fold}"


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


def selected_splits(cfg: DictConfig) -> list[int]:
    """The split seeds of a repeated k-fold: data.split_seed, data.split_seed + 1, ... (cv.repeats of them)."""
    repeats = cfg.cv.get("repeats", 1)
    if not is_int(repeats) or repeats < 1:
        raise ConfigError("cv.repeats", f"{repeats!r} is not a positive number of repeats",
                          "use cv.repeats=1 (plain k-fold) or more, e.g. cv.repeats=3")
    base = cfg.data.split_seed
    if not is_int(base):
        raise ConfigError("data.split_seed", f"{base!r} is not an integer", "use e.g. data.split_seed=0")
    return [check_split_seed(base + repeat) for repeat in range(repeats)]


def fold_config(cfg: DictConfig, fold: int, run_dir: Path, split_seed: int | None = None) -> DictConfig:
    """The run config of one fold: its own output dir; the loggers of all folds of one partition share its dir
    (the run dir for data.split_seed's folds, split_seed_<s>/ for a repeat's)."""
    fold_cfg = copy.deepcopy(cfg)
    base = cfg.data.split_seed
    split_seed = base if split_seed is None else split_seed
    shared = repeat_dir(run_dir, split_seed, base)
    with open_dict(fold_cfg):
        fold_cfg.data.fold = fold
        fold_cfg.data.split_seed = split_seed
        # every logger's save_dir (and MLflow's store) resolved against the shared dir: one TensorBoard dir with a
        # version per fold, one MLflow store with a run per fold
        fold_cfg.paths.output_dir = str(shared)
        share_run_dir(fold_cfg.get("logger"))
        fold_cfg.paths.output_dir = str(shared / f"fold_{fold}")
        fold_cfg.ckpt_path = LAST  # an interrupted fold continues from its own last.ckpt, a new one starts fresh
        if fold_cfg.get("callbacks") and TRIAL_CALLBACK in fold_cfg.callbacks:
            del fold_cfg.callbacks[TRIAL_CALLBACK]  # a search's trial hears the mean over folds, not each fold's epochs
    return fold_cfg


def run_fold(cfg: DictConfig, fold: int, run_dir: Path, split_seed: int) -> dict[str, Any]:
    fold_cfg = fold_config(cfg, fold, run_dir, split_seed)
    directory = Path(fold_cfg.paths.output_dir)
    done = completed_metrics(directory)
    if done is not None:
        log.info("fold %d (split seed %d) already completed (%s); skipped", fold, split_seed, directory / METRICS_FILE)
        return done
    if last_checkpoint(directory).is_file():
        log.info("fold %d (split seed %d) resumes from its last checkpoint", fold, split_seed)
    try:
        return fit_and_test(fold_cfg, directory)
    except Exception as exc:  # not RunInterrupted (a SystemExit): fit_and_test marked that fold "interrupted"
        write_failure(directory, describe(exc), model=cfg.model.name, fold=fold)
        raise


def summarize(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold values of every scalar, and their mean and sample standard deviation (ddof=1) over folds."""
    keys = list(run_scalars(folds[0]))
    per_fold = {key: [fold.get(key) for fold in folds] for key in keys}
    mean, std = {}, {}
    for key, values in per_fold.items():
        if all(is_finite_number(value) for value in values):
            mean[key], std[key] = mean_and_std(values)
    return {"per_fold": per_fold, "mean": mean, "std": std, "std_ddof": 1}


def build_summary(run_dir: Path, folds: list[int], results: list[dict[str, Any]], ensemble: bool,
                  split_seeds: list[int] | None = None) -> dict[str, Any]:
    """cv_summary.json's content, from the folds' metrics (and test predictions for the ensemble); a repeated
    k-fold gives each fold's split seed (`split_seeds`, the first data.split_seed), a plain one None."""
    seeds = split_seeds or [None] * len(folds)
    base = seeds[0]
    directories = [fold_dir(run_dir, fold, seed, base) for fold, seed in zip(folds, seeds, strict=True)]
    summary: dict[str, Any] = {
        "model": results[0]["model"],
        "num_folds": results[0]["num_folds"],
        "folds": folds,
        **({"split_seeds": split_seeds} if split_seeds else {}),
        "fold_dirs": [str(directory) for directory in directories],
        **summarize(results),
        "fold_test": [{"fold": fold, **({"split_seed": seed} if split_seeds else {}),
                       **{key: value for key, value in result.items() if key.startswith("test/")}}
                      for fold, seed, result in zip(folds, seeds, results, strict=True)],
    }
    predictions = [directory / PREDICTIONS_FILE for directory in directories]
    if ensemble and all(path.is_file() for path in predictions):
        summary["ensemble"] = ensemble_test_metrics(predictions)
    elif ensemble:  # e.g. data-parallel folds, whose processes each tested a shard
        log.warning("no fold ensemble: some folds wrote no %s", PREDICTIONS_FILE)
    summary["status"] = COMPLETED
    return summary


def cross_validate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    check_train_config(cfg)
    folds = selected_folds(cfg)
    splits = selected_splits(cfg)
    units = [(split_seed, fold) for split_seed in splits for fold in folds]
    spec = trial_spec(cfg)
    trial = JobTrial(spec) if spec is not None else None  # a search's trial: pruned on its running mean
    results: list[dict[str, Any]] = []
    pruned: RunPruned | None = None
    for split_seed, fold in units:
        results.append(run_fold(cfg, fold, run_dir, split_seed))
        if trial is not None:
            try:  # the mean of the folds so far, after each fold: a bad configuration stops after its first
                trial.report(sum(float(result["val/acc"]) for result in results) / len(results), len(results) - 1)
            except RunPruned as stop:
                pruned = stop
                break
    units = units[:len(results)]
    repeated = [split_seed for split_seed, _ in units] if len(splits) > 1 else None
    summary = build_summary(run_dir, [fold for _, fold in units], results, cfg.cv.ensemble and pruned is None,
                            repeated)
    if pruned is not None:
        summary["status"] = PRUNED
        record_pruned(cfg, run_dir, pruned, unit="fold")  # metrics.json "pruned" in the CV run dir, for reports
    if cfg.cv.write_summary:
        write_json_atomic(run_dir / SUMMARY_FILE, summary)
    log.info("%s: %d-fold CV%s val/acc %.4f +- %.4f%s; %s", cfg.model.name, len(folds),
             f" x {len(splits)} split seeds" if len(splits) > 1 else "",
             summary["mean"]["val/acc"], summary["std"]["val/acc"] or 0.0,
             f", ensemble test/acc {summary['ensemble']['test/acc']:.4f}" if "ensemble" in summary else "",
             f"summary in {run_dir / SUMMARY_FILE}" if cfg.cv.write_summary else f"folds in {run_dir}")
    return summary


def summarize_completed_folds(run_dir: Path, folds: list[int], ensemble: bool = True) -> dict[str, Any] | None:
    """Write `run_dir`'s cv_summary.json over `folds` once every one has completed, else return None: a study's
    one-fold jobs each call it, so the job that finishes last joins them."""
    results = [completed_metrics(fold_dir(run_dir, fold)) for fold in folds]
    if any(result is None for result in results):
        return None
    summary = build_summary(run_dir, folds, results, ensemble)  # type: ignore[arg-type]
    write_json_atomic(run_dir / SUMMARY_FILE, summary)
    log.info("%s: %d-fold CV val/acc %.4f +- %.4f; summary in %s", summary["model"], len(folds),
             summary["mean"]["val/acc"], summary["std"]["val/acc"] or 0.0, run_dir / SUMMARY_FILE)
    return summary


class SummarizeFolds(Callback):
    """Hydra callback of a study (conf/study/study_a.yaml): summarize_completed_folds after each one-fold job."""

    def __init__(self, folds: list[int] | None = None, ensemble: bool = True) -> None:
        self.folds = None if folds is None else [int(fold) for fold in folds]
        self.ensemble = ensemble

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.COMPLETED:
            return
        folds = self.folds if self.folds is not None else list(range(int(config.data.num_folds)))
        summarize_completed_folds(Path(str(config.hydra.runtime.output_dir)), folds, self.ensemble)


def cv(cfg: DictConfig, run_dir: Path) -> float:
    """The job of `python -m fmnist.cv`: return the mean validation accuracy over folds, what a sweeper should
    optimise (never the test set)."""
    summary = cross_validate(cfg, run_dir)
    if rank_zero_only.rank == 0 and cfg.cv.write_summary:  # a study's one-fold jobs: its callback reports the CV
        print_cv_summary(cfg, summary, run_dir)
    return float(summary["mean"]["val/acc"])


def unfinished_fold(stop: RunInterrupted, run_dir: Path) -> str:
    """The completed folds stay; re-running the command resumes the stopped one from its last checkpoint."""
    return (f"{stop.run_dir.name} of {run_dir} is unfinished; continue the cross-validation by re-running the same "
            f"command with hydra.run.dir={run_dir}")


def print_cv_summary(cfg: DictConfig, summary: dict[str, Any], run_dir: Path) -> None:
    """Mean +- std over folds of val and test accuracy and macro F1, the fold ensemble's test figures, time."""
    def spread(key: str) -> str:
        return percent(summary["mean"].get(key), summary["std"].get(key), "%")

    ensemble = summary.get("ensemble", {})
    rows = [(name, spread(f"val/{key}"), spread(f"test/{key}"), percent(ensemble.get(f"test/{key}"), unit="%"))
            for name, key in (("accuracy", "acc"), ("macro F1", "f1"))]
    seconds = sum(value for value in summary["per_fold"].get("train_seconds", []) if value is not None)
    notes = [f"training: {seconds:.1f} s over {len(summary['folds'])} folds",
             f"results: {run_dir} ({SUMMARY_FILE}, fold_<k>/)"]
    repeats = len(set(summary.get("split_seeds") or [None]))
    kind = f"{len(set(summary['folds']))}-fold cross-validation" + (f" x {repeats} split seeds" if repeats > 1 else "")
    print_summary(cfg, f"{summary['model']}: {kind}",
                  ("", "val (folds)", "test (folds)", "test (ensemble)"), rows, notes)


cli = hydra_command("cv", cv, unfinished=unfinished_fold)  # the `fmnist-cv` console script


if __name__ == "__main__":
    cli()
