"""The checkpoint format fmnist writes, and the one way to find, read and check such a file.

Only torch here, no Lightning: eval, predict and export refuse a bad file before Lightning is imported,
and training checks one before Lightning touches it, so a wrong file gets a clear message, not a traceback.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from fmnist.core.errors import FmnistError
from fmnist.core.run_files import CHECKPOINT_DIR, LAST_CHECKPOINT, METRICS_FILE

CHECKPOINT_CONFIG_KEY = "fmnist_config"  # the resolved run config, stored by ClassifierModule.on_save_checkpoint
NET_PREFIX = "net."  # ClassifierModule holds the backbone as `self.net`
COMPILED_PREFIX = "_orig_mod."  # torch.compile wraps the backbone; its weights carry this extra prefix
LAST = "last"  # ckpt_path=last: continue the run dir's newest checkpoint, in place
BEST_GLOB = "best-*.ckpt"  # ModelCheckpoint's best-epochNNN.ckpt (conf/callbacks/default.yaml)
HOW_TO_FIX = ("Fix: pass ckpt_path=<run dir> or <run dir>/checkpoints/best-epochNNN.ckpt of an fmnist training run "
              "(training also takes ckpt_path=last, to continue its own run)")


class CheckpointError(FmnistError):
    """The checkpoint is missing, unreadable, unsafe, or not one fmnist wrote."""


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a run keeps its newest checkpoint (conf/callbacks/default.yaml's last_checkpoint, every epoch)."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def recorded_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a finished run evaluated (metrics.json's best_ckpt: the averaged weights under SWA), looked
    up in this run dir's checkpoints folder, so a moved or copied run dir still finds it."""
    try:
        best = json.loads((run_dir / METRICS_FILE).read_text()).get("best_ckpt")
    except (OSError, ValueError, AttributeError):
        return None
    candidate = run_dir / CHECKPOINT_DIR / Path(str(best)).name if best else None
    return candidate if candidate is not None and candidate.is_file() else None


def _is_unset(value: Any) -> bool:
    return value is None or str(value).strip() in ("", "???")


def resolve_ckpt_path(value: Any, run_dir: str | Path | None = None, *, required: bool = False) -> Path | None:
    """The checkpoint file a `ckpt_path` value names: a file itself, a run dir's single best checkpoint, or
    with `run_dir`, `last` = that run's last.ckpt. Unset, or `last` before any save, is None (start fresh);
    `required=True` refuses those instead, for commands that need a trained model.
    """
    if _is_unset(value):
        if required:
            raise CheckpointError(f"ckpt_path is not set. {HOW_TO_FIX}.")
        return None
    if str(value) == LAST:
        if run_dir is None:
            raise CheckpointError(f"ckpt_path=last continues a training run in its own run dir; here there is "
                                  f"none. {HOW_TO_FIX}.")
        last = last_checkpoint(run_dir)
        if last.is_file():
            return last
        if required:
            raise CheckpointError(f"ckpt_path=last: {last} does not exist (no checkpoint saved yet). {HOW_TO_FIX}.")
        return None
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise CheckpointError(f"ckpt_path {path} does not exist: no such file or directory. {HOW_TO_FIX}.")
    if path.is_dir():
        recorded = recorded_checkpoint(path)
        if recorded is not None:
            return recorded
        folder = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
        best = sorted(folder.glob(BEST_GLOB))
        if len(best) != 1:
            found = ", ".join(p.name for p in best) or "none"
            raise CheckpointError(f"ckpt_path {path} is a folder, and it holds {len(best)} {BEST_GLOB} files "
                                  f"({found}), not exactly one. {HOW_TO_FIX}.")
        path = best[0]
    return path


def read_checkpoint(path: str | Path) -> Any:
    """torch.load with weights_only=True: a checkpoint that would run code is refused, never executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Unsupported global" in message:
            wanted = message.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
            raise CheckpointError(f"ckpt_path {path}: refused, loading it would run code ({wanted}); fmnist only "
                                  f"loads checkpoints that hold plain tensors and values. {HOW_TO_FIX}.") from None
        raise CheckpointError(f"ckpt_path {path}: refused, it cannot be loaded safely with weights_only=True "
                              "(it would run code or build objects other than tensors and plain values, or it is "
                              f"not a PyTorch checkpoint). {HOW_TO_FIX}.") from None
    except EOFError:
        raise CheckpointError(f"ckpt_path {path}: empty or truncated, not a PyTorch checkpoint. "
                              f"{HOW_TO_FIX}.") from None
    except RuntimeError as exc:  # a damaged zip archive: torch names the part it could not read
        reason = str(exc).splitlines()[0].split(". ")[0][:160] if str(exc) else "unreadable"
        raise CheckpointError(f"ckpt_path {path}: not a readable PyTorch checkpoint ({reason}); it may be truncated. "
                              f"{HOW_TO_FIX}.") from None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):  # e.g. a text file: torch's pickle reader chokes
        raise CheckpointError(f"ckpt_path {path}: not a PyTorch checkpoint file. {HOW_TO_FIX}.") from None


def load_checkpoint(value: Any) -> dict[str, Any]:
    """The checkpoint dict of a file (or run dir), read safely; anything but a Lightning checkpoint is refused."""
    path = resolve_ckpt_path(value, required=True)
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path {path}: a PyTorch file, but not a Lightning checkpoint (it holds no model "
                              f"state_dict). {HOW_TO_FIX}.")
    return checkpoint


def run_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The training run's config stored in the checkpoint: what rebuilds its model, and names it."""
    stored = checkpoint.get(CHECKPOINT_CONFIG_KEY)
    model = stored.get("model") if isinstance(stored, dict) else None
    if not isinstance(model, dict) or "name" not in model:
        raise CheckpointError(f"ckpt_path {path}: a Lightning checkpoint, but not written by fmnist (it has no "
                              f"'{CHECKPOINT_CONFIG_KEY}' run config to rebuild the model from). {HOW_TO_FIX}.")
    return stored


def net_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's own weights: the module's `net.` prefix and torch.compile's wrapper prefix removed."""
    weights = {}
    for key, value in state_dict.items():
        if key.startswith(NET_PREFIX):
            name = key.removeprefix(NET_PREFIX)
            weights[name.removeprefix(COMPILED_PREFIX)] = value
    return weights


def check_checkpoint_matches(path: str | Path, model_name: str) -> dict[str, Any]:
    """Refuse a checkpoint of another architecture before its weights fail to load halfway."""
    checkpoint = load_checkpoint(path)
    saved = run_config(checkpoint, path)["model"]["name"]
    if saved != model_name:
        raise CheckpointError(f"ckpt_path {path} belongs to model '{saved}', but this run builds '{model_name}'. "
                              f"Fix: add model={saved} (and that run's other overrides), or pick a {model_name} "
                              "checkpoint.")
    return checkpoint


def check_state_dict_fits(checkpoint: dict[str, Any], module: torch.nn.Module, path: str | Path) -> None:
    """Same model name but other sizes (say hidden_size 64 vs 100): name the first mismatching tensor."""
    expected = module.state_dict()
    for key, value in checkpoint["state_dict"].items():
        if key in expected and tuple(expected[key].shape) != tuple(value.shape):
            raise CheckpointError(f"ckpt_path {path} has {key} of shape {tuple(value.shape)}, but this config "
                                  f"builds {tuple(expected[key].shape)}. Fix: repeat the overrides of the run "
                                  "that wrote it (see its .hydra/overrides.yaml).")
    missing = sorted(set(expected) - set(checkpoint["state_dict"]))
    if missing:
        raise CheckpointError(f"ckpt_path {path} lacks {missing[0]} (and {len(missing) - 1} more tensors); "
                              "it was written by a different architecture.")
