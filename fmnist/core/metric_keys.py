"""How per-class figures are named in metrics.json, TensorBoard and the report's tables: written here only, with
the standard library, so the report looks them up without importing torchmetrics or Lightning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from fmnist.core.numbers import is_finite_number

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
    return {class_metric_key(stage, metric, class_name): value for metric, values in per_class.items()
            for class_name, value in zip(class_names, values.tolist(), strict=True)}


# metrics.json's figures besides the `<stage>/...` ones: the run's size, length and speed
RUN_EXTRAS = ("params", "epochs", "best_epoch", "train_seconds", "ms_per_step", "images_per_second")


def run_scalars(metrics: Mapping[str, object]) -> dict[str, float]:
    """The figures of a metrics.json: what loggers receive at the end and cv averages over folds."""
    return {key: float(value) for key, value in metrics.items()  # type: ignore[arg-type]
            if ("/" in key or key in RUN_EXTRAS) and is_finite_number(value)}
