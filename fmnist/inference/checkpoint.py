"""Rebuild a trained backbone from a checkpoint file, treating everything in it as data (docs/security.md): the file
only names its model, whose class comes from the catalog, and gives checked plain values as its arguments."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fmnist.core.checkpoints import (
    DATAMODULE_STATE_KEY,
    DATAMODULE_TARGET,
    NET_PREFIX,
    CheckpointError,
    load_checkpoint,
    net_weights,
    refuse,
    resolve_ckpt_path,
    run_config,
    stored_normalisation,
)
from fmnist.core.constants import INPUT_KINDS
from fmnist.core.limits import DEFAULT_LIMITS, MAX_NAME_CHARS, Limits, clip, first_line
from fmnist.core.metrics_file import SPLIT_KEYS
from fmnist.core.numbers import is_int
from fmnist.models.budget import ModelTooLarge, build_within
from fmnist.models.catalog import registered_model_config

# The split and batch keys of `data` that rebuild training's test loader; each an integer or null.
DATA_KEYS = (*SPLIT_KEYS, "batch_size", "eval_batch_size", "steps_per_execution")
# The precisions a checkpoint may say its run trained and tested with (trainer.precision); 32-true if it says none.
PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-mixed", "64-true")
MAX_LIST_ITEMS = 64  # a list argument (widths, blocks) longer than this is no model of this catalog
MODULES_PER_TENSOR = 8  # building may create at most this many submodules per tensor the file holds (+ slack)


@dataclass(frozen=True)
class LoadedModel:
    """A backbone ready for inference, and a config rebuilt from the checkpoint's checked plain values."""

    net: nn.Module
    config: DictConfig
    path: Path
    epoch: int | None
    normalisation: tuple[float, float] | None = None  # the training data's mean and std, when the file has them

    @property
    def name(self) -> str:
        return str(self.config.model.name)

    @property
    def input_kind(self) -> str:
        return str(self.config.model.input)


def _is_plain(value: Any, depth: int = 0) -> bool:
    """A number, string, boolean or null, or a short list of them (one level of nesting at most)."""
    if value is None or isinstance(value, (bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= MAX_NAME_CHARS and "${" not in value
    if isinstance(value, (list, tuple)) and depth < 2:
        return len(value) <= MAX_LIST_ITEMS and all(_is_plain(item, depth + 1) for item in value)
    return False


def _mapping(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise refuse(path, f"its stored config has no mapping at {where} (found {type(value).__name__})")
    return value


def _net_arguments(stored_model: dict[str, Any], entry: DictConfig, path: Path) -> tuple[type, dict[str, Any]]:
    """The catalog's class for the model, and the file's arguments to it: plain values its signature names."""
    target = str(entry.net._target_)
    net = _mapping(stored_model.get("net", {}), path, "model.net")
    stored_target = net.get("_target_")
    if stored_target is not None and stored_target != target:
        raise refuse(path, f"its model.net._target_ {clip(stored_target, 120)!r} is not the catalog's class for "
                            f"model '{entry.name}' ({target}); fmnist never builds a class a file names")
    try:
        cls = get_class(target)
    except Exception as exc:  # a user's catalog entry whose module does not import
        raise CheckpointError(f"model '{entry.name}': its config's _target_ {target} cannot be imported "
                              f"({clip(exc, 120)}). Fix: make its package importable (PYTHONPATH=<folder holding it>, "
                              "or pip install it), or check that model config.") from None
    parameters = inspect.signature(cls).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    allowed = set(entry.net) - {"_target_"} if takes_any else set(parameters)
    arguments = {key: value for key, value in OmegaConf.to_container(entry.net).items() if key != "_target_"}
    for key, value in net.items():
        if key == "_target_":
            continue
        if not isinstance(key, str) or key.startswith("_") or key not in allowed:
            raise refuse(path, f"its model.net has the key {clip(key, 80)!r}, which {target} does not take "
                                f"(it takes {', '.join(sorted(allowed))})")
        if not _is_plain(value):
            raise refuse(path, f"its model.net.{key} is not a plain value (a number, string, boolean or a short "
                                f"list of them, with no interpolation): {clip(value, 120)!r}")
        arguments[key] = value
    return cls, arguments


def _flag(section: dict[str, Any], key: str, path: Path, where: str) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise refuse(path, f"its {where}.{key} is {clip(value, 80)!r}, not true or false")
    return value


def _integers(section: dict[str, Any], keys: tuple[str, ...], path: Path, where: str = "") -> dict[str, Any]:
    """The `keys` that `section` holds, each checked to be an integer or null."""
    found = {key: section[key] for key in keys if key in section}
    for key, value in found.items():
        if value is not None and not is_int(value):
            raise refuse(path, f"its {where}{key} is {clip(value, 80)!r}, not an integer or null")
    return found


def rebuilt_config(entry: DictConfig, stored_model: dict[str, Any], stored: dict[str, Any],
                   arguments: dict[str, Any], path: Path) -> DictConfig:
    """A fresh config holding only checked values: what eval, predict and export read about the run."""
    if stored_model.get("input", entry.input) != entry.input or entry.input not in INPUT_KINDS:
        raise refuse(path, f"its model.input {clip(stored_model.get('input'), 80)!r} is not the catalog's "
                            f"{entry.input!r} for model '{entry.name}'")
    seed = _integers(stored, ("seed",), path).get("seed")
    augmentation = _mapping(stored.get("augmentation", {}), path, "augmentation")
    precision = _mapping(stored.get("trainer", {}), path, "trainer").get("precision", "32-true")
    if precision not in PRECISIONS:
        raise refuse(path, f"its trainer.precision is {clip(precision, 80)!r}, not one of {PRECISIONS}")
    config = {
        "model": {"name": str(entry.name), "family": str(entry.family), "input": str(entry.input),
                  "tta_flip": _flag(stored_model, "tta_flip", path, "model"), "channels_last": False,
                  "compile": False, "net": {"_target_": str(entry.net._target_), **arguments}},
        # fmnist's own data module (never a class the file names), with the split and batch sizes training used
        "data": {"_target_": DATAMODULE_TARGET, "input_kind": str(entry.input),
                 **_integers(_mapping(stored.get("data", {}), path, "data"), DATA_KEYS, path, "data.")},
        "augmentation": {"flip": _flag(augmentation, "flip", path, "augmentation")},
        "seed": seed,
        "trainer": {"precision": precision},
    }
    return OmegaConf.create(config)


def load_model(value: Any, limits: Limits = DEFAULT_LIMITS) -> LoadedModel:
    """The catalog's backbone for the checkpoint's model name with its `net.` weights, on the CPU in eval mode."""
    path = resolve_ckpt_path(value, required=True)
    checkpoint = load_checkpoint(path, limits)
    weights = net_weights(checkpoint["state_dict"])
    if not weights:
        raise refuse(path, f"its state_dict has no '{NET_PREFIX}*' weights")
    stored = run_config(checkpoint, path)
    stored_model = stored["model"]
    name = stored_model["name"]
    try:  # the trusted model config of that name: the file only names it
        entry = registered_model_config(name)
    except HydraException:
        raise refuse(path, f"its model '{name}' is not in the model catalog (conf/model/)",
                      "Fix: if it is your own model, put the folder that holds model/" f"{name}.yaml on the command "
                      "line: hydra.searchpath=[file:///path/to/your/conf]") from None
    cls, arguments = _net_arguments(stored_model, entry, path)
    config = rebuilt_config(entry, stored_model, stored, arguments, path)
    try:  # sized on the meta device under the caps, then built for real
        net = build_within(lambda: cls(**arguments), limits.max_params, MODULES_PER_TENSOR * len(weights) + 64)
    except ModelTooLarge as exc:
        raise refuse(path, f"its config builds a model '{config.model.name}' {exc}", "Fix: raise "
                            "limits.max_params=N if you trust the file") from None
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError, AttributeError) as exc:
        raise refuse(path, f"its config cannot build model '{config.model.name}' ({type(exc).__name__}: "
                            f"{first_line(exc, 160)})") from None
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        raise refuse(path, f"its weights do not fit model {config.model.name} as its config describes it "
                            f"({first_line(exc, 200)})", "Fix: pick a checkpoint fmnist wrote") from None
    net.eval().requires_grad_(False)
    normalisation = None
    if DATAMODULE_STATE_KEY in checkpoint:  # absent from checkpoints written before fmnist saved it
        try:
            normalisation = stored_normalisation(checkpoint[DATAMODULE_STATE_KEY])
        except ValueError as exc:
            raise refuse(path, str(exc)) from None
    # check_layout let only an int (or nothing) through as the epoch
    return LoadedModel(net=net, config=config, path=path, epoch=checkpoint.get("epoch"), normalisation=normalisation)
