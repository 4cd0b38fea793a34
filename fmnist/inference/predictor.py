"""Run a backbone over uint8 images with the training normalisation, optionally with flip test-time augmentation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from fmnist.core.errors import ConfigError
from fmnist.data.batches import BatchTransform
from fmnist.models.tta import flip_averaged_logits

# The datamodule's statistics of the 60k official train images (float32 mean / std of pixels / 255).
# The data files are checksum-verified, so these never change; tests compare them with the datamodule's.
TRAIN_MEAN = 0.28604060411453247
TRAIN_STD = 0.3530242443084717
TTA_MODES = ("auto", "none", "flip")


def training_transform(input_kind: str) -> BatchTransform:
    """The exact transform training applied to validation and test batches (no augmentation)."""
    return BatchTransform(TRAIN_MEAN, TRAIN_STD, input_kind)


def image_batches(images: torch.Tensor, transform: BatchTransform, batch_size: int) -> Iterator[torch.Tensor]:
    """Normalised model input for uint8 images (N, 28, 28), batch by batch."""
    for start in range(0, len(images), batch_size):
        yield transform(images[start : start + batch_size], False, None)


def resolve_tta(mode: str, run_config: DictConfig) -> str:
    """'auto' does what the training run's own test did (`model.tta_flip`), so eval reproduces its figures."""
    if mode not in TTA_MODES:
        raise ConfigError("tta", f"'{mode}' is not a test-time augmentation", f"use one of {TTA_MODES}")
    if mode == "auto":
        return "flip" if run_config.model.get("tta_flip", False) else "none"
    return mode


@torch.inference_mode()
def logits_for(net: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits; with tta='flip' the mean logits of the image and its mirror image, as ClassifierModule tests."""
    return flip_averaged_logits(net, x) if tta == "flip" else net(x)


def predict(net: nn.Module, batches: Iterable[torch.Tensor], device: torch.device, tta: str = "none") -> torch.Tensor:
    """Logits of every image, on the CPU, in input order."""
    outputs = [logits_for(net, x.to(device), tta).float().cpu() for x in batches]
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def pick_device(name: str) -> torch.device:
    """'auto' takes the GPU when there is one; inference is small enough for the CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", f"'{name}' is not a device", "use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "CUDA was asked for, but PyTorch sees no GPU", "use device=auto or device=cpu")
    return device
