"""Config -> objects. Everything a run uses is built here from the composed Hydra config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fmnist.data.augment import Augmentation
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.errors import ConfigError
from fmnist.training.checkpoint_io import AtomicCheckpointIO
from fmnist.training.cpu_allocator import keep_freed_memory
from fmnist.training.cuda_probe import drop_futile_nvml_check
from fmnist.training.module import ClassifierModule, SchedulerSpec


def build_datamodule(cfg: DictConfig) -> FashionMnistDataModule:
    data = cfg.data
    return FashionMnistDataModule(
        data_dir=data.data_dir,
        system_dir=data.system_dir,
        input_kind=cfg.model.input,
        batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size,
        num_folds=data.num_folds,
        fold=data.fold,
        split_seed=data.split_seed,
        holdout_size=data.holdout_size,
        train_subset=data.train_subset,
        augmentation=Augmentation(**OmegaConf.to_container(cfg.augmentation)),  # type: ignore[arg-type]
        download=data.download,
        verify_checksums=data.verify_checksums,
        shuffle_seed=cfg.seed if cfg.seed is not None else 0,
        channels_last=bool(cfg.model.get("channels_last", False)),
        steps_per_execution=data.get("steps_per_execution", 1),
    )


def build_net(model_cfg: DictConfig) -> nn.Module:
    try:
        return instantiate(model_cfg.net)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise ConfigError("model.net", f"cannot build {model_cfg.net.get('_target_')}: {cause}",
                          "check the overrides under model.net against conf/model/" f"{model_cfg.name}.yaml") from exc


def build_scheduler(cfg: DictConfig) -> SchedulerSpec | None:
    scheduler = cfg.scheduler
    if scheduler.get("factory") is None:
        return None
    return SchedulerSpec(factory=instantiate(scheduler.factory), interval=scheduler.interval,
                         monitor=scheduler.get("monitor"), total_steps_kwarg=scheduler.get("total_steps_kwarg"))


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes that replay CUDA graphs on a GPU


def prepare_net(net: nn.Module, model_cfg: DictConfig) -> nn.Module:
    """The speed switches of a model config: channels-last weights (matching the channels-last batches that
    `model.channels_last` asks of the data module) and `model.compile`. The benchmark's plain loop uses it too."""
    if model_cfg.get("channels_last", False):
        net = net.to(memory_format=torch.channels_last)
    setting = model_cfg.get("compile", False)
    if setting is True or isinstance(setting, str):
        mode = None if setting is True else setting  # e.g. reduce-overhead: CUDA graphs; max-autotune
        if mode is not None and mode not in COMPILE_MODES:
            raise ConfigError("model.compile", f"unknown torch.compile mode {mode!r}",
                              f"use true, false or one of {', '.join(COMPILE_MODES)}")
        net = torch.compile(net, mode=mode)  # type: ignore[assignment]
    elif setting not in (False, None):
        raise ConfigError("model.compile", f"expected true, false or a mode name, got {setting!r}",
                          f"use true, false or one of {', '.join(COMPILE_MODES)}")
    return net


def build_module(cfg: DictConfig, net: nn.Module | None = None) -> ClassifierModule:
    net = prepare_net(net if net is not None else build_net(cfg.model), cfg.model)
    return ClassifierModule(
        net=net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=build_scheduler(cfg),
        label_smoothing=cfg.regularization.label_smoothing,
        max_norm=cfg.regularization.max_norm,
        run_config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        tta_flip=bool(cfg.model.get("tta_flip", False)),
        cuda_graphs=cfg.model.get("compile") in CUDA_GRAPH_MODES,
        micro_batch_size=cfg.data.batch_size,
        gradient_clip_val=cfg.trainer.get("gradient_clip_val"),
        gradient_clip_algorithm=cfg.trainer.get("gradient_clip_algorithm"),
    )


def build_logger(cfg: DictConfig) -> Any:
    return instantiate(cfg.logger) if cfg.get("logger") else False


def build_callbacks(cfg: DictConfig, has_logger: bool, interactive: bool) -> list[L.Callback]:
    callbacks = [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values() if spec]
    keep = []
    for callback in callbacks:
        if isinstance(callback, LearningRateMonitor) and not has_logger:
            continue  # Lightning refuses a learning-rate monitor without a logger
        if isinstance(callback, RichProgressBar) and not interactive:
            continue  # quiet in CI, pipes and sweeps
        keep.append(callback)
    return keep


# Applied by ClassifierModule, which steps its own optimizer: Lightning refuses them under manual optimization.
MODULE_TRAINER_KEYS = ("gradient_clip_val", "gradient_clip_algorithm")


def trainer_arguments(cfg: DictConfig) -> dict[str, Any]:
    """`cfg.trainer`, resolved, without the settings the module applies itself."""
    accumulate = cfg.trainer.get("accumulate_grad_batches") or 1
    if accumulate != 1:
        raise ConfigError("trainer.accumulate_grad_batches", f"{accumulate} is not supported: fmnist steps the "
                          "optimizer itself, once per batch", "raise data.batch_size instead (with the learning rate)")
    arguments = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(arguments, dict)
    return {key: value for key, value in arguments.items() if key not in MODULE_TRAINER_KEYS}


def prepare_process(cfg: DictConfig) -> None:
    """Process-wide speed settings (docs/speed.md), applied before anything trains or is timed; the benchmark
    calls it too, so that its plain loop runs under the same settings as fmnist."""
    drop_futile_nvml_check()
    if cfg.get("keep_freed_memory", False):
        keep_freed_memory()


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    prepare_process(cfg)
    logger = build_logger(cfg)
    interactive = sys.stdout.isatty()
    callbacks = build_callbacks(cfg, has_logger=bool(logger), interactive=interactive)
    has_bar = any(isinstance(callback, RichProgressBar) for callback in callbacks)
    return instantiate(trainer_arguments(cfg), logger=logger, callbacks=callbacks, default_root_dir=str(run_dir),
                       enable_progress_bar=has_bar, enable_model_summary=interactive,
                       plugins=[AtomicCheckpointIO()])
