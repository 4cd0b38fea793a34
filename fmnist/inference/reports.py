"""Result files of eval: calibration and mistakes figures (saved, headless, by fmnist.core.figures) and the per-class
table as CSV and markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassCalibrationError

from fmnist.core.atomic import write_csv_atomic, write_text_atomic
from fmnist.core.metric_keys import class_metric_key
from fmnist.core.numbers import markdown_table

PER_CLASS_COLUMNS = ("class", "name", "support", "correct", "acc", "precision", "f1", "most_confused_with", "count")


def expected_calibration_error(probabilities: torch.Tensor, targets: torch.Tensor, bins: int) -> float:
    """Top-label ECE (L1 over equal-width confidence bins), as torchmetrics defines it."""
    metric = MulticlassCalibrationError(num_classes=probabilities.shape[1], n_bins=bins, norm="l1")
    return float(metric(probabilities, targets))


def reliability_diagram(probabilities: torch.Tensor, targets: torch.Tensor, bins: int, title: str) -> Figure:
    """Bars at each bin's accuracy against the diagonal of perfect calibration; below it = overconfident."""
    confidence, predicted = probabilities.max(dim=1)
    index = torch.clamp((confidence * bins).long(), max=bins - 1)  # equal-width confidence bins
    count = torch.bincount(index, minlength=bins).float()
    mean_confidence = torch.bincount(index, weights=confidence, minlength=bins) / count  # NaN where empty
    accuracy = torch.bincount(index, weights=(predicted == targets).float(), minlength=bins) / count
    ece = expected_calibration_error(probabilities, targets, bins)
    edges = torch.linspace(0, 1, bins + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).numpy()
    filled = count > 0
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.bar(centres[filled.numpy()], accuracy[filled].numpy(), width=1 / bins, edgecolor="black", alpha=0.8,
            label="accuracy in bin")
    top.plot(mean_confidence[filled].numpy(), accuracy[filled].numpy(), "o", color="darkred", markersize=4,
             label="(mean confidence, accuracy)")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"{title}\nECE {ece:.4f} ({bins} bins)")
    top.legend(loc="upper left")
    bottom.bar(centres, count.numpy(), width=1 / bins, edgecolor="black", color="grey")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (top softmax probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    return figure


def mistakes_gallery(images: torch.Tensor, probabilities: torch.Tensor, targets: torch.Tensor,
                     class_names: Sequence[str], count: int, title: str) -> Figure:
    """The `count` mistakes the model is surest of (a wrong label, or a boundary learnt badly): image, index, true
    and predicted class."""
    confidence, predicted = probabilities.max(dim=1)
    wrong = torch.nonzero(predicted != targets).flatten()
    chosen = wrong[torch.argsort(confidence[wrong], descending=True, stable=True)][:count]
    columns = 5
    rows = max(1, math.ceil(len(chosen) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, chosen.tolist(), strict=False):
        axis.imshow(images[index].cpu().numpy(), cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"#{index} true: {class_names[int(targets[index])]}\n"
                       f"pred: {class_names[int(predicted[index])]} {float(confidence[index]):.2f}", fontsize=8)
    if len(chosen) == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def per_class_rows(metrics: Mapping[str, float], confusion: torch.Tensor,
                   class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class: support, accuracy (= recall), precision, F1 and the class it is most mistaken for;
    `metrics` holds the test stage's per-class figures under their logged names (test/class_f1/Bag)."""
    rows = []
    confused_with = confusion.clone().fill_diagonal_(-1).argmax(dim=1)  # each class's most frequent wrong guess
    for index, name in enumerate(class_names):
        confused = int(confused_with[index])
        rows.append({
            "class": index,
            "name": name,
            "support": int(confusion[index].sum()),
            "correct": int(confusion[index, index]),
            "acc": round(metrics[class_metric_key("test", "acc", name)], 4),
            "precision": round(metrics[class_metric_key("test", "precision", name)], 4),
            "f1": round(metrics[class_metric_key("test", "f1", name)], 4),
            "most_confused_with": class_names[confused],
            "count": int(confusion[index, confused]),
        })
    return rows


def write_per_class(rows: Sequence[dict[str, Any]], csv_path: Path, markdown_path: Path) -> None:
    write_csv_atomic(csv_path, rows)
    table = markdown_table(PER_CLASS_COLUMNS, [[row[column] for column in PER_CLASS_COLUMNS] for row in rows])
    write_text_atomic(markdown_path, table + "\n")
