"""Training-epoch metrics at the cost of one argmax per step (logging torchmetrics every step cost more than a small
model's step, docs/speed.md), with torchmetrics' definitions, derived once an epoch."""

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
    """One training epoch's predictions, targets and losses, kept on the device and counted in one bincount at the
    epoch's end, cheaper than counting every step."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.predictions: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.mean_losses: list[torch.Tensor] = []

    def __bool__(self) -> bool:
        return bool(self.targets)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, mean_loss: torch.Tensor) -> None:
        self.predictions.append(logits.argmax(dim=1))
        self.targets.append(targets)
        self.mean_losses.append(mean_loss.detach())

    @torch.no_grad()
    def compute(self, prefix: str) -> dict[str, torch.Tensor]:
        classes = self.num_classes
        targets = torch.cat(self.targets)
        pairs = targets * classes + torch.cat(self.predictions)
        confusion = torch.bincount(pairs, minlength=classes * classes).view(classes, classes)
        summary = summary_from_confusion(confusion)
        losses = torch.stack(self.mean_losses).float()
        sizes = torch.tensor([len(batch) for batch in self.targets], dtype=losses.dtype, device=losses.device)
        summary["loss"] = (losses * sizes).sum() / len(targets)
        return {f"{prefix}/{name}": value.float() for name, value in summary.items()}

    def reset(self) -> None:
        self.predictions, self.targets, self.mean_losses = [], [], []
