"""Run dirs written by hand, as fit_and_test leaves them, for the report's tests (no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from fmnist.core.constants import CLASS_NAMES
from fmnist.core.metric_keys import metric_safe


def write_run(directory: Path, model: str, fold: int, val: float, test: float, overrides: list[str] | None,
              params: int = 1000, epochs: int = 3) -> None:
    """A finished run as fit_and_test leaves it: metrics.json, history.csv and (for a job) .hydra/overrides.yaml."""
    directory.mkdir(parents=True)
    if overrides is not None:
        (directory / ".hydra").mkdir()
        (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = {"model": model, "fold": fold, "status": "completed", "params": params, "epochs": epochs,
               "val/acc": val, "train/acc": val + 0.05, "test/acc": test, "test/precision": test,
               "test/recall": test, "test/f1": test - 0.01, "train_seconds": 10.0 + fold, "ms_per_step": 2.0,
               "images_per_second": 5000.0, "test/confusion": [[100 if i == j else 1 for j in range(10)]
                                                              for i in range(10)]}
    for name in CLASS_NAMES:
        for metric in ("f1", "precision", "acc"):
            metrics[f"test/class_{metric}/{metric_safe(name)}"] = test
    (directory / "metrics.json").write_text(json.dumps(metrics))
    rows = [{"epoch": e, "train/acc": val - 0.1 + 0.05 * e, "val/acc": val - 0.05 + 0.02 * e,
             "train/loss": 1.0 - 0.1 * e, "val/loss": 0.9 - 0.1 * e} for e in range(epochs)]
    with (directory / "history.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_predicted_run(directory: Path, model: str, fold: int, num_folds: int, val: float, accuracy: float,
                        seed: int = 42) -> None:
    """A finished fold with metrics.json and test_predictions.npz whose accuracy is `accuracy`."""
    import numpy as np

    from fmnist.core.predictions import write_predictions

    write_run(directory, model, fold, val, accuracy, None)
    metrics = json.loads((directory / "metrics.json").read_text())
    metrics.update({"num_folds": num_folds, "split_seed": 0, "holdout_size": None, "train_subset": None,
                    "seed": seed})
    (directory / "metrics.json").write_text(json.dumps(metrics))
    labels = np.arange(10_000) % 10
    predicted = labels.copy()
    wrong = np.random.default_rng(fold + len(model)).choice(10_000, int(round((1 - accuracy) * 10_000)),
                                                             replace=False)
    predicted[wrong] = (labels[wrong] + 1) % 10
    write_predictions(directory / "test_predictions.npz", np.eye(10, dtype=np.float32)[predicted], labels)


def write_failed(directory: Path, model: str, error: str) -> None:
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps({"model": model, "status": "failed", "error": error}))


def leaderboard(out: Path) -> list[dict[str, str]]:
    with (out / "leaderboard.csv").open() as stream:
        return list(csv.DictReader(stream))
