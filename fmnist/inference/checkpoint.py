"""Rebuild a trained backbone from nothing but its checkpoint file, refusing anything unsafe or foreign.

The file format and its checks live in fmnist.training.checkpoints, which training writes and reads too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fmnist.training.checkpoints import (
    HOW_TO_FIX,
    NET_PREFIX,
    CheckpointError,
    load_checkpoint,
    net_weights,
    resolve_ckpt_path,
    run_config,
)


@dataclass(frozen=True)
class LoadedModel:
    """A backbone ready for inference, and the training run's config that describes it."""

    net: nn.Module
    config: DictConfig
    path: Path
    epoch: int | None

    @property
    def name(self) -> str:
        return str(self.config.model.name)

    @property
    def input_kind(self) -> str:
        """'image' -> (B, 1, 28, 28) batches, 'rows' -> (B, 28, 28)."""
        return str(self.config.model.input)


def load_model(value: Any, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the backbone the run config names and load its `net.` weights; eval mode, no gradients."""
    path = resolve_ckpt_path(value, required=True)
    checkpoint = load_checkpoint(path)
    config = OmegaConf.create(run_config(checkpoint, path))
    weights = net_weights(checkpoint["state_dict"])
    if not weights:
        raise CheckpointError(f"ckpt_path {path}: its state_dict has no '{NET_PREFIX}*' weights. {HOW_TO_FIX}.")

    from fmnist.training.builders import build_net  # imports Lightning: only once the file is known to be good

    net = build_net(config.model)
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"ckpt_path {path}: its weights do not fit model {config.model.name} as its config "
                              f"describes it ({str(exc).splitlines()[0]}).") from None
    net.to(device).eval().requires_grad_(False)
    epoch = checkpoint.get("epoch")
    return LoadedModel(net=net, config=config, path=path, epoch=int(epoch) if epoch is not None else None)
