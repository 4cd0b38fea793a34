"""Check a checkpoint before Lightning touches it, so a wrong file gets a clear message, not a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fmnist.inference.checkpoint import CheckpointError, read_checkpoint
from fmnist.training.module import CHECKPOINT_CONFIG_KEY


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`last` means this run dir's newest checkpoint: how a killed run continues in place."""
    if ckpt_path != "last":
        return ckpt_path
    last = run_dir / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with `weights_only=True` (tensors and plain values, never code), through eval's safe reader."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path: {path} does not exist. Fix: pass the path of a .ckpt file written by "
                              "fmnist (see <run dir>/checkpoints/), or ckpt_path=last to continue a run in place.")
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path: {path} holds no model state_dict, so it is not a Lightning checkpoint.")
    return checkpoint


def check_checkpoint_matches(path: str | Path, model_name: str) -> dict[str, Any]:
    """Refuse a checkpoint of another architecture before its weights fail to load halfway."""
    checkpoint = load_checkpoint(path)
    config = checkpoint.get(CHECKPOINT_CONFIG_KEY) or {}
    saved = (config.get("model") or {}).get("name")
    if saved is None:
        raise CheckpointError(f"ckpt_path: {path} was not written by fmnist (no {CHECKPOINT_CONFIG_KEY}).")
    if saved != model_name:
        raise CheckpointError(f"ckpt_path: {path} belongs to model '{saved}', but this run builds '{model_name}'. "
                              f"Fix: add model={saved} (and that run's other overrides), or pick a {model_name} "
                              "checkpoint.")
    return checkpoint


def check_state_dict_fits(checkpoint: dict[str, Any], module: torch.nn.Module, path: str | Path) -> None:
    """Same model name but other sizes (say hidden_size 64 vs 100): name the first mismatching tensor."""
    expected = module.state_dict()
    for key, value in checkpoint["state_dict"].items():
        if key in expected and tuple(expected[key].shape) != tuple(value.shape):
            raise CheckpointError(f"ckpt_path: {path} has {key} of shape {tuple(value.shape)}, but this config "
                                  f"builds {tuple(expected[key].shape)}. Fix: repeat the overrides of the run "
                                  "that wrote it (see its .hydra/overrides.yaml).")
    missing = sorted(set(expected) - set(checkpoint["state_dict"]))
    if missing:
        raise CheckpointError(f"ckpt_path: {path} lacks {missing[0]} (and {len(missing) - 1} more tensors); "
                              "it was written by a different architecture.")
