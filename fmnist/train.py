"""`python -m fmnist.train [overrides]`: train, validate and test one model; see conf/train.yaml.

Fit, pick the best checkpoint on validation, test it once, and write `metrics.json`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import StochasticWeightAveraging, WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from fmnist.core.atomic import write_json_atomic, write_text_atomic
from fmnist.core.cli import exit_unless_output_writable, run_guarded
from fmnist.core.config_dir import CONF_DIR
from fmnist.core.extras import apply_extras, percent, print_summary
from fmnist.core.run_files import (
    AVERAGED_CHECKPOINT,
    CHECKPOINT_DIR,
    COMPLETED,
    METRICS_FILE,
    PREDICTIONS_FILE,
    RESOLVED_CONFIG_FILE,
    write_predictions,
)
from fmnist.training.builders import build_datamodule, build_module, build_trainer
from fmnist.training.callbacks import EpochHistory, StepTimer
from fmnist.training.checkpoints import (
    check_checkpoint_matches,
    check_state_dict_fits,
    load_checkpoint,
    resolve_ckpt_path,
)
from fmnist.training.config_checks import check_train_config
from fmnist.training.loggers import finish_loggers
from fmnist.training.process import apply_process_settings
from fmnist.training.provenance import write_run_info

log = logging.getLogger("fmnist.train")  # not __name__: run as __main__ by python -m


def _find(trainer: L.Trainer, kind: type) -> Any:
    return next((callback for callback in trainer.callbacks if isinstance(callback, kind)), None)


def _scalars(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(value) for key, value in (results[0] if results else {}).items()}


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """Everything that defines the run, for TensorBoard's HParams tab (paths left out)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    container.pop("paths", None)
    container.get("data", {}).pop("data_dir", None)
    container.pop("callbacks", None)
    container.pop("logger", None)
    container.pop("extras", None)  # how the run prints, not what it trains
    return container


def checkpoint_to_evaluate(trainer: L.Trainer, run_dir: Path) -> str | None:
    """The weights that validation, test, metrics.json's best_ckpt, eval and predict all use after fit.

    Without weight averaging: the checkpoint picked on validation (None without a checkpoint callback: the final
    weights). Lightning's EMA / WeightAveraging validates and checkpoints its averaged weights, so its best
    checkpoint holds them; it is taken out of the trainer so it does not swap weights again. SWA's average enters
    the module only when fit ends: it is saved as its own checkpoint and evaluated.
    """
    if _find(trainer, StochasticWeightAveraging) is not None:
        path = run_dir / CHECKPOINT_DIR / AVERAGED_CHECKPOINT
        trainer.save_checkpoint(path)
        return str(path)
    for callback in [callback for callback in trainer.callbacks if isinstance(callback, WeightAveraging)]:
        trainer.callbacks.remove(callback)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    return best or None


def fit_and_test(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train one model on one split; return (and save) the figures every other command reads."""
    check_train_config(cfg)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    if rank_zero_only.rank == 0:  # data-parallel workers run this too; only rank 0 writes files
        write_run_info(run_dir)
        write_text_atomic(run_dir / RESOLVED_CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    resume_from = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    if resume_from is not None:
        check_state_dict_fits(check_checkpoint_matches(resume_from, cfg.model.name), module, resume_from)
    trainer = build_trainer(cfg, run_dir)

    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    train_seconds = time.perf_counter() - started

    # read before validate/test: loading a checkpoint restores every callback's state to that epoch's
    history = _find(trainer, EpochHistory)
    rows = list(history.rows) if history else []
    # epochs trained: history's rows, since SWA's BatchNorm pass after the last epoch counts as one more to Lightning
    epochs = len(rows) if rows else trainer.current_epoch
    timer = _find(trainer, StepTimer)
    ms_per_step = timer.ms_per_step if timer else None
    images_per_second = timer.images_per_second if timer else None

    checkpoint = checkpoint_to_evaluate(trainer, run_dir)
    best = checkpoint or ""
    val = _scalars(trainer.validate(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False,
                                    weights_only=True))
    test = _scalars(trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False,
                                 weights_only=True))
    averaged = Path(best).name == AVERAGED_CHECKPOINT  # SWA's average of the epochs up to the last one
    best_epoch = load_checkpoint(best)["epoch"] if best and not averaged else epochs - 1
    best_row = next((row for row in rows if row["epoch"] == best_epoch), {})
    metrics: dict[str, Any] = {
        "model": cfg.model.name,
        "family": cfg.model.family,
        "input": cfg.model.input,
        "params": sum(parameter.numel() for parameter in module.net.parameters()),
        "epochs": epochs,
        "best_epoch": best_epoch,
        "fold": cfg.data.fold,
        "num_folds": cfg.data.num_folds,
        # what makes two runs' validation sets the same, for paired comparisons in reports
        "split_seed": cfg.data.split_seed,
        "holdout_size": cfg.data.holdout_size,
        "train_subset": cfg.data.train_subset,
        "seed": cfg.seed,
        "tags": list(cfg.get("tags") or []),
        "train/acc": best_row.get("train/acc"),
        "train/loss": best_row.get("train/loss"),
        **val,
        **test,
        "test/confusion": module.last_confusion["test"].tolist(),
        "train_seconds": train_seconds,
        "ms_per_step": ms_per_step,
        "images_per_second": images_per_second,
        "best_ckpt": best,
        "status": COMPLETED,
    }
    if trainer.is_global_zero:
        # written before metrics.json, so a completed run has both; under data parallelism rank 0 saw only its
        # shard of the test set, and a partial file would mislead ensembles and paired tests
        if module.last_test_outputs is not None and trainer.world_size == 1:
            probabilities, labels = module.last_test_outputs
            write_predictions(run_dir / PREDICTIONS_FILE, probabilities.numpy(), labels.numpy())
        elif trainer.world_size > 1:
            log.warning("%s not written: each of the %d processes tested a shard of the test set",
                        PREDICTIONS_FILE, trainer.world_size)
        write_json_atomic(run_dir / METRICS_FILE, metrics)
        finish_loggers(trainer, _hparams(cfg), metrics, run_dir, module.class_names)
    log.info("%s: val/acc %.4f, test/acc %.4f, %.1fs training; results in %s", cfg.model.name,
             val.get("val/acc", float("nan")), test.get("test/acc", float("nan")), train_seconds, run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Return the validation accuracy, so a Hydra sweeper can optimise it (never the test accuracy)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    apply_extras(cfg, rank_zero=rank_zero_only.rank == 0)
    apply_process_settings(cfg.process)
    metrics = run_guarded(lambda: fit_and_test(cfg, run_dir))
    if rank_zero_only.rank == 0:
        print_train_summary(cfg, metrics, run_dir)
    return float(metrics["val/acc"])


def print_train_summary(cfg: DictConfig, metrics: dict[str, Any], run_dir: Path) -> None:
    """The end of a run at a glance: val and test accuracy and macro F1, time, where the results are."""
    rows = [(name, percent(metrics.get(f"val/{key}")), percent(metrics.get(f"test/{key}")))
            for name, key in (("accuracy", "acc"), ("macro F1", "f1"))]
    notes = [f"training: {metrics['train_seconds']:.1f} s, epochs: {metrics['epochs']}, best epoch (from 0): "
             f"{metrics['best_epoch']}", f"results: {run_dir} ({METRICS_FILE})"]
    if metrics.get("best_ckpt"):
        notes.append(f"checkpoint: {metrics['best_ckpt']}")
    print_summary(cfg, f"{metrics['model']}: results", ("", "val", "test"), rows, notes)


def cli() -> None:
    """The `fmnist-train` console script: `python -m fmnist.train`."""
    exit_unless_output_writable(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
