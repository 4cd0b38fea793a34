"""IDX reading: real files load, and every kind of damage names the file instead of a numpy traceback."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fmnist.core.errors import DataError
from fmnist.data.idx import IMAGES_MAGIC, LABELS_MAGIC, OFFICIAL_FILES, IdxSpec, load_checked
from fmnist.data.sources import load_fashion_mnist, locate


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(dim.to_bytes(4, "big") for dim in array.shape)
    return header + array.astype(np.uint8).tobytes()


def small_spec(magic: int, count: int) -> IdxSpec:
    return IdxSpec("small", magic, count, md5="0" * 32)


def test_parse_round_trip_gzipped_and_plain(tmp_path: Path) -> None:
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    raw = idx_bytes(images, IMAGES_MAGIC)
    (tmp_path / "plain").write_bytes(raw)
    with gzip.open(tmp_path / "packed.gz", "wb") as handle:
        handle.write(raw)
    for name in ("plain", "packed.gz"):
        tensor = load_checked(tmp_path / name, small_spec(IMAGES_MAGIC, 3), verify_checksum=False)
        assert tensor.dtype == torch.uint8 and tensor.shape == (3, 28, 28)
        assert torch.equal(tensor, torch.from_numpy(images.astype(np.uint8)))


@pytest.mark.parametrize(
    ("content", "spec", "message"),
    [
        (b"\x00\x00", small_spec(LABELS_MAGIC, 2), "too short"),
        (idx_bytes(np.zeros(4), 1234), small_spec(LABELS_MAGIC, 4), "magic number"),
        (idx_bytes(np.zeros(4), IMAGES_MAGIC), small_spec(LABELS_MAGIC, 4), "magic number"),
        (idx_bytes(np.zeros(4), LABELS_MAGIC)[:-1], small_spec(LABELS_MAGIC, 4), "truncated"),
        (idx_bytes(np.zeros(4), LABELS_MAGIC), small_spec(LABELS_MAGIC, 5), "expected 5"),
        (idx_bytes(np.full(4, 12), LABELS_MAGIC), small_spec(LABELS_MAGIC, 4), "labels must be 0-9"),
        (idx_bytes(np.zeros((2, 27, 28)), IMAGES_MAGIC), small_spec(IMAGES_MAGIC, 2), "expected 28x28"),
    ],
)
def test_damaged_files_name_the_file(tmp_path: Path, content: bytes, spec: IdxSpec, message: str) -> None:
    path = tmp_path / "damaged-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        load_checked(path, spec, verify_checksum=False)
    assert str(path) in str(caught.value)


def test_truncated_gzip_is_a_data_error(tmp_path: Path, fashion) -> None:
    source = fashion.source / "train-labels-idx1-ubyte.gz"
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(source.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated or corrupt") as caught:
        load_checked(path, OFFICIAL_FILES["train-labels-idx1-ubyte"])
    assert str(path) in str(caught.value)


def test_checksum_mismatch_is_reported(tmp_path: Path, fashion) -> None:
    raw = bytearray(gzip.decompress((fashion.source / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label, so only the checksum can notice
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(bytes(raw))
    spec = OFFICIAL_FILES["t10k-labels-idx1-ubyte"]
    with pytest.raises(DataError, match="checksum"):
        load_checked(path, spec)
    assert load_checked(path, spec, verify_checksum=False).shape == (10_000,)


def test_real_data_is_official(fashion) -> None:
    assert fashion.train_images.shape == (60_000, 28, 28) and fashion.test_images.shape == (10_000, 28, 28)
    assert torch.bincount(fashion.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10
    pixels = fashion.train_images.float() / 255
    assert abs(pixels.mean().item() - 0.2860) < 1e-3 and abs(pixels.std().item() - 0.3530) < 1e-3


@pytest.mark.parametrize("layout", ["flat_plain", "torchvision_raw"])
def test_data_dir_layouts_are_found_first(tmp_path: Path, fashion, layout: str) -> None:
    folder = tmp_path / "data" if layout == "flat_plain" else tmp_path / "data" / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    for stem in OFFICIAL_FILES:
        if layout == "flat_plain":
            (folder / stem).write_bytes(gzip.decompress((fashion.source / f"{stem}.gz").read_bytes()))
        else:
            shutil.copy(fashion.source / f"{stem}.gz", folder / f"{stem}.gz")
    assert locate(tmp_path / "data", download=False, system_dir=tmp_path / "nowhere") == folder
    loaded = load_fashion_mnist(tmp_path / "data", download=False, system_dir=tmp_path / "nowhere")
    assert torch.equal(loaded.test_labels, fashion.test_labels)


def test_missing_data_without_download_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        locate(tmp_path / "empty", download=False, system_dir=tmp_path / "nowhere")
