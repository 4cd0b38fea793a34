"""Training-epoch metrics at the cost of one bincount per step.

Logging a torchmetrics collection and the loss through `self.log` on every training step cost more
than the forward and backward pass of the small study models on a CPU (see docs/speed.md). Here each
step only adds its confusion counts and loss sum to tensors on the device (no host sync, no Python
bookkeeping per metric); accuracy and macro precision / recall / F1 are derived once an epoch, with
torchmetrics' definitions (macro averages skip classes absent from both targets and predictions).
"""

from __future__ import annotations

import torch


def summary_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """acc (micro), precision, recall, f1 (macro) of a (C, C) matrix with rows = true, columns = predicted."""
    confusion = confusion.double()
    true_positives = confusion.diagonal()
    support = confusion.sum(dim=1)  # tp + fn
    predicted = confusion.sum(dim=0)  # tp + fp
    present = (support + predicted) > 0

    def safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
        return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.zeros_like(numerator))

    def macro(per_class: torch.Tensor) -> torch.Tensor:
        return (per_class * present).sum() / present.sum().clamp(min=1)

    return {
        "acc": true_positives.sum() / confusion.sum().clamp(min=1),
        "precision": macro(safe_ratio(true_positives, predicted)),
        "recall": macro(safe_ratio(true_positives, support)),
        "f1": macro(safe_ratio(2 * true_positives, support + predicted)),
    }


class EpochTally:
    """Running confusion counts and loss sum of one training epoch, kept on the training device."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.confusion: torch.Tensor | None = None
        self.loss_sum: torch.Tensor | None = None
        self.images = 0

    def __bool__(self) -> bool:
        return self.images > 0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, mean_loss: torch.Tensor) -> None:
        classes = self.num_classes
        counts = torch.bincount(targets * classes + logits.argmax(dim=1), minlength=classes * classes)
        loss_sum = mean_loss.detach().float() * len(targets)
        if self.confusion is None or self.loss_sum is None:
            self.confusion, self.loss_sum = counts, loss_sum
        else:
            self.confusion += counts
            self.loss_sum += loss_sum
        self.images += len(targets)

    def compute(self, prefix: str) -> dict[str, torch.Tensor]:
        if self.confusion is None or self.loss_sum is None:
            raise RuntimeError("no training step was tallied this epoch")
        summary = summary_from_confusion(self.confusion.view(self.num_classes, self.num_classes))
        summary["loss"] = self.loss_sum / self.images
        return {f"{prefix}/{name}": value.float() for name, value in summary.items()}

    def reset(self) -> None:
        self.confusion, self.loss_sum, self.images = None, None, 0
