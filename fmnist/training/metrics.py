"""torchmetrics collections for one stage; macro averages are spelled out, never left to defaults."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from fmnist.core.constants import NUM_CLASSES


def summary_metrics(prefix: str, num_classes: int = NUM_CLASSES) -> MetricCollection:
    """Accuracy (share of correct images) and macro-averaged precision, recall and F1."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=f"{prefix}/",
    )


def per_class_metrics(num_classes: int = NUM_CLASSES) -> MetricCollection:
    """Per-class accuracy (= recall of that class), precision and F1."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="none"),
            "precision": MulticlassPrecision(num_classes, average="none"),
            "f1": MulticlassF1Score(num_classes, average="none"),
        }
    )


def confusion_matrix(num_classes: int = NUM_CLASSES) -> MulticlassConfusionMatrix:
    """Counts with rows = true class, columns = predicted class."""
    return MulticlassConfusionMatrix(num_classes)
