"""Config -> objects. Everything a run uses is built here from the composed Hydra config."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fmnist.core.errors import ConfigError
from fmnist.core.limits import DEFAULT_LIMITS, Limits, run_limits
from fmnist.core.run_files import CHECKPOINT_DIR
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.models.budget import ModelTooLarge, build_within
from fmnist.training.checkpoint_io import AtomicCheckpointIO
from fmnist.training.grouped import check_grouping
from fmnist.training.loggers import build_loggers
from fmnist.training.module import ClassifierModule, SchedulerSpec


def build_datamodule(cfg: DictConfig) -> FashionMnistDataModule:
    """conf/data/: its `_target_`, with the model's input layout and the augmentation interpolated in."""
    return instantiate(cfg.data)


def build_net(model_cfg: DictConfig, limits: Limits = DEFAULT_LIMITS) -> nn.Module:
    """The model config's backbone, sized on the meta device first so a mistyped width is refused, not allocated."""
    try:
        return build_within(lambda: instantiate(model_cfg.net), limits.max_params)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, ModelTooLarge):
            raise ConfigError("model.net", f"model {model_cfg.name} would have {cause}",
                              "check its sizes, or raise limits.max_params=N") from None
        raise ConfigError("model.net", f"cannot build {model_cfg.net.get('_target_')}: {cause}",
                          "check the overrides under model.net against conf/model/" f"{model_cfg.name}.yaml") from exc


def build_scheduler(cfg: DictConfig) -> SchedulerSpec | None:
    """conf/scheduler/'s SchedulerSpec, or None for a constant learning rate (scheduler=none)."""
    spec = instantiate(cfg.scheduler)
    return spec if spec.factory is not None else None


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes that replay CUDA graphs on a GPU


def prepare_net(net: nn.Module, model_cfg: DictConfig) -> nn.Module:
    """A model config's speed switches, channels-last weights (as its batches are) and `model.compile`."""
    if model_cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    setting = model_cfg.compile
    if setting is True or (isinstance(setting, str) and setting in COMPILE_MODES):
        net = torch.compile(net, mode=None if setting is True else setting)  # type: ignore[assignment]
    elif setting not in (False, None):
        problem = (f"unknown torch.compile mode {setting!r}" if isinstance(setting, str)
                   else f"expected true, false or a mode name, got {setting!r}")
        raise ConfigError("model.compile", problem, f"use true, false or one of {', '.join(COMPILE_MODES)}")
    return net


def build_module(cfg: DictConfig) -> ClassifierModule:
    """The `module` config's LightningModule around the model's backbone, optimizer and schedule."""
    net = prepare_net(build_net(cfg.model, run_limits(cfg)), cfg.model)
    module_class = instantiate(cfg.module, _partial_=True)  # partial: the run config below is data, not targets
    module = module_class(net=net, optimizer=instantiate(cfg.optimizer), scheduler=build_scheduler(cfg),
                          run_config=OmegaConf.to_container(cfg, resolve=True),
                          cuda_graphs=cfg.model.compile in CUDA_GRAPH_MODES)
    check_grouping(module, cfg.data.steps_per_execution, cfg.trainer)
    return module


def build_callbacks(cfg: DictConfig, has_logger: bool, interactive: bool) -> list[L.Callback]:
    """The config's callbacks, less a learning-rate monitor without a logger (Lightning refuses it) and the rich
    progress bar off a terminal (quiet in CI, pipes and sweeps)."""
    callbacks = [instantiate(spec) for spec in (cfg.callbacks or {}).values() if spec]
    return [callback for callback in callbacks if (has_logger or not isinstance(callback, LearningRateMonitor))
            and (interactive or not isinstance(callback, RichProgressBar))]


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """`cfg.trainer` as Lightning documents it; the progress bar and model summary default to on at a terminal."""
    logger = build_loggers(cfg.logger)
    interactive = sys.stdout.isatty()
    callbacks = build_callbacks(cfg, has_logger=bool(logger), interactive=interactive)
    arguments = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(arguments, dict)
    if arguments["enable_progress_bar"] is None:
        arguments["enable_progress_bar"] = any(isinstance(callback, RichProgressBar) for callback in callbacks)
    if arguments["enable_model_summary"] is None:
        arguments["enable_model_summary"] = interactive
    return instantiate(arguments, logger=logger, callbacks=callbacks, default_root_dir=str(run_dir),
                       plugins=[AtomicCheckpointIO(run_dir / CHECKPOINT_DIR, run_limits(cfg))])
