"""Figures logged to TensorBoard; matplotlib runs headless (Agg) so training works without a display."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


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
