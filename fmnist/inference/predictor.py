"""Inference through Lightning: a quiet Trainer on the configured device runs ClassifierModule's own test and
predict steps around a checkpoint's backbone, so eval and predict compute exactly what training's test did."""

from __future__ import annotations

import sys

import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from fmnist.core.console import ignore_known_warnings
from fmnist.core.errors import ConfigError
from fmnist.data.batches import BatchTransform
from fmnist.inference.checkpoint import PRECISIONS, LoadedModel
from fmnist.training.module import ClassifierModule

TTA_MODES = ("auto", "none", "flip")
ACCELERATORS = ("cpu", "cuda", "mps")


def resolve_tta(mode: str, run_config: DictConfig) -> str:
    """'auto' does what the training run's own test did (`model.tta_flip`), so eval reproduces its figures."""
    if mode not in TTA_MODES:
        raise ConfigError("tta", f"'{mode}' is not a test-time augmentation", f"use one of {TTA_MODES}")
    if mode == "auto":
        return "flip" if run_config.model.get("tta_flip", False) else "none"
    return mode


def trainer_devices(name: str) -> tuple[str, int | list[int]]:
    """`device` (auto, cpu, cuda, cuda:N or mps) as the Trainer's accelerator and devices: one device."""
    if name == "auto":
        return "auto", 1
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ACCELERATORS:
        raise ConfigError("device", f"'{name}' is not a device", "use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "CUDA was asked for, but PyTorch sees no GPU", "use device=auto or device=cpu")
    return device.type, 1 if device.index is None else [device.index]


def resolve_precision(precision: str, run_config: DictConfig) -> str:
    """'auto' tests at the precision the training run tested with (its checked trainer.precision), so eval
    reproduces its figures and a bf16 run is predicted as it was measured."""
    if precision == "auto":
        return str(run_config.get("trainer", {}).get("precision", "32-true"))
    if precision not in PRECISIONS:
        raise ConfigError("precision", f"'{precision}' is not a precision", f"use auto or one of {PRECISIONS}")
    return precision


def inference_trainer(device: str, precision: str = "32-true") -> L.Trainer:
    """One test or predict pass: no logger, checkpoints or model summary; a progress bar only at a terminal."""
    accelerator, devices = trainer_devices(device)
    ignore_known_warnings()
    return L.Trainer(accelerator=accelerator, devices=devices, precision=precision, logger=False,
                     enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=sys.stdout.isatty())


def classifier(model: LoadedModel, tta: str) -> ClassifierModule:
    """Training's LightningModule around the checkpoint's backbone: its steps and metrics, not a copy of them."""
    return ClassifierModule(model.net, optimizer=None, tta_flip=tta == "flip")  # type: ignore[arg-type]  # never fit


def image_loader(images: torch.Tensor, transform: BatchTransform, batch_size: int) -> DataLoader:
    """uint8 images (N, 28, 28) as normalised model input, in order, a batch at a time."""
    return DataLoader(images, batch_size, collate_fn=lambda batch: transform(torch.stack(batch), False, None))
