"""Metric values on hand-made predictions, computed by hand."""

from __future__ import annotations

import pytest
import torch

from fmnist.training.metrics import confusion_matrix, per_class_metrics, summary_metrics


def one_hot_logits(predictions: list[int], num_classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float()


def test_macro_metrics_on_known_predictions() -> None:
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = [0, 0, 1, 2, 1, 1, 2, 0]
    metrics = summary_metrics("val", num_classes=3)
    metrics.update(one_hot_logits(predicted), target)
    values = {key: float(value) for key, value in metrics.compute().items()}
    # class 0: tp 2, fp 1, fn 2 -> P 2/3, R 1/2; class 1: tp 2, fp 1, fn 0 -> P 2/3, R 1; class 2: tp 1, fp 1, fn 1
    precision = [2 / 3, 2 / 3, 1 / 2]
    recall = [1 / 2, 1, 1 / 2]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    assert values["val/acc"] == pytest.approx(5 / 8)
    assert values["val/precision"] == pytest.approx(sum(precision) / 3)
    assert values["val/recall"] == pytest.approx(sum(recall) / 3)
    assert values["val/f1"] == pytest.approx(sum(f1) / 3)
    per_class = per_class_metrics(num_classes=3)
    per_class.update(one_hot_logits(predicted), target)
    assert per_class.compute()["acc"].tolist() == pytest.approx(recall)
    matrix = confusion_matrix(num_classes=3)
    matrix.update(one_hot_logits(predicted), target)
    assert matrix.compute().tolist() == [[2, 1, 1], [0, 2, 0], [1, 0, 1]]  # rows true, columns predicted
