"""A model is built on the meta device under a budget first, so a config's (or a checkpoint's) sizes are refused
before they take memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
