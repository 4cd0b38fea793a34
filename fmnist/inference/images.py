"""Turn user images into Fashion-MNIST images: 28x28 uint8 grey, light object on a black background.

Zalando made Fashion-MNIST from product photos (white background) in seven steps, listed in the
data set's README: PNG; trim edges close to the corner colour (5% of the largest RGB distance);
resize the longest edge to 28 by subsampling pixels; sharpen (Gaussian, radius and sigma 1.0);
extend the shortest edge to 28, centred; negate; 8-bit grey. `to_fashion_mnist` follows them with
Pillow; docs/inference.md lists the exact calls and where they approximate the original.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from fmnist.core.constants import IMAGE_SIZE
from fmnist.core.errors import ConfigError, DataError
from fmnist.data.idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_raw

log = logging.getLogger(__name__)

RESAMPLERS = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
              "bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}
NEGATE_MODES = ("auto", "always", "never")
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Conversion:
    """How images are converted; conf/predict.yaml `images:` sets every field."""

    fuzz: float = 0.05  # trim: share of the largest RGB distance that still counts as background
    resample: str = "nearest"  # "nearest" is Zalando's subsampling (skip rows and columns)
    sharpen_radius: float = 1.0
    sharpen_percent: int = 100
    negate: str = "auto"  # auto: only when the background is light (product photos); always; never
    extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg")

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLERS:
            raise ConfigError("images.resample", f"'{self.resample}' is unknown", f"use one of {sorted(RESAMPLERS)}")
        if self.negate not in NEGATE_MODES:
            raise ConfigError("images.negate", f"'{self.negate}' is unknown", f"use one of {NEGATE_MODES}")
        if not 0.0 <= self.fuzz < 1.0:
            raise ConfigError("images.fuzz", f"{self.fuzz} is outside [0, 1)", "use a share such as 0.05")


class UnreadableImage(DataError):
    """One file that is not an image Pillow can decode."""


@dataclass
class InputSet:
    """Images ready for the model, their names for the CSV, and what had to be left out."""

    names: list[str]
    images: torch.Tensor  # uint8 (N, 28, 28)
    skipped: list[tuple[str, str]]


def open_rgb(path: Path) -> Image.Image:
    """Decode fully (so a truncated file fails here, with its name); transparency becomes white."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(white, rgba).convert("RGB")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnreadableImage(f"{path}: cannot be read as an image ({reason})") from None


def _background(pixels: np.ndarray) -> np.ndarray:
    """The median colour of the outermost pixels: the corners alone are fooled by one stray pixel."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(border, axis=0)


def _trim(image: Image.Image, background: np.ndarray, fuzz: float) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    distance = np.linalg.norm(pixels - background, axis=-1) / (255.0 * math.sqrt(3.0))
    rows, cols = np.nonzero(distance > fuzz)
    if rows.size == 0:
        return image  # a blank image: nothing to trim to
    return image.crop((int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1))


def _fit(image: Image.Image, background: np.ndarray, conversion: Conversion) -> Image.Image:
    """Longest edge to 28, sharpen, then pad the shorter edge to 28 with the background colour, centred."""
    width, height = image.size
    scale = IMAGE_SIZE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = image.resize(size, RESAMPLERS[conversion.resample])
    small = small.filter(ImageFilter.UnsharpMask(conversion.sharpen_radius, conversion.sharpen_percent, 0))
    canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), tuple(int(round(c)) for c in background))
    canvas.paste(small, ((IMAGE_SIZE - size[0]) // 2, (IMAGE_SIZE - size[1]) // 2))
    return canvas


def to_fashion_mnist(image: Image.Image, conversion: Conversion = Conversion()) -> np.ndarray:
    """An RGB image of any size -> uint8 (28, 28). A 28x28 image is already at the target size: only
    grey conversion and negation apply, so Fashion-MNIST's own images pass through unchanged."""
    background = _background(np.asarray(image, dtype=np.float32))
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = _fit(_trim(image, background, conversion.fuzz), background, conversion)
    grey = image.convert("L")
    light = float(np.dot(background, (0.299, 0.587, 0.114))) > 127.5
    if conversion.negate == "always" or (conversion.negate == "auto" and light):
        grey = ImageOps.invert(grey)
    return np.asarray(grey, dtype=np.uint8).copy()


def _is_idx(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4)
    return head[:2] == GZIP_MAGIC or (len(head) == 4 and int.from_bytes(head, "big") in (IMAGES_MAGIC, LABELS_MAGIC))


def read_idx_images(path: Path) -> InputSet:
    """An IDX images file (gzipped or not) of 28x28 images, e.g. t10k-images-idx3-ubyte.gz."""
    images = parse_idx(read_raw(path), path, IMAGES_MAGIC)
    if tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: IDX images are {tuple(images.shape[1:])}, expected 28x28.")
    return InputSet(names=[str(i) for i in range(len(images))], images=images, skipped=[])


def read_image_files(paths: list[Path], conversion: Conversion, names: list[str]) -> InputSet:
    """Convert every readable file; an unreadable one is logged by name and left out."""
    converted: list[np.ndarray] = []
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path, name in zip(paths, names, strict=True):
        try:
            converted.append(to_fashion_mnist(open_rgb(path), conversion))
            kept.append(name)
        except UnreadableImage as exc:
            log.warning("skipped %s", exc)
            skipped.append((name, str(exc)))
    images = torch.from_numpy(np.stack(converted)) if converted else torch.empty(0, IMAGE_SIZE, IMAGE_SIZE,
                                                                                 dtype=torch.uint8)
    return InputSet(names=kept, images=images, skipped=skipped)


def read_inputs(path: Path, conversion: Conversion) -> InputSet:
    """A folder of images, one image file, or an IDX images file."""
    if not path.exists():
        raise DataError(f"input {path}: no such file or folder. Fix: input=test, a folder of PNG/JPEG files, "
                        "one image file, or an IDX images file.")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in conversion.extensions)
        if not files:
            raise DataError(f"input {path}: no {'/'.join(conversion.extensions)} files in this folder.")
        found = read_image_files(files, conversion, [p.name for p in files])
    elif _is_idx(path):
        return read_idx_images(path)
    else:  # one file: unreadable is the error itself
        return InputSet(names=[path.name], images=torch.from_numpy(to_fashion_mnist(open_rgb(path), conversion))[None],
                        skipped=[])
    if not found.names:
        raise DataError(f"input {path}: none of its {len(found.skipped)} image file(s) could be read: "
                        + "; ".join(reason for _, reason in found.skipped))
    return found
