"""What every model config builds: family, input kind, parameters and multiply-accumulates per image.

Configs are composed through Hydra exactly as `python -m fmnist.train model=<name>` would compose them,
so the figures describe what a run trains, overrides and interpolations included.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)
from torch.utils.flop_counter import FlopCounterMode

from fmnist.core.config_dir import CONF_DIR
from fmnist.core.constants import IMAGE_SIZE
from fmnist.core.errors import FmnistError

MAX_MODULES = 100_000  # submodules of one model built from a config (a ResNet-18 has 60)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    input: str
    params: int
    macs: int

    def as_dict(self) -> dict[str, str | int]:
        return asdict(self)


def model_names(conf_dir: str = CONF_DIR) -> list[str]:
    return sorted(path.stem for path in (Path(conf_dir) / "model").glob("*.yaml"))


def registered_model_config(name: str) -> DictConfig:
    """The model config `model=<name>` composes for the command running now: fmnist's own conf/model/, plus the
    folders the user put on `hydra.searchpath` (command line or their config), never anything a file names."""
    overrides = [f"model={name}"]
    searchpath = list(HydraConfig.get().searchpath) if HydraConfig.initialized() else []
    if searchpath:
        overrides.append(f"hydra.searchpath=[{','.join(searchpath)}]")
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides).model
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides).model


def example_input(input_kind: str, batch: int = 1) -> torch.Tensor:
    shape = (batch, 1, IMAGE_SIZE, IMAGE_SIZE) if input_kind == "image" else (batch, IMAGE_SIZE, IMAGE_SIZE)
    return torch.zeros(shape)


def count_params(net: nn.Module) -> int:
    """Trainable parameters as PyTorch counts them (BatchNorm's running statistics are buffers, not counted)."""
    return sum(parameter.numel() for parameter in net.parameters())


@torch.no_grad()
def count_macs(net: nn.Module, input_kind: str) -> int:
    """Multiply-accumulates for one image in eval mode, from torch's flop counter (MACs = flops / 2).

    oneDNN is switched off while counting: its fused CPU LSTM kernel is invisible to the flop counter,
    whereas the plain kernel runs as matrix products the counter sees.
    """
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oneDNN's flag setter warns about Intel-GPU TF32
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            net(example_input(input_kind))
    return counter.get_total_flops() // 2


class ModelTooLarge(FmnistError):
    """A model config asks for more parameters or submodules than the limits allow."""


@contextmanager
def construction_budget(max_elements: int, max_modules: int) -> Iterator[None]:
    """Abort building a module as soon as it registers more parameter and buffer elements, or more submodules,
    than allowed (torch's global registration hooks see every one as it is created)."""
    counts = {"elements": 0, "modules": 0}

    def count(kind: str, amount: int, cap: int, what: str) -> None:
        counts[kind] += amount
        if counts[kind] > cap:
            raise ModelTooLarge(f"over {cap:,} {what}")

    def on_tensor(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        if tensor is not None:
            count("elements", tensor.numel(), max_elements, "parameter and buffer elements (limits.max_params)")

    def on_module(module: nn.Module, name: str, submodule: nn.Module | None) -> None:
        count("modules", 1, max_modules, "submodules")

    handles = [register_module_parameter_registration_hook(on_tensor),
               register_module_buffer_registration_hook(on_tensor),
               register_module_module_registration_hook(on_module)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def build_within(build: Callable[[], nn.Module], max_elements: int, max_modules: int = MAX_MODULES) -> nn.Module:
    """Build once on the meta device under the budget (nothing is allocated, so a huge size costs nothing), then
    for real: a config's sizes are refused before they take memory."""
    with construction_budget(max_elements, max_modules), torch.device("meta"):
        build()
    return build()


def describe(model_cfg: DictConfig) -> ModelInfo:
    net = instantiate(model_cfg.net)
    return ModelInfo(name=model_cfg.name, family=model_cfg.family, input=model_cfg.input,
                     params=count_params(net), macs=count_macs(net, model_cfg.input))


def catalog(names: list[str] | None = None, conf_dir: str = CONF_DIR) -> list[ModelInfo]:
    """Describe the given model configs (all of conf/model/ by default), each composed as a run would."""
    infos = []
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        for name in names or model_names(conf_dir):
            infos.append(describe(compose("train", overrides=[f"model={name}"]).model))
    return infos


def format_table(infos: list[ModelInfo]) -> str:
    header = ("name", "family", "input", "params", "MACs/image")
    rows = [(info.name, info.family, info.input, f"{info.params:,}", f"{info.macs:,}") for info in infos]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    right = {3, 4}  # numbers line up on the right

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.rjust(width) if index in right else cell.ljust(width)
                 for index, (cell, width) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])
