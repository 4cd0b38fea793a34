"""What every model config builds: family, input kind, parameters and multiply-accumulates per image.

Configs are composed through Hydra exactly as `python -m fmnist.train model=<name>` would compose them,
so the figures describe what a run trains, overrides and interpolations included.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fmnist.core.config_dir import CONF_DIR
from fmnist.core.constants import IMAGE_SIZE


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
