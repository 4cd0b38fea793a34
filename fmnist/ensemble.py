"""Test the fold models of a cross-validation together: the mean of their softmax probabilities.

Each model is rebuilt from its best checkpoint alone (the run config travels inside it), so the
ensemble can be evaluated again later, by another process, without the Hydra config of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fmnist.constants import CLASS_NAMES
from fmnist.errors import FmnistError
from fmnist.training.builders import build_datamodule, build_net
from fmnist.training.checkpoints import load_checkpoint
from fmnist.training.metrics import confusion_matrix, per_class_metrics, summary_metrics
from fmnist.training.module import CHECKPOINT_CONFIG_KEY, metric_safe

NET_PREFIX = "net."
COMPILED_PREFIX = "_orig_mod."  # torch.compile wraps the backbone; its weights are the same


def load_checkpoint_net(path: str | Path) -> tuple[nn.Module, DictConfig]:
    """The backbone of a best checkpoint, in eval mode, with the config it was trained under."""
    checkpoint = load_checkpoint(path)
    if CHECKPOINT_CONFIG_KEY not in checkpoint:
        raise FmnistError(f"{path} holds no run config ('{CHECKPOINT_CONFIG_KEY}'); it was not written by fmnist")
    cfg = OmegaConf.create(checkpoint[CHECKPOINT_CONFIG_KEY])
    net = build_net(cfg.model)
    weights = {key[len(NET_PREFIX):].removeprefix(COMPILED_PREFIX): value
               for key, value in checkpoint["state_dict"].items() if key.startswith(NET_PREFIX)}
    net.load_state_dict(weights)
    return net.eval(), cfg


@torch.inference_mode()
def predict_probabilities(net: nn.Module, batches: Any) -> tuple[torch.Tensor, torch.Tensor]:
    probabilities, labels = [], []
    for x, y in batches:
        probabilities.append(torch.softmax(net(x), dim=1))
        labels.append(y)
    return torch.cat(probabilities), torch.cat(labels)


def classification_metrics(probabilities: torch.Tensor, labels: torch.Tensor, prefix: str = "test",
                           class_names: Sequence[str] = CLASS_NAMES) -> dict[str, Any]:
    """The same figures, under the same names, as a single model's metrics.json (plus the NLL)."""
    num_classes = len(class_names)
    summary = summary_metrics(prefix, num_classes)(probabilities, labels)
    result: dict[str, Any] = {key: float(value) for key, value in summary.items()}
    for metric, values in per_class_metrics(num_classes)(probabilities, labels).items():
        for name, value in zip(class_names, values.tolist(), strict=True):
            result[f"{prefix}/class_{metric}/{metric_safe(name)}"] = value
    result[f"{prefix}/nll"] = float(torch.nn.functional.nll_loss(probabilities.clamp_min(1e-12).log(), labels))
    result[f"{prefix}/confusion"] = confusion_matrix(num_classes)(probabilities, labels).tolist()
    return result


def ensemble_test_metrics(checkpoints: Sequence[str | Path]) -> dict[str, Any]:
    """Test metrics of the mean of the fold models' probabilities (the data module comes from the first model)."""
    if not checkpoints:
        raise FmnistError("no fold checkpoint to ensemble; the folds kept no best checkpoint")
    total: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    datamodule = None
    for path in checkpoints:
        net, cfg = load_checkpoint_net(path)
        if datamodule is None:
            datamodule = build_datamodule(cfg)
            datamodule.setup("test")
        probabilities, labels = predict_probabilities(net, datamodule.test_dataloader())
        total = probabilities if total is None else total + probabilities
    assert total is not None and labels is not None
    return {"members": len(checkpoints), **classification_metrics(total / len(checkpoints), labels)}
