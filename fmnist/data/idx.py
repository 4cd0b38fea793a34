"""Read and validate IDX files, so a truncated or foreign file fails with its name, not a numpy traceback."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist.core.constants import IMAGE_SIZE, NUM_CLASSES
from fmnist.core.errors import DataError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


@dataclass(frozen=True)
class IdxSpec:
    """What one official file must contain."""

    stem: str
    magic: int
    count: int
    md5: str  # of the uncompressed content, as published with the data set


OFFICIAL_FILES: dict[str, IdxSpec] = {
    spec.stem: spec
    for spec in (
        IdxSpec("train-images-idx3-ubyte", IMAGES_MAGIC, 60_000, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        IdxSpec("train-labels-idx1-ubyte", LABELS_MAGIC, 60_000, "9018921c3c673c538a1fc5bad174d6f9"),
        IdxSpec("t10k-images-idx3-ubyte", IMAGES_MAGIC, 10_000, "8181f5470baa50b63fa0f6fddb340f0a"),
        IdxSpec("t10k-labels-idx1-ubyte", LABELS_MAGIC, 10_000, "15d484375f8d13e6eb1aabb0c3f46965"),
    )
}


def read_raw(path: Path) -> bytes:
    """Return the file's uncompressed bytes, whether or not it is gzipped."""
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); the file is truncated or corrupt. "
                        "Fix: delete it and fetch the data again (make data).") from exc


def parse_idx(raw: bytes, path: Path, expected_magic: int | None = None) -> torch.Tensor:
    """Decode IDX bytes into a uint8 tensor, checking the header against the payload size."""
    if len(raw) < 8:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header; the file is truncated.")
    magic = int.from_bytes(raw[0:4], "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC) or (expected_magic is not None and magic != expected_magic):
        want = expected_magic if expected_magic is not None else f"{IMAGES_MAGIC} or {LABELS_MAGIC}"
        raise DataError(f"{path}: IDX magic number {magic}, expected {want}; this is not the right IDX file.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header truncated ({len(raw)} bytes).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = header + int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise DataError(f"{path}: header promises shape {shape} ({expected_bytes} bytes) but the file has "
                        f"{len(raw)} bytes; it is truncated or corrupt. Fix: fetch the data again.")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def load_checked(path: Path, spec: IdxSpec, verify_checksum: bool = True) -> torch.Tensor:
    """Load one official file and prove it is the official content."""
    raw = read_raw(path)
    tensor = parse_idx(raw, path, spec.magic)
    if tensor.shape[0] != spec.count:
        raise DataError(f"{path}: holds {tensor.shape[0]} items, expected {spec.count}.")
    if spec.magic == IMAGES_MAGIC and tuple(tensor.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: images are {tuple(tensor.shape[1:])}, expected 28x28.")
    if spec.magic == LABELS_MAGIC and tensor.numel() and int(tensor.max()) >= NUM_CLASSES:
        raise DataError(f"{path}: label {int(tensor.max())} found, labels must be 0-9.")
    if verify_checksum:
        digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        if digest != spec.md5:
            raise DataError(f"{path}: content checksum {digest} differs from the official {spec.md5}; "
                            "the file is corrupt or not Fashion-MNIST. Fix: fetch the data again, or set "
                            "data.verify_checksums=false to use modified files on purpose.")
    return tensor
