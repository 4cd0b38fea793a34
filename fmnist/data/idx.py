"""Read and validate IDX files, so a truncated, foreign or hostile file fails with its name, not a traceback; the
header is checked and the payload capped before anything is allocated, so a gzip bomb costs its header's size."""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from fmnist.core.constants import IMAGE_SIZE, NUM_CLASSES
from fmnist.core.errors import DataError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
ITEM_SHAPES = {IMAGES_MAGIC: (IMAGE_SIZE, IMAGE_SIZE), LABELS_MAGIC: ()}  # the shape of one item of each kind
GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 20  # read and hashed a chunk at a time: the payload array is the only large allocation
REFETCH = "Fix: delete it and fetch the data again (make data)."


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


def _shape(stream: BinaryIO, path: Path, magic: int, count: int | None, max_count: int, fix: str) -> tuple[int, ...]:
    """The header's shape, checked before any payload is read: the magic, the item shape and the item count (or,
    when `count` is None, the cap)."""
    head = stream.read(4)  # buffered (gzip or file) streams return fewer bytes only at the end
    if len(head) < 4:
        raise DataError(f"{path}: only {len(head)} bytes, too short for an IDX header; the file is truncated. {fix}")
    found = int.from_bytes(head, "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found}, expected {magic}; this is not the right IDX file. {fix}")
    ndim = head[3]  # 3 for images, 1 for labels: fixed by the magic number checked above
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: header truncated ({4 + len(dims)} bytes). {fix}")
    shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    if shape[1:] != ITEM_SHAPES[magic]:
        raise DataError(f"{path}: images are {shape[1:]}, expected 28x28. {fix}")
    if count is not None and shape[0] != count:
        raise DataError(f"{path}: holds {shape[0]:,} items, expected {count:,}. {fix}")
    if shape[0] > max_count:
        raise DataError(f"{path}: its header declares {shape[0]:,} items, more than the cap limits.max_images="
                        f"{max_count}. Fix: split the file, or raise the cap with limits.max_images=N.")
    return shape


def read_idx(path: Path, magic: int, count: int | None, max_count: int, checksum: bool = False,
             fix: str = REFETCH) -> tuple[torch.Tensor, str | None]:
    """An IDX file of `magic`'s kind holding `count` items (any number up to `max_count` when None) as uint8, and
    the MD5 of its uncompressed content if asked; it costs the payload array plus one chunk, whatever its length."""
    digest = hashlib.md5(usedforsecurity=False) if checksum else None
    try:
        with path.open("rb") as handle:
            gzipped = handle.read(2) == GZIP_MAGIC
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as stream:
            shape = _shape(stream, path, magic, count, max_count, fix)
            payload = np.empty(math.prod(shape), dtype=np.uint8)  # bounded by max_count items just above
            view = memoryview(payload)
            filled = 0
            if digest is not None:
                digest.update(magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape))
            while filled < payload.size:
                got = stream.readinto(view[filled: filled + CHUNK_BYTES])
                if not got:
                    break
                if digest is not None:
                    digest.update(view[filled: filled + got])
                filled += got
            if filled < payload.size:
                raise DataError(f"{path}: header promises shape {shape} ({payload.size:,} bytes of data) but the "
                                f"file ends after {filled:,}; it is truncated or corrupt. {fix}")
            if stream.read(1):
                raise DataError(f"{path}: holds more data than its header's shape {shape} ({payload.size:,} "
                                f"bytes); it is corrupt or not an IDX file. {fix}")
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read ({exc}); the file is truncated or corrupt. {fix}") from exc
    return torch.from_numpy(payload.reshape(shape)), digest.hexdigest() if digest is not None else None


def load_checked(path: Path, spec: IdxSpec, verify_checksum: bool = True) -> torch.Tensor:
    """Load one official file and prove it is the official content."""
    tensor, md5 = read_idx(path, spec.magic, spec.count, spec.count, checksum=verify_checksum)
    if spec.magic == LABELS_MAGIC and tensor.numel() and int(tensor.max()) >= NUM_CLASSES:
        raise DataError(f"{path}: label {int(tensor.max())} found, labels must be 0-9.")
    if md5 is not None and md5 != spec.md5:
        raise DataError(f"{path}: content checksum {md5} differs from the official {spec.md5}; "
                        "the file is corrupt or not Fashion-MNIST. Fix: fetch the data again, or set "
                        "data.verify_checksums=false to use modified files on purpose.")
    return tensor
