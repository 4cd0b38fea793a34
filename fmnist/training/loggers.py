"""The run's loggers, all Lightning's own, built from `cfg.logger` (one config, or a mapping of named ones as in
conf/logger/many.yaml), and given the run's settings and final figures once the test is done."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig

from fmnist.core.constants import CLASS_NAMES
from fmnist.core.errors import ConfigError
from fmnist.core.figures import confusion_heatmap, save_figure
from fmnist.core.metric_keys import run_scalars

log = logging.getLogger("fmnist.loggers")
LOGGERS_EXTRA_HINT = "pip install -e '.[loggers]' (installs mlflow and wandb), or use logger=tensorboard"
NEEDS = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb"}  # Lightning's optional loggers (by class) and their package
# the settings that place a logger's files: resolved against the run dir, so CV folds share one store
PLACE_KEYS = ("save_dir", "tracking_uri", "artifact_location")
CONFUSION_FIGURE = "test_confusion.png"  # written into the run dir for the loggers that keep artifacts


def logger_nodes(logger_cfg: DictConfig | None) -> list[DictConfig]:
    """The logger configs in `cfg.logger`: none, the one node, or each non-null entry of a mapping."""
    if not logger_cfg:
        return []
    if "_target_" in logger_cfg:
        return [logger_cfg]
    nodes = []
    for name, node in logger_cfg.items():
        if not node:
            continue  # e.g. logger=many logger.mlflow=null
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise ConfigError(f"logger.{name}", "is not a logger config (no _target_)",
                              "give each entry of the mapping a _target_ (see conf/logger/many.yaml), or null")
        nodes.append(node)
    return nodes


def share_run_dir(logger_cfg: DictConfig | None) -> None:
    """Pin each logger's file places (save_dir, MLflow's store) to their current values, resolved now."""
    for node in logger_nodes(logger_cfg):
        for key in PLACE_KEYS:
            if node.get(key) is not None:
                node[key] = str(node[key])


def _check_installed(node: DictConfig) -> None:
    name = str(node._target_).rsplit(".", 1)[-1]
    package = NEEDS.get(name)
    if package is None:
        return
    try:
        importlib.import_module(package)
    except ImportError:
        raise ConfigError("logger", f"{name} needs the {package} package, which is not installed",
                          LOGGERS_EXTRA_HINT) from None


def build_loggers(logger_cfg: DictConfig | None) -> list[Logger] | bool:
    """The Trainer's loggers, False for `logger=none`."""
    nodes = logger_nodes(logger_cfg)
    for node in nodes:
        _check_installed(node)
    return [instantiate(node) for node in nodes] or False


def finish_loggers(trainer: L.Trainer, hparams: dict[str, Any], metrics: Mapping[str, Any], run_dir: Path) -> None:
    """After the test: the run's settings to every logger (TensorBoard's HParams tab with the final accuracies);
    MLflow and W&B also get metrics.json's figures and the test confusion figure."""
    figure: Path | None = None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, {"hparams/val_acc": metrics.get("val/acc") or 0.0,
                                             "hparams/test_acc": metrics.get("test/acc") or 0.0})
        else:
            logger.log_hyperparams(hparams)
        if isinstance(logger, (MLFlowLogger, WandbLogger)):
            logger.log_metrics(run_scalars(metrics), step=trainer.global_step)
            if figure is None and metrics.get("test/confusion"):
                heatmap = confusion_heatmap(torch.tensor(metrics["test/confusion"]), CLASS_NAMES,
                                            f"test confusion, {metrics.get('model')}")
                figure = save_figure(heatmap, run_dir / CONFUSION_FIGURE)
            if figure is not None and isinstance(logger, MLFlowLogger):
                logger.experiment.log_artifact(logger.run_id, str(figure))
            elif figure is not None:
                logger.log_image("test/confusion_matrix", [str(figure)])
        logger.save()
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            log.info("MLflow: mlflow ui --backend-store-uri %s", logger.experiment.tracking_uri)
        elif isinstance(logger, WandbLogger):
            run = logger.experiment
            where, offline = Path(run.dir).parent, run.offline  # run.dir: <save_dir>/wandb/<offline-run-...>/files
            run.finish()  # the next run of this process (a CV fold) starts its own W&B run
            if offline:
                log.info("W&B: offline run in %s; upload it with: wandb sync %s", where, where)
