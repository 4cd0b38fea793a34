"""Result files of eval: figures as PNG and the per-class table as CSV and markdown, all written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fmnist.core.atomic import write_csv_atomic, write_text_atomic
from fmnist.core.metric_keys import class_metric_key
from fmnist.core.numbers import markdown_table

PER_CLASS_COLUMNS = ("class", "name", "support", "correct", "acc", "precision", "f1", "most_confused_with", "count")


def per_class_rows(metrics: Mapping[str, float], confusion: torch.Tensor,
                   class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class: support, accuracy (= recall), precision, F1 and the class it is most mistaken for;
    `metrics` holds the test stage's per-class figures under their logged names (test/class_f1/Bag)."""
    rows = []
    for index, name in enumerate(class_names):
        errors = confusion[index].clone()
        errors[index] = -1
        confused = int(errors.argmax())
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
