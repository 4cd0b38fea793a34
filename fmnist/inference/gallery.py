"""The mistakes the model is surest of: where a label may be wrong or a class boundary is learnt badly."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def most_confident_mistakes(probabilities: torch.Tensor, targets: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of wrong predictions, highest predicted probability first."""
    confidence, predicted = probabilities.max(dim=1)
    wrong = torch.nonzero(predicted != targets).flatten()
    order = torch.argsort(confidence[wrong], descending=True, stable=True)
    return wrong[order][:count]


def mistakes_gallery(images: torch.Tensor, probabilities: torch.Tensor, targets: torch.Tensor,
                     class_names: Sequence[str], count: int, title: str) -> Figure:
    """A grid of the `count` most confident mistakes: the image, its index, true and predicted class."""
    chosen = most_confident_mistakes(probabilities, targets, count)
    columns = 5
    rows = max(1, math.ceil(len(chosen) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    confidence, predicted = probabilities.max(dim=1)
    for axis, index in zip(axes.flat, chosen.tolist(), strict=False):
        axis.imshow(images[index].cpu().numpy(), cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"#{index} true: {class_names[int(targets[index])]}\n"
                       f"pred: {class_names[int(predicted[index])]} {float(confidence[index]):.2f}", fontsize=8)
    if len(chosen) == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
