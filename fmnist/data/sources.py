"""Find the four official files: the user's folder first, then the Debian copy, then the internet."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from fmnist.core.errors import DataError
from fmnist.data.idx import OFFICIAL_FILES, load_checked

log = logging.getLogger(__name__)

SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = (
    "Fix: run `make data` (installs Debian's dataset-fashion-mnist as root), or "
    "`sudo apt-get install dataset-fashion-mnist`, or copy the four official files "
    "(train-images-idx3-ubyte.gz ...) into data.data_dir, or allow data.download=true with internet access."
)


@dataclass(frozen=True)
class FashionMnist:
    """The official split as uint8 tensors: images (N, 28, 28), labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path


def _find_file(folder: Path, stem: str) -> Path | None:
    return next((path for path in (folder / f"{stem}.gz", folder / stem) if path.is_file()), None)


def find_complete_folder(candidates: list[Path]) -> Path | None:
    """The first folder holding all four files (gzipped or not)."""
    return next((folder for folder in candidates if all(_find_file(folder, stem) for stem in OFFICIAL_FILES)), None)


def candidate_folders(data_dir: Path, system_dir: Path = SYSTEM_DATA_DIR) -> list[Path]:
    """Flat official layout, torchvision's layout, then the system copy."""
    return [data_dir, data_dir / "FashionMNIST" / "raw", system_dir]


def locate(data_dir: Path, download: bool, system_dir: Path = SYSTEM_DATA_DIR) -> Path:
    """Return a folder with all four files, downloading them if allowed and needed."""
    folder = find_complete_folder(candidate_folders(data_dir, system_dir))
    if folder is not None:
        return folder
    if not download:
        raise DataError(f"Fashion-MNIST is not in {data_dir} nor {system_dir}, and data.download=false. "
                        f"{HOW_TO_GET}")
    from torchvision.datasets import FashionMNIST  # imported only to download

    log.info("Fashion-MNIST not found locally; downloading into %s", data_dir)
    try:
        FashionMNIST(root=str(data_dir), train=True, download=True)
        FashionMNIST(root=str(data_dir), train=False, download=True)
    except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError ...
        raise DataError(f"Fashion-MNIST is not in {data_dir} nor {SYSTEM_DATA_DIR}, and the download "
                        f"failed ({type(exc).__name__}: {exc}). {HOW_TO_GET}") from exc
    folder = find_complete_folder(candidate_folders(data_dir, system_dir))
    if folder is None:
        raise DataError(f"the download into {data_dir} did not produce the four files. {HOW_TO_GET}")
    return folder


def load_fashion_mnist(data_dir: str | Path, download: bool = True, verify_checksums: bool = True,
                       system_dir: Path = SYSTEM_DATA_DIR) -> FashionMnist:
    """Load and validate the whole data set (about 55 MB of uint8)."""
    folder = locate(Path(data_dir), download, system_dir)
    train_images, train_labels, test_images, test_labels = (
        load_checked(_find_file(folder, stem), spec, verify_checksums)  # type: ignore[arg-type]
        for stem, spec in OFFICIAL_FILES.items())  # in the order of FashionMnist's fields
    return FashionMnist(train_images, train_labels.long(), test_images, test_labels.long(), folder)
