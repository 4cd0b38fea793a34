"""Test the fold models of a cross-validation together: the mean of their softmax probabilities.

The members are read from each fold's `test_predictions.npz`, the probabilities its own test pass produced
(same weights, same test-time augmentation), so no model is rebuilt or re-run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmnist.core.constants import CLASS_NAMES
from fmnist.core.errors import FmnistError
from fmnist.core.metric_keys import flatten_per_class
from fmnist.core.predictions import mean_ensemble, read_predictions
from fmnist.training.metrics import confusion_matrix, per_class_metrics, summary_metrics


def classification_metrics(probabilities: torch.Tensor, labels: torch.Tensor, prefix: str = "test",
                           class_names: Sequence[str] = CLASS_NAMES) -> dict[str, Any]:
    """The same figures, under the same names, as a single model's metrics.json (plus the NLL)."""
    num_classes = len(class_names)
    summary = summary_metrics(prefix, num_classes)(probabilities, labels)
    result: dict[str, Any] = {key: float(value) for key, value in summary.items()}
    result.update(flatten_per_class(prefix, per_class_metrics(num_classes)(probabilities, labels), class_names))
    result[f"{prefix}/nll"] = float(torch.nn.functional.nll_loss(probabilities.clamp_min(1e-12).log(), labels))
    result[f"{prefix}/confusion"] = confusion_matrix(num_classes)(probabilities, labels).tolist()
    return result


def ensemble_probabilities(prediction_files: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """The members' mean probabilities and the labels; every member must have scored the same test images."""
    if not prediction_files:
        raise FmnistError("no fold predictions to ensemble; the folds wrote no test_predictions.npz")
    try:
        combined = mean_ensemble([read_predictions(path) for path in prediction_files])
    except ValueError as exc:
        raise FmnistError(f"{exc} ({prediction_files[0]} ...)") from exc
    return combined.probabilities, combined.labels


def ensemble_test_metrics(prediction_files: Sequence[str | Path]) -> dict[str, Any]:
    """Test metrics of the mean of the fold models' probabilities."""
    probabilities, labels = ensemble_probabilities(prediction_files)
    return {"members": len(prediction_files),
            **classification_metrics(torch.from_numpy(probabilities), torch.from_numpy(labels))}
