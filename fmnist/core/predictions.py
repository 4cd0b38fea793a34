"""test_predictions.npz, a model's output on every test image: the one module that writes, reads and checks it,
and the fold ensemble of several (their mean probabilities). Only numpy and the standard library here."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.core.atomic import write_bytes_atomic
from fmnist.core.constants import NUM_CLASSES, NUM_TEST
from fmnist.core.errors import DataError
from fmnist.core.run_files import RunFileError, read_run_bytes

# array -> (its shape after the image count, the dtype kinds it may have, and the two in words)
ARRAYS = {"labels": ((), "iu", "integers", "(N,)"), "predicted": ((), "iu", "integers", "(N,)"),
          "probabilities": ((NUM_CLASSES,), "f", "floats", f"(N, {NUM_CLASSES})")}
MAX_ARRAY_BYTES = NUM_TEST * NUM_CLASSES * 8 + 65_536  # float64 probabilities and the largest npy header


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
    """A test_predictions.npz as write_predictions leaves it, else DataError: the file is data, so each array's
    header is checked before its data is read (no declared gigabytes, no pickled objects)."""
    return _checked_predictions(path, None)


def predictions_from_bytes(data: bytes, path: str | Path) -> Predictions:
    """The same checks on a file's bytes already read once (the archive copies the very bytes it checked)."""
    return _checked_predictions(path, data)


def _checked_predictions(path: str | Path, data: bytes | None) -> Predictions:
    """The file's bytes (`data`, else read here) parsed and checked; any problem becomes one DataError."""
    try:
        data = read_run_bytes(Path(path)) if data is None else data
        if len(data) > len(ARRAYS) * MAX_ARRAY_BYTES:
            raise RunFileError(f"{len(data):,} bytes, more than valid predictions can take")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = sorted(info.filename for info in archive.infolist())
            if names != sorted(f"{name}.npy" for name in ARRAYS):
                raise RunFileError(f"holds [{', '.join(names[:5])[:200]}], expected exactly labels, predicted and "
                                   "probabilities")
            for name in ARRAYS:
                _check_header(archive, name)
        with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
            return _checked({name: loaded[name] for name in ARRAYS})
    except RunFileError as exc:
        problem = str(exc)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, NotImplementedError) as exc:
        problem = f"cannot be read ({str(exc)[:200] or type(exc).__name__})"
    raise DataError(f"{path}: {problem}; these are not test predictions fmnist wrote. Fix: remove the file, or test "
                    "the run's checkpoint again to rewrite it.")


def _check_header(archive: zipfile.ZipFile, name: str) -> None:
    """One array's size, dtype and shape, from its zip entry and npy header, before any of its data is read."""
    shape, kinds, kinds_text, shape_text = ARRAYS[name]
    info = archive.getinfo(f"{name}.npy")
    if info.file_size > MAX_ARRAY_BYTES:
        raise RunFileError(f"{name} declares {info.file_size:,} bytes, more than valid predictions take")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        found, _, dtype = read_header(stream)
    if dtype.hasobject:
        raise RunFileError(f"{name} holds Python objects (a pickle, which could run code); refused unread")
    if dtype.kind not in kinds or dtype.itemsize > 8 or dtype.shape != ():
        raise RunFileError(f"{name} has dtype {str(dtype)[:50]}, expected {kinds_text}")
    if len(found) != 1 + len(shape) or found[1:] != shape:
        raise RunFileError(f"{name} has shape {found}, expected {shape_text}")
    if not 1 <= found[0] <= NUM_TEST:
        raise RunFileError(f"{name} holds {found[0]:,} images, expected 1 to {NUM_TEST:,}")


def _checked(arrays: dict[str, np.ndarray]) -> Predictions:
    """The arrays as Predictions, if they agree in length and hold classes and finite probabilities."""
    lengths = sorted({len(array) for array in arrays.values()})
    if len(lengths) != 1:
        raise RunFileError(f"labels, predicted and probabilities differ in length ({', '.join(map(str, lengths))})")
    labels, predicted = arrays["labels"].astype(np.int64), arrays["predicted"].astype(np.int64)
    for name, values in (("labels", labels), ("predicted", predicted)):
        if values.min() < 0 or values.max() >= NUM_CLASSES:
            raise RunFileError(f"{name} holds a class outside 0-{NUM_CLASSES - 1}")
    probabilities = arrays["probabilities"].astype(np.float32)
    if not np.isfinite(probabilities).all():
        raise RunFileError("probabilities holds NaN or infinity")
    return Predictions(labels=labels, predicted=predicted, probabilities=probabilities)
