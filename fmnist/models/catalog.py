"""What every model config builds: family, input kind, parameters and multiply-accumulates per image, each config
composed as `fmnist.train model=<name>` composes it (a user's own through `hydra.searchpath`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fmnist.core.config_dir import CONF_DIR
from fmnist.core.constants import IMAGE_SIZE, INPUT_KINDS
from fmnist.core.errors import ConfigError, FmnistError
from fmnist.core.limits import model_name_problem

MODEL_FAMILIES = ("cnn", "sequence")  # what a model config's `family` may say (reports group by it)
# Every key a model config declares: a missing one fails deep inside training, a typo would be silently ignored.
MODEL_KEYS = ("name", "family", "input", "net", "compile", "channels_last", "tta_flip")
FLAG_KEYS = ("channels_last", "tta_flip")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    input: str
    params: int
    macs: int


def searchpath_overrides(searchpath: Sequence[str]) -> list[str]:
    """The Hydra override that adds config folders (`file:///abs/dir`, `file://rel/dir` or `pkg://package`)."""
    return [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []


def model_names(conf_dir: str = CONF_DIR, searchpath: Sequence[str] = ()) -> list[str]:
    """Every model config: conf/model/ plus the `model/` folders of the config dirs on `searchpath`."""
    if not searchpath:
        return sorted(path.stem for path in (Path(conf_dir) / "model").glob("*.yaml"))
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return sorted(loader.get_group_options("model", config_name="train",
                                               overrides=searchpath_overrides(searchpath)))


def check_model_config(model_cfg: DictConfig, expected_name: str | None = None) -> None:
    """The checks every model config passes, built-in or a user's own, each failing as one ConfigError that names
    the key and the fix."""
    name = model_cfg.get("name") if isinstance(model_cfg, DictConfig) else None
    where = f"model config {name!r}" if isinstance(name, str) else "the model config"
    if not isinstance(model_cfg, DictConfig):
        raise ConfigError("model", f"{where} is not a mapping", "choose a model config with model=<name>")
    missing = [key for key in MODEL_KEYS if key not in model_cfg]
    if missing:
        raise ConfigError("model", f"{where} lacks {', '.join(missing)}",
                          "declare every key of a model config (docs/own_model.md: name, family, input, net; "
                          "compile, channels_last, tta_flip, or start it with defaults: [/base/model@_here_, _self_])")
    unknown = sorted(str(key) for key in model_cfg if key not in MODEL_KEYS)
    if unknown:
        raise ConfigError(f"model.{unknown[0]}", f"{where} has the unknown key(s) {', '.join(unknown)}",
                          f"keep only {', '.join(MODEL_KEYS)}; the class's own arguments go under model.net")
    problem = model_name_problem(name)
    if problem:
        raise ConfigError("model.name", problem, "name the model as its YAML file, e.g. name: my_cnn")
    if expected_name is not None and name != expected_name:
        raise ConfigError("model.name", f"model/{expected_name}.yaml says name: {name}",
                          f"use name: {expected_name} (checkpoints are rebuilt by that name)")
    if model_cfg.family not in MODEL_FAMILIES:
        raise ConfigError("model.family", f"{where}: {model_cfg.family!r} is not a model family",
                          f"use one of {', '.join(MODEL_FAMILIES)}")
    if model_cfg.input not in INPUT_KINDS:
        raise ConfigError("model.input", f"{where}: {model_cfg.input!r} is not an input kind",
                          f"use one of {', '.join(INPUT_KINDS)} (image: (B, 1, 28, 28), rows: (B, 28, 28))")
    for key in FLAG_KEYS:
        if not isinstance(model_cfg[key], bool):
            raise ConfigError(f"model.{key}", f"{where}: {model_cfg[key]!r} is not true or false", "use true or false")
    net = model_cfg.net
    target = net.get("_target_") if isinstance(net, DictConfig) else None
    if not isinstance(target, str) or not target:
        raise ConfigError("model.net._target_", f"{where} names no class to build",
                          "set net._target_ to your nn.Module's import path, e.g. my_models.MyCNN")


def registered_model_config(name: str) -> DictConfig:
    """The model config `model=<name>` composes for the command running now (conf/model/ and the user's
    `hydra.searchpath`), never anything a file names."""
    searchpath = list(HydraConfig.get().searchpath) if HydraConfig.initialized() else []
    overrides = [f"model={name}", *searchpath_overrides(searchpath)]
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides).model
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides).model


def count_params(net: nn.Module) -> int:
    """Trainable parameters as PyTorch counts them (BatchNorm's running statistics are buffers, not counted)."""
    return sum(parameter.numel() for parameter in net.parameters())


@torch.no_grad()
def count_macs(net: nn.Module, input_kind: str) -> int:
    """Multiply-accumulates for one image in eval mode, from torch's flop counter (MACs = flops / 2), with oneDNN
    off: the counter does not see its fused CPU LSTM kernel."""
    net.eval()
    shape = (1, 1, IMAGE_SIZE, IMAGE_SIZE) if input_kind == "image" else (1, IMAGE_SIZE, IMAGE_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oneDNN's flag setter warns about Intel-GPU TF32
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            net(torch.zeros(shape))
    return counter.get_total_flops() // 2


def describe(model_cfg: DictConfig) -> ModelInfo:
    """A model config's size and cost; a user's class that does not build is one line naming the fix."""
    try:
        net = instantiate(model_cfg.net)
    except Exception as exc:
        cause = exc.__cause__ or exc
        target = OmegaConf.select(model_cfg, "net._target_")
        raise FmnistError(
            f"model {model_cfg.name!r}: cannot build {target} ({' '.join(str(cause).split())[:200]}). Fix: make its "
            "package importable (PYTHONPATH=<folder holding it>, or pip install it) and check its arguments "
            "under net") from None
    return ModelInfo(name=model_cfg.name, family=model_cfg.family, input=model_cfg.input,
                     params=count_params(net), macs=count_macs(net, model_cfg.input))


def catalog(names: list[str] | None = None, conf_dir: str = CONF_DIR,
            searchpath: Sequence[str] = ()) -> list[ModelInfo]:
    """Describe the given model configs (all of conf/model/ and of the `searchpath` folders by default), each
    composed as a run would and checked as a run checks it."""
    infos = []
    extra = searchpath_overrides(searchpath)
    names = names or model_names(conf_dir, searchpath)
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        for name in names:
            model_cfg = compose("train", overrides=[f"model={name}", *extra]).model
            check_model_config(model_cfg, expected_name=name)
            infos.append(describe(model_cfg))
    return infos


def format_table(infos: list[ModelInfo]) -> str:
    header = ("name", "family", "input", "params", "MACs/image")
    rows = [(info.name, info.family, info.input, f"{info.params:,}", f"{info.macs:,}") for info in infos]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    aligns = "<<<>>"  # numbers line up on the right
    line = "  ".join(f"{{:{align}{width}}}" for align, width in zip(aligns, widths, strict=True))
    return "\n".join(line.format(*row).rstrip() for row in [header, *rows])
