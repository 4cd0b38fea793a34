"""A model is built on the meta device under a budget first, so a config's (or a checkpoint's) sizes are refused
before they take memory."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)

from fmnist.core.errors import FmnistError

MAX_MODULES = 100_000  # submodules of one model built from a config (a ResNet-18 has 60)


class ModelTooLarge(FmnistError):
    """A model config asks for more parameters or submodules than the limits allow."""


def build_within(build: Callable[[], nn.Module], max_elements: int, max_modules: int = MAX_MODULES) -> nn.Module:
    """Build once on the meta device, aborting as soon as torch's global registration hooks see more parameter and
    buffer elements, or submodules, than allowed (nothing is allocated); then build for real."""
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
        with torch.device("meta"):
            build()
    finally:
        for handle in handles:
            handle.remove()
    return build()
