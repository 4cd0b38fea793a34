"""The files a run directory holds and the status values they carry: the one place their names are written.

Only numpy and the standard library here, so that the report can read runs without importing Lightning.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fmnist.core.atomic import write_bytes_atomic
from fmnist.core.constants import NUM_CLASSES, NUM_TEST
from fmnist.core.errors import DataError
from fmnist.core.limits import MAX_RUN_FILE_BYTES, clip

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
COMPLETED = "completed"
FAILED = "failed"
INTERRUPTED = "interrupted"  # stopped by SIGTERM or SIGINT; its last.ckpt continues it (fmnist.resume)
PRUNED = "pruned"  # stopped early by a hyperparameter search's pruner (fmnist.search.trial); not a failure


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
        raise RunFileError(f"is not valid JSON ({clip(str(exc).splitlines()[0] if str(exc) else exc, 120)})") from None
    if not isinstance(payload, dict):
        raise RunFileError(f"holds a JSON {type(payload).__name__}, expected an object")
    return payload


def read_run_yaml(path: Path) -> Any:
    """A run file holding YAML, read with the safe loader (a Python tag is an error, never an object);
    RunFileError otherwise."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(read_run_file(path), Loader=loader)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise RunFileError(f"is not safe YAML ({clip(str(exc).splitlines()[0] if str(exc) else exc, 120)})") from None


def _number(text: str) -> float:
    value = float(text) if text.strip() else math.nan
    if math.isinf(value):
        raise ValueError(f"{clip(text, 40)} is infinite")
    return value


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
                values[name].append(_number(row[index]))
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
    """A test_predictions.npz as write_predictions leaves it, or DataError naming the file and what is wrong.

    The file is data (a run dir may come from anyone): it must be a regular file no larger than the largest valid
    one, a zip of exactly labels (N,), predicted (N,) integers and probabilities (N, 10) floats with
    1 <= N <= 10,000; each array's header (shape, dtype) is checked before its data is read, so a small file
    cannot declare gigabytes, and an object array (a pickle, which could run code) is refused unread.
    """
    path = Path(path)
    kinds = {"labels": ((None,), "iu"), "predicted": ((None,), "iu"), "probabilities": ((None, NUM_CLASSES), "f")}
    max_array_bytes = NUM_TEST * NUM_CLASSES * 8 + 65_536  # float64 probabilities and the largest npy header

    def refuse(problem: str) -> DataError:
        return DataError(f"{path}: {problem}; these are not test predictions fmnist wrote. Fix: remove the file, "
                         "or test the run's checkpoint again to rewrite it.")

    try:
        mode = path.lstat()
        if stat.S_ISLNK(mode.st_mode) or not stat.S_ISREG(mode.st_mode):
            raise refuse("not a regular file (a link, folder or device)")
        if mode.st_size > len(kinds) * max_array_bytes:
            raise refuse(f"{mode.st_size:,} bytes, more than valid predictions can take")
        arrays: dict[str, np.ndarray] = {}
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if sorted(members) != sorted(f"{name}.npy" for name in kinds):
                shown = ", ".join(sorted(members)[:5])[:200]
                raise refuse(f"holds [{shown}], expected exactly labels, predicted and probabilities")
            for name, (shape, letters) in kinds.items():
                info = members[f"{name}.npy"]
                if info.file_size > max_array_bytes:
                    raise refuse(f"{name} declares {info.file_size:,} bytes, more than valid predictions take")
                with archive.open(info) as stream:
                    version = np.lib.format.read_magic(stream)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    found, fortran, dtype = read_header(stream)
                    if dtype.hasobject:
                        raise refuse(f"{name} holds Python objects (a pickle, which could run code); refused unread")
                    if dtype.kind not in letters or dtype.itemsize > 8 or dtype.shape != ():
                        raise refuse(f"{name} has dtype {str(dtype)[:50]}, expected "
                                     + ("integers" if letters == "iu" else "floats"))
                    if len(found) != len(shape) or any(want is not None and got != want
                                                       for got, want in zip(found, shape, strict=True)):
                        raise refuse(f"{name} has shape {found}, expected "
                                     + ("(N,)" if len(shape) == 1 else f"(N, {NUM_CLASSES})"))
                    if not 1 <= found[0] <= NUM_TEST:
                        raise refuse(f"{name} holds {found[0]:,} images, expected 1 to {NUM_TEST:,}")
                    size = int(np.prod(found)) * dtype.itemsize
                    data = stream.read(size)
                    if len(data) != size:
                        raise refuse(f"{name} is truncated")
                    arrays[name] = np.frombuffer(data, dtype).reshape(found, order="F" if fortran else "C")
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise refuse(f"cannot be read ({str(exc)[:200] or type(exc).__name__})") from None
    lengths = {len(array) for array in arrays.values()}
    if len(lengths) != 1:
        raise refuse(f"labels, predicted and probabilities differ in length ({', '.join(map(str, sorted(lengths)))})")
    labels, predicted = arrays["labels"].astype(np.int64), arrays["predicted"].astype(np.int64)
    probabilities = arrays["probabilities"].astype(np.float32)
    for name, values in (("labels", labels), ("predicted", predicted)):
        if values.min() < 0 or values.max() >= NUM_CLASSES:
            raise refuse(f"{name} holds a class outside 0-{NUM_CLASSES - 1}")
    if not np.isfinite(probabilities).all():
        raise refuse("probabilities holds NaN or infinity")
    return Predictions(labels=labels, predicted=predicted, probabilities=probabilities)


def run_identity(cfg: Any) -> dict[str, Any]:
    """The fields every metrics.json starts with, whatever ended the run (completed, interrupted, pruned): which
    model, fold and seed it is, and its tags."""
    from omegaconf import OmegaConf

    return {"model": OmegaConf.select(cfg, "model.name"), "fold": OmegaConf.select(cfg, "data.fold"),
            "num_folds": OmegaConf.select(cfg, "data.num_folds"), "seed": OmegaConf.select(cfg, "seed"),
            "tags": list(OmegaConf.select(cfg, "tags") or [])}
