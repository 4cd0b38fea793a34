"""The files a run directory holds and the status values they carry: the one place their names are written.

Only numpy and the standard library here, so that the report can read runs without importing Lightning.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.core.atomic import write_bytes_atomic

METRICS_FILE = "metrics.json"  # one run's figures (fit_and_test, eval)
RUN_INFO_FILE = "run_info.json"  # versions, commit and torch threads of the run (training/provenance.py)
SUMMARY_FILE = "cv_summary.json"  # a cross-validation's per-fold figures and fold ensemble
HISTORY_FILE = "history.csv"  # one row per epoch
PREDICTIONS_FILE = "test_predictions.npz"  # per test image: true label, predicted class, ten probabilities
RESOLVED_CONFIG_FILE = "resolved_config.yaml"  # the run's config with every interpolation resolved
CHECKPOINT_DIR = "checkpoints"  # conf/callbacks/default.yaml writes best-epochNNN.ckpt and last.ckpt here
LAST_CHECKPOINT = "last.ckpt"
AVERAGED_CHECKPOINT = "averaged.ckpt"  # StochasticWeightAveraging's weights after fit
COMPLETED = "completed"
FAILED = "failed"


@dataclass(frozen=True)
class Predictions:
    """A model's test-set output: `probabilities` (N, 10) float32, `predicted` and `labels` (N,) int64."""

    labels: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


def mean_ensemble(members: list[Predictions]) -> Predictions:
    """The mean of the members' probabilities (a fold ensemble); every member must have scored the same images."""
    if any(not np.array_equal(member.labels, members[0].labels) for member in members):
        raise ValueError("the members scored different test images; ensemble only runs of one test set")
    probabilities = np.mean([member.probabilities for member in members], axis=0)
    return Predictions(members[0].labels, probabilities.argmax(axis=1), probabilities)


def write_predictions(path: str | Path, probabilities: np.ndarray, labels: np.ndarray) -> None:
    """Save test predictions atomically (about 400 KB for the 10k test images)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=np.asarray(labels, dtype=np.uint8),
                        predicted=probabilities.argmax(axis=1).astype(np.uint8), probabilities=probabilities)
    write_bytes_atomic(path, buffer.getvalue())


def read_predictions(path: str | Path) -> Predictions:
    with np.load(path, allow_pickle=False) as data:
        return Predictions(labels=data["labels"].astype(np.int64), predicted=data["predicted"].astype(np.int64),
                           probabilities=data["probabilities"].astype(np.float32))
