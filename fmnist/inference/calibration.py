"""How far the model's confidence can be trusted: expected calibration error and a reliability diagram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torchmetrics.classification import MulticlassCalibrationError  # noqa: E402


def expected_calibration_error(probabilities: torch.Tensor, targets: torch.Tensor, bins: int) -> float:
    """Top-label ECE (L1 over equal-width confidence bins), as torchmetrics defines it."""
    metric = MulticlassCalibrationError(num_classes=probabilities.shape[1], n_bins=bins, norm="l1")
    return float(metric(probabilities, targets))


def reliability_bins(probabilities: torch.Tensor, targets: torch.Tensor, bins: int) -> dict[str, torch.Tensor]:
    """Per equal-width confidence bin: image count, mean confidence and accuracy (NaN where empty)."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == targets).float()
    index = torch.clamp((confidence * bins).long(), max=bins - 1)
    count = torch.bincount(index, minlength=bins).float()
    mean_confidence = torch.bincount(index, weights=confidence, minlength=bins) / count
    accuracy = torch.bincount(index, weights=correct, minlength=bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy}


def reliability_diagram(probabilities: torch.Tensor, targets: torch.Tensor, bins: int, title: str) -> Figure:
    """Bars at each bin's accuracy against the diagonal of perfect calibration; below it = overconfident."""
    table = reliability_bins(probabilities, targets, bins)
    ece = expected_calibration_error(probabilities, targets, bins)
    edges = torch.linspace(0, 1, bins + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).numpy()
    filled = table["count"] > 0
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.bar(centres[filled.numpy()], table["accuracy"][filled].numpy(), width=1 / bins, edgecolor="black",
            alpha=0.8, label="accuracy in bin")
    top.plot(table["confidence"][filled].numpy(), table["accuracy"][filled].numpy(), "o", color="darkred",
             markersize=4, label="(mean confidence, accuracy)")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"{title}\nECE {ece:.4f} ({bins} bins)")
    top.legend(loc="upper left")
    bottom.bar(centres, table["count"].numpy(), width=1 / bins, edgecolor="black", color="grey")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (top softmax probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    return figure
