"""How per-class figures are named in metrics.json, TensorBoard and the report's tables: written here only.

Standard library only, so the report can look the figures up without importing torchmetrics or Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def metric_safe(name: str) -> str:
    """'T-shirt/top' -> 'T-shirt_top': a slash would nest TensorBoard groups."""
    return name.replace("/", "_").replace(" ", "_")


def class_metric_key(stage: str, metric: str, class_name: str) -> str:
    """The logged name of one class's figure: ('test', 'f1', 'T-shirt/top') -> 'test/class_f1/T-shirt_top'."""
    return f"{stage}/class_{metric}/{metric_safe(class_name)}"


def class_column(stage: str, label: str, class_name: str) -> str:
    """The report's flat column for it: ('test', 'f1', 'T-shirt/top') -> 'test_f1_T-shirt_top'."""
    return f"{stage}_{label}_{metric_safe(class_name)}"


def flatten_per_class(stage: str, per_class: Mapping[str, torch.Tensor],
                      class_names: Sequence[str]) -> dict[str, float]:
    """One scalar per metric and class, from torchmetrics' per-class vectors (average='none')."""
    flat: dict[str, float] = {}
    for metric, values in per_class.items():
        for class_name, value in zip(class_names, values.tolist(), strict=True):
            flat[class_metric_key(stage, metric, class_name)] = value
    return flat
