"""`python -m fmnist.train [overrides]` (conf/train.yaml): fit one model, pick the best checkpoint on validation, test
it once, and write `metrics.json`."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import StochasticWeightAveraging, WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fmnist.core.atomic import write_text_atomic
from fmnist.core.checkpoints import CheckpointError, last_checkpoint, load_checkpoint, refuse, resolve_ckpt_path
from fmnist.core.command import hydra_command
from fmnist.core.console import print_summary
from fmnist.core.errors import FmnistError, OutputWriteError, RunInterrupted
from fmnist.core.limits import clip, first_line
from fmnist.core.metrics_file import COMPLETED, INTERRUPTED, PRUNED, run_identity, write_metrics, write_stopped
from fmnist.core.numbers import percent
from fmnist.core.predictions import write_predictions
from fmnist.core.run_files import (
    AVERAGED_CHECKPOINT,
    CHECKPOINT_DIR,
    HISTORY_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    RESOLVED_CONFIG_FILE,
    RunFileError,
    read_history_rows,
)
from fmnist.core.run_lock import hold_run_dir
from fmnist.models.catalog import count_params
from fmnist.search.trial import RunPruned, record_pruned
from fmnist.training.builders import build_datamodule, build_module, build_trainer
from fmnist.training.callbacks import EpochHistory, FitClock, RestoreFinished, SpawnedProcessMetrics, StepTimer
from fmnist.training.config_checks import check_train_config
from fmnist.training.loggers import finish_loggers
from fmnist.training.provenance import write_run_info

log = logging.getLogger("fmnist.train")  # not __name__: run as __main__ by python -m


def _find(trainer: L.Trainer, kind: type) -> Any:
    return next((callback for callback in trainer.callbacks if isinstance(callback, kind)), None)


def _scalars(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(value) for key, value in (results[0] if results else {}).items()}


def _median(rows: list[dict[str, float | int]], key: str) -> float | None:
    values = [row[key] for row in rows if key in row]
    return median(values) if values else None


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """Everything that defines the run, for TensorBoard's HParams tab (paths left out)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    container.get("data", {}).pop("data_dir", None)
    for key in ("paths", "callbacks", "logger", "extras", "limits"):  # where and how it runs, not what it trains
        container.pop(key, None)
    return container


def prepare_final_checkpoint(trainer: L.Trainer, run_dir: Path) -> str | None:
    """The checkpoint of the weights to test (None: the final ones): SWA's average, which enters the module only when
    fit ends, saved as its own; else the one picked on validation (EMA's averaged, its callback removed)."""
    if _find(trainer, StochasticWeightAveraging) is not None:
        path = run_dir / CHECKPOINT_DIR / AVERAGED_CHECKPOINT
        trainer.save_checkpoint(path)
        return str(path)
    trainer.callbacks[:] = [callback for callback in trainer.callbacks if not isinstance(callback, WeightAveraging)]
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    return best or None


def stopping_signal(error: BaseException) -> signal.Signals | None:
    """The signal behind what a run raised, or None: Lightning raises SIGTERMException on SIGTERM, and on SIGINT
    a Trainer call exits with 1 from its KeyboardInterrupt handler (elsewhere the KeyboardInterrupt arrives as is)."""
    if isinstance(error, RunInterrupted):
        return None
    if isinstance(error, SIGTERMException):
        return signal.SIGTERM
    if isinstance(error, KeyboardInterrupt) or (isinstance(error, SystemExit)
                                                and isinstance(error.__context__, KeyboardInterrupt)):
        return signal.SIGINT
    return None


def record_interruption(cfg: DictConfig, run_dir: Path, signum: signal.Signals) -> None:
    """metrics.json of a stopped run: status "interrupted", so cv re-runs it and reports list it as unfinished.
    checkpoints/last.ckpt, written at each epoch's end, holds its last finished epoch and continues it."""
    last = last_checkpoint(run_dir)
    try:
        epochs = len(read_history_rows(run_dir / HISTORY_FILE))
    except RunFileError:
        epochs = 0
    error = (f"stopped by {signum.name} after {epochs} finished epoch{'' if epochs == 1 else 's'}"
             + ("; its last checkpoint continues it" if last.is_file() else "; no checkpoint saved yet"))
    try:
        write_stopped(cfg, run_dir, INTERRUPTED, error, epochs=epochs,
                      last_ckpt=str(last) if last.is_file() else None, signal=signum.name)
    except OutputWriteError as exc:  # the interruption is what the exit status reports; a full disk only loses this
        log.error("%s", exc)


def fit_and_test(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train one model on one split; return (and save) the figures every other command reads. A SIGTERM or SIGINT
    ends it with RunInterrupted once metrics.json says "interrupted"."""
    if rank_zero_only.rank == 0:  # data-parallel workers run this too, in the same dir: rank 0 holds it for all
        hold_run_dir(run_dir)
    try:
        return _fit_and_test(cfg, run_dir)
    except RunPruned as pruned:  # a search's pruner stopped this trial: a normal end (exit 0), not a failure
        return record_pruned(cfg, run_dir, pruned)
    except BaseException as exc:
        signum = stopping_signal(exc)
        if signum is None:
            raise
        if rank_zero_only.rank == 0:
            record_interruption(cfg, run_dir, signum)
        raise RunInterrupted(signum, run_dir) from None


def _fit_and_test(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit, settle the weights to test, evaluate them, write the run's files."""
    fitted = _fit(cfg, run_dir)
    record = _epoch_record(fitted.trainer)  # before validate/test, which restore the callbacks' states
    checkpoint = prepare_final_checkpoint(fitted.trainer, run_dir)
    if checkpoint is None and fitted.resume_from is not None and not fitted.restored.trained:
        raise CheckpointError(f"ckpt_path {clip(fitted.resume_from)} has already reached trainer.max_epochs="
                              f"{fitted.trainer.max_epochs}: nothing left to train, and no checkpoint of this run to "
                              "test. Fix: raise trainer.max_epochs to train on, or test it with python -m fmnist.eval "
                              f"ckpt_path={clip(fitted.resume_from)}.")
    metrics = _evaluate(cfg, fitted, record, checkpoint)
    if fitted.trainer.is_global_zero:
        _write_results(cfg, fitted, metrics, run_dir)
    log.info("%s: val/acc %.4f, test/acc %.4f, %.1fs training; results in %s", cfg.model.name,
             metrics.get("val/acc", float("nan")), metrics.get("test/acc", float("nan")), fitted.seconds, run_dir)
    return metrics


@dataclass
class Fitted:
    """What fit leaves for the rest of the run."""

    trainer: L.Trainer
    module: L.LightningModule
    datamodule: L.LightningDataModule
    resume_from: str | None
    restored: RestoreFinished
    seconds: float


@dataclass
class EpochRecord:
    """The epochs trained and their step timings, as the callbacks saw them."""

    rows: list[dict[str, float | int]]
    epochs: int
    ms_per_step: float | None
    images_per_second: float | None


def _fit(cfg: DictConfig, run_dir: Path) -> Fitted:
    """Check the config, record it, build data, module and Trainer, and fit (continuing `ckpt_path`)."""
    check_train_config(cfg)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    if rank_zero_only.rank == 0:  # data-parallel workers run this too; only rank 0 writes files
        write_run_info(run_dir)
        write_text_atomic(run_dir / RESOLVED_CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    resume_from = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    trainer = build_trainer(cfg, run_dir)
    if trainer.world_size > 1:
        trainer.callbacks.append(SpawnedProcessMetrics())  # trainer=ddp_spawn: each process's own metric states
    restored, clock = RestoreFinished(), FitClock()
    trainer.callbacks.extend([restored, clock])
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except Exception as exc:
        if resume_from is None or restored.done or isinstance(exc, FmnistError):
            raise
        # a checkpoint whose optimizer, scheduler or loop state has the wrong shape fails inside Lightning's restore
        raise refuse(resume_from, f"its training state cannot be restored ({type(exc).__name__}: "
                     f"{first_line(exc, 160)})", "Fix: continue from a checkpoint fmnist wrote with this config, or "
                     "leave ckpt_path unset to start afresh") from None
    # fit's wall time here, plus a resumed run's before its stop (under ddp_spawn the workers keep that part)
    return Fitted(trainer, module, datamodule, resume_from, restored, clock.before + time.perf_counter() - started)


def _epoch_record(trainer: L.Trainer) -> EpochRecord:
    history = _find(trainer, EpochHistory)
    rows = list(history.rows) if history else []
    timer = _find(trainer, StepTimer)
    ms_per_step = timer.ms_per_step if timer else None
    images_per_second = timer.images_per_second if timer else None
    if history and not rows and trainer.world_size > 1:
        # trainer=ddp_spawn: this process's callbacks saw no epoch, but rank 0 wrote each one's row to history.csv
        rows = read_history_rows(history.path)
        ms_per_step, images_per_second = _median(rows, "train/ms_per_step"), _median(rows, "train/images_per_second")
    # epochs trained: history's rows, since SWA's BatchNorm pass after the last epoch counts as one more to Lightning
    return EpochRecord(rows, len(rows) if rows else trainer.current_epoch, ms_per_step, images_per_second)


def _evaluate(cfg: DictConfig, fitted: Fitted, record: EpochRecord, checkpoint: str | None) -> dict[str, Any]:
    """Validate and test the settled weights once; the run's figures, as metrics.json holds them."""
    trainer, module, datamodule = fitted.trainer, fitted.module, fitted.datamodule
    val = _scalars(trainer.validate(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False,
                                    weights_only=True))
    test = _scalars(trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False,
                                 weights_only=True))
    # trainer=ddp_spawn: this process's module never ran the test; rank 0's matrix came back with callback_metrics
    confusion = module.last_confusion.get("test", trainer.callback_metrics.get(SpawnedProcessMetrics.KEY))
    best = checkpoint or ""
    averaged = Path(best).name == AVERAGED_CHECKPOINT  # SWA's average of the epochs up to the last one
    best_epoch = record.epochs - 1
    if best and not averaged:  # the tested checkpoint's; under ddp_spawn another process loaded it, so read it here
        best_epoch = module.loaded_epoch if module.loaded_epoch is not None else load_checkpoint(best)["epoch"]
    best_row = next((row for row in record.rows if row["epoch"] == best_epoch), {})
    return {
        **run_identity(cfg),
        "family": cfg.model.family,
        "input": cfg.model.input,
        "params": count_params(module.net),
        "epochs": record.epochs,
        "best_epoch": best_epoch,
        "train/acc": best_row.get("train/acc"),
        "train/loss": best_row.get("train/loss"),
        **val,
        **test,
        "test/confusion": None if confusion is None else confusion.tolist(),
        "train_seconds": fitted.seconds,
        "ms_per_step": record.ms_per_step,
        "images_per_second": record.images_per_second,
        "best_ckpt": best,
        "status": COMPLETED,
    }


def _write_results(cfg: DictConfig, fitted: Fitted, metrics: dict[str, Any], run_dir: Path) -> None:
    """test_predictions.npz, then metrics.json (so a completed run has both), then the loggers' summaries. Under
    data parallelism rank 0 saw only its shard of the test set, and a partial file would mislead ensembles."""
    module, world_size = fitted.module, fitted.trainer.world_size
    if module.last_test_outputs is not None and world_size == 1:
        probabilities, labels = module.last_test_outputs
        write_predictions(run_dir / PREDICTIONS_FILE, probabilities.numpy(), labels.numpy())
    elif world_size > 1:
        log.warning("%s not written: each of the %d processes tested a shard of the test set", PREDICTIONS_FILE,
                    world_size)
    write_metrics(run_dir, metrics)
    finish_loggers(fitted.trainer, _hparams(cfg), metrics, run_dir)


def train(cfg: DictConfig, run_dir: Path) -> float:
    """The job of `python -m fmnist.train`: fit and test one model, print the results at a glance; return the
    validation accuracy, so a Hydra sweeper can optimise it (never the test accuracy)."""
    metrics = fit_and_test(cfg, run_dir)
    if rank_zero_only.rank == 0 and metrics["status"] != PRUNED:
        rows = [(name, percent(metrics.get(f"val/{key}"), unit="%"), percent(metrics.get(f"test/{key}"), unit="%"))
                for name, key in (("accuracy", "acc"), ("macro F1", "f1"))]
        notes = [f"training: {metrics['train_seconds']:.1f} s, epochs: {metrics['epochs']}, best epoch (from 0): "
                 f"{metrics['best_epoch']}", f"results: {run_dir} ({METRICS_FILE})"]
        if metrics.get("best_ckpt"):
            notes.append(f"checkpoint: {metrics['best_ckpt']}")
        print_summary(cfg, f"{metrics['model']}: results", ("", "val", "test"), rows, notes)
    return float(metrics["val/acc"])


cli = hydra_command("train", train, hold_named_run_dir=True)  # the `fmnist-train` console script


if __name__ == "__main__":
    cli()
