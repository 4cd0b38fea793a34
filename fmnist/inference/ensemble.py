"""Test the fold models of a cross-validation together: the mean of the softmax probabilities each fold's own test
pass wrote to its `test_predictions.npz`, so no model is rebuilt or re-run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fmnist.core.constants import CLASS_NAMES, NUM_CLASSES
from fmnist.core.errors import FmnistError
from fmnist.core.metric_keys import flatten_per_class
from fmnist.core.predictions import mean_ensemble, read_predictions
from fmnist.training.metrics import confusion_matrix, per_class_metrics, summary_metrics


def ensemble_test_metrics(prediction_files: Sequence[str | Path]) -> dict[str, Any]:
    """The figures of a single model's metrics.json, under the same names (plus the NLL), for the members' mean;
    every member must have scored the same test images."""
    if not prediction_files:
        raise FmnistError("no fold predictions to ensemble; the folds wrote no test_predictions.npz")
    try:
        combined = mean_ensemble([read_predictions(path) for path in prediction_files])
    except ValueError as exc:
        raise FmnistError(f"{exc} ({prediction_files[0]} ...)") from exc
    probabilities, labels = torch.from_numpy(combined.probabilities), torch.from_numpy(combined.labels)
    summary = summary_metrics("test", NUM_CLASSES)(probabilities, labels)
    result: dict[str, Any] = {"members": len(prediction_files), **{key: float(value) for key, value in summary.items()}}
    result.update(flatten_per_class("test", per_class_metrics(NUM_CLASSES)(probabilities, labels), CLASS_NAMES))
    result["test/nll"] = float(torch.nn.functional.nll_loss(probabilities.clamp_min(1e-12).log(), labels))
    result["test/confusion"] = confusion_matrix(NUM_CLASSES)(probabilities, labels).tolist()
    return result
