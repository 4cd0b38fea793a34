"""Figures shared by training (TensorBoard), eval, lr_find and the report; matplotlib runs headless (Agg), so
none of them needs a display."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fmnist.core.atomic import write_bytes_atomic  # noqa: E402


def confusion_heatmap(matrix: torch.Tensor, class_names: Sequence[str], title: str) -> Figure:
    """Rows are true classes, columns predicted; annotated counts make the hard pairs (Shirt/T-shirt) obvious."""
    figure, axes = plt.subplots(figsize=(8, 7))
    sns.heatmap(matrix.cpu().numpy(), annot=True, fmt="d", cmap="Blues", cbar=False,
                xticklabels=class_names, yticklabels=class_names, ax=axes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: Path, dpi: int = 120, **savefig: Any) -> Path:
    """The figure as a PNG, written atomically, and closed (pyplot keeps every open figure alive)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, **savefig)
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
    return path
