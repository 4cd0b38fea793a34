"""The files a run directory holds, the one place their names are written, and how any of them is read as data;
standard library and YAML only, so the report reads runs without importing Lightning."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fmnist.core.limits import MAX_RUN_FILE_BYTES, clip, first_line

METRICS_FILE = "metrics.json"  # one run's figures (fit_and_test, eval)
RUN_INFO_FILE = "run_info.json"  # versions, commit and torch threads of the run (training/provenance.py)
COMPARISON_FILE = "comparison.json"  # an equal-budget tuned comparison's settings and per-model results (fmnist.tune)
SUMMARY_FILE = "cv_summary.json"  # a cross-validation's per-fold figures and fold ensemble
HISTORY_FILE = "history.csv"  # one row per epoch
PREDICTIONS_FILE = "test_predictions.npz"  # per test image: true label, predicted class, ten probabilities
RESOLVED_CONFIG_FILE = "resolved_config.yaml"  # the run's config with every interpolation resolved
OVERRIDES_FILE = ".hydra/overrides.yaml"  # Hydra's record of the overrides a run was started with
CHECKPOINT_DIR = "checkpoints"  # conf/callbacks/default.yaml writes best-epochNNN.ckpt and last.ckpt here
LAST_CHECKPOINT = "last.ckpt"
AVERAGED_CHECKPOINT = "averaged.ckpt"  # StochasticWeightAveraging's weights after fit
RUN_LOCK_FILE = ".run.lock"  # flock-ed by the live run that writes the dir (core/run_lock.py); left in place


# The config nodes fmnist's sweeper sets in each search job's overrides (fmnist.search): its trial, and the
# per-epoch reporter under `callbacks`; reports read them back from .hydra/overrides.yaml.
TRIAL_KEY = "search.trial"
TRIAL_CALLBACK = "search_trial"


class RunFileError(Exception):
    """A run file that cannot be used; the message says why, in a few words, for the caller to prefix its path."""


def read_run_bytes(path: Path) -> bytes:
    """A run file's bytes: a regular file (not a link, FIFO or device) of at most MAX_RUN_FILE_BYTES."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if os.path.islink(path):
            raise RunFileError("is a symbolic link; run files are read only as regular files in the run") from None
        raise RunFileError(f"cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise RunFileError("is not a regular file")
        if info.st_size > MAX_RUN_FILE_BYTES:
            raise RunFileError(f"{info.st_size:,} bytes, more than the {MAX_RUN_FILE_BYTES:,} a run file may have")
        data = handle.read(MAX_RUN_FILE_BYTES + 1)
    if len(data) > MAX_RUN_FILE_BYTES:
        raise RunFileError(f"more than the {MAX_RUN_FILE_BYTES:,} bytes a run file may have")
    return data


def read_run_file(path: Path) -> str:
    """A run file's text (read_run_bytes), which must be UTF-8."""
    data = read_run_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunFileError("is not UTF-8 text") from None


def read_run_json(path: Path) -> dict[str, Any]:
    """A run file holding one JSON object; RunFileError otherwise."""
    try:
        payload = json.loads(read_run_file(path))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5,000-digit number, [[[[...]]]]
        raise RunFileError(f"is not valid JSON ({first_line(exc, 120)})") from None
    if not isinstance(payload, dict):
        raise RunFileError(f"holds a JSON {type(payload).__name__}, expected an object")
    return payload


def read_run_yaml(path: Path) -> Any:
    """A run file's YAML, read with the safe loader (a Python tag is an error, never an object), or RunFileError."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(read_run_file(path), Loader=loader)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise RunFileError(f"is not safe YAML ({first_line(exc, 120)})") from None


def read_history_columns(path: Path, wanted: Sequence[str] | None = None) -> dict[str, list[float]]:
    """history.csv's columns (`wanted` ones, else all) as numbers, NaN for a blank cell; RunFileError if it is not
    a CSV of numbers. Parsed row by row, so its cost is linear in its (bounded) size."""
    try:
        rows = csv.reader(io.StringIO(read_run_file(path), newline=""))
        header = next(rows, None)
        if not header:
            raise RunFileError("is empty")
        columns = {name: index for index, name in enumerate(header) if wanted is None or name in wanted}
        if len(columns) != sum(header.count(name) for name in columns):
            raise RunFileError("names a column twice")
        values: dict[str, list[float]] = {name: [] for name in columns}
        for line, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise RunFileError(f"row {line} has {len(row)} fields, the header {len(header)}")
            for name, index in columns.items():
                value = float(row[index]) if row[index].strip() else math.nan
                if math.isinf(value):
                    raise ValueError(f"{clip(row[index], 40)} is infinite")
                values[name].append(value)
    except (csv.Error, ValueError) as exc:
        raise RunFileError(f"is not a CSV of numbers ({clip(exc, 80)})") from None
    return values


def read_history_rows(path: Path) -> list[dict[str, float | int]]:
    """history.csv as EpochHistory wrote it, one dict per epoch (blank cells left out); no file: no rows."""
    if not os.path.lexists(path):
        return []
    columns = read_history_columns(path)
    count = len(next(iter(columns.values()), []))
    return [{name: int(values[row]) if name == "epoch" else values[row] for name, values in columns.items()
             if not math.isnan(values[row])} for row in range(count)]
