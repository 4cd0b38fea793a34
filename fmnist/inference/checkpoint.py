"""Rebuild a trained backbone from nothing but its checkpoint file, refusing anything unsafe or foreign."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fmnist.errors import FmnistError

CONFIG_KEY = "fmnist_config"  # = fmnist.training.module.CHECKPOINT_CONFIG_KEY, without importing Lightning early
NET_PREFIX = "net."
COMPILED_PREFIX = "_orig_mod."  # torch.compile wraps the backbone; its weights carry this extra prefix
HOW_TO_FIX = "Fix: pass ckpt_path=<run dir>/checkpoints/best-epochNNN.ckpt (or the run dir) of an fmnist training run"


class CheckpointError(FmnistError):
    """The checkpoint is missing, unreadable, unsafe, or not one fmnist wrote."""


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


def resolve_ckpt_path(value: Any) -> Path:
    """Accept a checkpoint file or a training run dir (its single best checkpoint)."""
    if value is None or str(value).strip() in ("", "???"):
        raise CheckpointError(f"ckpt_path is not set. {HOW_TO_FIX}, e.g. ckpt_path=outputs/<date>/<time>")
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise CheckpointError(f"ckpt_path {path}: no such file or directory. {HOW_TO_FIX}")
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        best = sorted(folder.glob("best-*.ckpt"))
        if len(best) != 1:
            found = ", ".join(p.name for p in best) or "none"
            raise CheckpointError(f"ckpt_path {path} is a folder, and it holds {len(best)} best-*.ckpt files "
                                  f"({found}), not exactly one. {HOW_TO_FIX}")
        path = best[0]
    return path


def read_checkpoint(path: Path) -> Any:
    """torch.load with weights_only=True: a checkpoint that would run code is refused, never executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Unsupported global" in message:
            wanted = message.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
            raise CheckpointError(f"ckpt_path {path}: refused, loading it would run code ({wanted}); fmnist only "
                                  "loads checkpoints that hold plain tensors and values. " + HOW_TO_FIX) from None
        raise CheckpointError(f"ckpt_path {path}: refused, it cannot be loaded safely with weights_only=True "
                              "(it would run code or build objects other than tensors and plain values, or it is "
                              "not a PyTorch checkpoint). " + HOW_TO_FIX) from None
    except EOFError:
        raise CheckpointError(f"ckpt_path {path}: empty or truncated, not a PyTorch checkpoint. {HOW_TO_FIX}") from None
    except RuntimeError as exc:  # a damaged zip archive: torch names the part it could not read
        reason = str(exc).splitlines()[0].split(". ")[0][:160] if str(exc) else "unreadable"
        raise CheckpointError(f"ckpt_path {path}: not a readable PyTorch checkpoint ({reason}); it may be truncated. "
                              + HOW_TO_FIX) from None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):  # e.g. a text file: torch's pickle reader chokes
        raise CheckpointError(f"ckpt_path {path}: not a PyTorch checkpoint file. {HOW_TO_FIX}") from None


def _net_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    weights = {}
    for key, value in state_dict.items():
        if key.startswith(NET_PREFIX):
            name = key[len(NET_PREFIX):]
            weights[name[len(COMPILED_PREFIX):] if name.startswith(COMPILED_PREFIX) else name] = value
    return weights


def load_checkpoint(value: Any, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the backbone the run config names and load its `net.` weights; eval mode, no gradients."""
    path = resolve_ckpt_path(value)
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path {path}: a PyTorch file, but not a Lightning checkpoint (no state_dict). "
                              + HOW_TO_FIX)
    stored = checkpoint.get(CONFIG_KEY)
    if not isinstance(stored, dict) or "model" not in stored:
        raise CheckpointError(f"ckpt_path {path}: a Lightning checkpoint, but not written by fmnist (it has no "
                              f"'{CONFIG_KEY}' run config to rebuild the model from). {HOW_TO_FIX}")
    config = OmegaConf.create(stored)
    weights = _net_weights(checkpoint["state_dict"])
    if not weights:
        raise CheckpointError(f"ckpt_path {path}: its state_dict has no '{NET_PREFIX}*' weights. {HOW_TO_FIX}")

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
