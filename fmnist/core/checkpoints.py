"""The checkpoint format fmnist writes, and the one way to find, read and check such a file (torch only): every
reader goes through `read_checkpoint`, so a wrong or hostile file gets one clear line (docs/security.md)."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from packaging.version import InvalidVersion, Version

from fmnist.core.errors import FmnistError
from fmnist.core.limits import DEFAULT_LIMITS, Limits, clip, first_line, model_name_problem
from fmnist.core.numbers import is_finite_number
from fmnist.core.run_files import CHECKPOINT_DIR, LAST_CHECKPOINT, METRICS_FILE, RunFileError, read_run_json

CHECKPOINT_CONFIG_KEY = "fmnist_config"  # the resolved run config, stored by ClassifierModule.on_save_checkpoint
NET_PREFIX = "net."  # ClassifierModule holds the backbone as `self.net`
LAST = "last"  # ckpt_path=last: continue the run dir's newest checkpoint, in place
BEST_GLOB = "best-*.ckpt"  # ModelCheckpoint's best-epochNNN.ckpt (conf/callbacks/default.yaml)
# fmnist's data module: what eval and predict build (never a class a file names); Lightning saves its state_dict
# (the normalisation) in every checkpoint under its class name
DATAMODULE_TARGET = "fmnist.data.datamodule.FashionMnistDataModule"
DATAMODULE_STATE_KEY = DATAMODULE_TARGET.rsplit(".", 1)[1]
LIGHTNING_VERSION_KEY = "pytorch-lightning_version"  # Lightning migrates checkpoints by this version
PATH_STATE_KEYS = {"dirpath", "best_model_path", "kth_best_model_path", "last_model_path", "best_k_models"}
SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=-]{0,99}")  # a bare file name: no separator, no '..'
HOW_TO_FIX = ("Fix: pass ckpt_path=<run dir> or <run dir>/checkpoints/best-epochNNN.ckpt of an fmnist training run "
              "(training also takes ckpt_path=last, to continue its own run)")


class CheckpointError(FmnistError):
    """The checkpoint is missing, unreadable, unsafe, or not one fmnist wrote."""


def refuse(path: str | Path, problem: str, fix: str = HOW_TO_FIX) -> CheckpointError:
    """The one line that refuses the checkpoint at `path`: `ckpt_path <path>: <problem>. <fix>.`"""
    return CheckpointError(f"ckpt_path {clip(path)}: {problem}. {fix}.")


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a run keeps its newest checkpoint (conf/callbacks/default.yaml's last_checkpoint, every epoch)."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def recorded_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a finished run evaluated (metrics.json's best_ckpt: the averaged weights under SWA), looked
    up in this run dir's checkpoints folder, so a moved or copied run dir still finds it."""
    try:
        best = read_run_json(run_dir / METRICS_FILE).get("best_ckpt")
    except RunFileError:
        return None
    candidate = run_dir / CHECKPOINT_DIR / Path(str(best)).name
    return candidate if best and candidate.is_file() else None


def resolve_ckpt_path(value: Any, run_dir: str | Path | None = None, *, required: bool = False) -> Path | None:
    """The file a `ckpt_path` names (a file, a run dir's best checkpoint, or `last` of `run_dir`); None to start
    fresh (unset, or `last` before any save), which `required=True` refuses, for commands that need a model."""
    if value is None or str(value).strip() in ("", "???"):
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


def _check_container(path: Path, limits: Limits) -> None:
    """Before unpickling: a bounded zip archive of stored entries; torch never deflates, so a deflated entry is a
    bomb, and the legacy non-zip format allocates what its pickle declares before reading it."""
    size = path.stat().st_size
    if size > limits.max_checkpoint_mb * 2**20:
        raise refuse(path, f"{size / 2**20:,.0f} MB, over limits.max_checkpoint_mb={limits.max_checkpoint_mb}",
                     "Fix: raise it (limits.max_checkpoint_mb=N) if you trust the file")
    if not zipfile.is_zipfile(path):
        raise refuse(path, "not a zip-format PyTorch checkpoint (the only format torch.save and Lightning write)")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise refuse(path, f"a damaged zip archive ({clip(exc, 120)})") from None
    packed = [entry.filename for entry in entries if entry.compress_type != zipfile.ZIP_STORED]
    if packed or sum(entry.file_size for entry in entries) > size:
        raise refuse(path, f"refused, it holds compressed entries ({clip(', '.join(packed), 120)}) that would expand "
                           "beyond the file's size; torch never writes those")


def read_checkpoint(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Any:
    """torch.load with weights_only=True: a checkpoint that would run code is refused, never executed; its size
    and layout are checked first (`_check_container`), so a small file cannot take gigabytes."""
    path = Path(path)
    try:
        _check_container(path, limits)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Unsupported global" in message:
            wanted = message.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
            raise refuse(path, f"refused, loading it would run code ({clip(wanted, 120)}); fmnist only loads "
                               "checkpoints that hold plain tensors and values") from None
        raise refuse(path, "refused, it cannot be loaded safely with weights_only=True (it would run code or build "
                           "objects other than tensors and plain values, or it is not a PyTorch checkpoint)") from None
    except EOFError:
        raise refuse(path, "empty or truncated, not a PyTorch checkpoint") from None
    except RuntimeError as exc:  # a damaged zip archive: torch names the part it could not read
        reason = clip(first_line(exc, default="unreadable").split(". ")[0], 160)
        raise refuse(path, f"not a readable PyTorch checkpoint ({reason}); it may be truncated") from None
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, OSError, zipfile.BadZipFile):
        raise refuse(path, "not a PyTorch checkpoint file") from None


def is_bare_state_dict(content: Any) -> bool:
    """A mapping of names to tensors and nothing else (what ddp_spawn's worker hands back)."""
    return isinstance(content, dict) and bool(content) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in content.items())


def check_layout(checkpoint: Any, path: Path) -> None:
    """The entries Lightning and fmnist read back have the types they expect, so none ends in a traceback."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise refuse(path, "a PyTorch file, but not a Lightning checkpoint (it holds no model state_dict)")
    for key, value in checkpoint["state_dict"].items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise refuse(path, f"its state_dict entry {clip(key, 80)!r} is a {type(value).__name__}, not a tensor")
    for key, kind in (("epoch", int), ("global_step", int), ("callbacks", dict), ("loops", dict),
                      ("optimizer_states", list), ("lr_schedulers", list), (DATAMODULE_STATE_KEY, dict)):
        value = checkpoint.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise refuse(path, f"its {key!r} is a {type(value).__name__}, not {kind.__name__}")
    version = checkpoint.get(LIGHTNING_VERSION_KEY)
    try:
        if version is not None:
            Version(str(version))
    except InvalidVersion:
        raise refuse(path, f"its {LIGHTNING_VERSION_KEY} {clip(version, 80)!r} is not a version number") from None
    if not all(isinstance(state, dict) for state in (checkpoint.get("callbacks") or {}).values()):
        raise refuse(path, "a callback state in it is not a mapping")


def load_checkpoint(value: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The checkpoint dict of a file (or run dir), read safely; anything but a Lightning checkpoint is refused."""
    path = resolve_ckpt_path(value, required=True)
    checkpoint = read_checkpoint(path, limits)
    check_layout(checkpoint, path)
    return checkpoint


def confine_callback_paths(checkpoint: dict[str, Any], checkpoint_dir: Path, own: bool) -> dict[str, Any]:
    """Callback states name files Lightning later loads or deletes: the run's `own` checkpoint keeps them re-based
    to its folder by bare name, a foreign one loses them, so a file never reaches anything elsewhere."""
    folder = checkpoint_dir.resolve()
    states = checkpoint.get("callbacks") or {}
    for key in list(states):
        state = states[key]
        if not PATH_STATE_KEYS & set(state):
            continue
        if not own:
            del states[key]
            continue
        for name in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if name in state:
                state[name] = _rebased(state[name], folder)
        if "dirpath" in state:
            state["dirpath"] = str(checkpoint_dir)
        if isinstance(state.get("best_k_models"), dict):
            kept = {_rebased(file, folder): score for file, score in state["best_k_models"].items()}
            state["best_k_models"] = {file: score for file, score in kept.items() if file}
    return checkpoint


def _rebased(recorded: Any, folder: Path) -> str:
    """A recorded checkpoint path as the file of that name in `folder`; '' when it names no plain file."""
    name = Path(recorded).name if isinstance(recorded, str) and recorded else ""
    return str(folder / name) if SAFE_FILE_NAME.fullmatch(name) else ""


def run_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The training run's config stored in the checkpoint, with a `model` mapping whose name is a model config's
    name (the catalog entry it is rebuilt from); one line saying fmnist did not write it otherwise."""
    stored = checkpoint.get(CHECKPOINT_CONFIG_KEY)
    model = stored.get("model") if isinstance(stored, dict) else None
    if not isinstance(model, dict):
        raise refuse(path, f"a Lightning checkpoint, but not written by fmnist (it has no '{CHECKPOINT_CONFIG_KEY}' "
                           "run config to rebuild the model from)")
    problem = model_name_problem(model.get("name"))
    if problem:
        raise refuse(path, f"its model name {problem}")
    return stored


def net_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's own weights: the module's `net.` prefix and torch.compile's wrapper prefix removed."""
    return {key.removeprefix(NET_PREFIX).removeprefix("_orig_mod."): value for key, value in state_dict.items()
            if key.startswith(NET_PREFIX)}


def check_checkpoint_fits(checkpoint: dict[str, Any], module: torch.nn.Module, model_name: str | None,
                          path: str | Path) -> None:
    """Refuse a checkpoint of another model, or of the same one at other sizes (say hidden_size 64 vs 100), before
    its weights fail to load halfway; `model_name` None skips the name (a module built without a run config)."""
    if model_name is not None:
        saved = run_config(checkpoint, path)["model"]["name"]
        if saved != model_name:
            raise CheckpointError(f"ckpt_path {clip(path)} belongs to model '{saved}', but this run builds "
                                  f"'{model_name}'. Fix: add model={saved} (and that run's other overrides), or pick "
                                  f"a {model_name} checkpoint.")
    expected = module.state_dict()
    for key, value in checkpoint["state_dict"].items():
        if key in expected and tuple(expected[key].shape) != tuple(value.shape):
            raise CheckpointError(f"ckpt_path {clip(path)} has {key} of shape {tuple(value.shape)}, but this config "
                                  f"builds {tuple(expected[key].shape)}. Fix: repeat the overrides of the run "
                                  "that wrote it (see its .hydra/overrides.yaml).")
    saved = set(checkpoint["state_dict"])
    for names, verb, note in ((set(expected) - saved, "lacks", ""),
                              (saved - set(expected), "holds", " that this model does not have")):
        if names:
            raise CheckpointError(f"ckpt_path {clip(path)} {verb} {clip(min(names), 80)} (and {len(names) - 1} more "
                                  f"tensors){note}; it was written by a different architecture.")


def stored_normalisation(state: Any) -> tuple[float, float]:
    """A checkpoint's normalisation, checked as data: a finite mean and a finite, positive std."""
    values = [state.get(key) if isinstance(state, dict) else None for key in ("mean", "std")]
    if not all(is_finite_number(value) for value in values) or values[1] <= 0:
        raise ValueError(f"its stored normalisation {clip(state, 120)!r} is not a finite mean and a positive std")
    return float(values[0]), float(values[1])
