"""Turn user images into Fashion-MNIST images (28x28 uint8 grey, light on black) by Zalando's steps (docs/inference.md);
the files are untrusted (docs/security.md), so counts and sizes are capped before anything is decoded."""

from __future__ import annotations

import logging
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from fmnist.core.constants import IMAGE_SIZE
from fmnist.core.errors import ConfigError, DataError
from fmnist.core.limits import DEFAULT_LIMITS, Limits, clip, first_line
from fmnist.data.idx import GZIP_MAGIC, IMAGES_MAGIC, read_idx

log = logging.getLogger(__name__)

RESAMPLERS = {name: Image.Resampling[name.upper()] for name in ("nearest", "box", "bilinear", "lanczos")}
NEGATE_MODES = ("auto", "always", "never")
# Decoded in-process by Pillow; any other content is unreadable, whatever the file's name or extension.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
BLOCK_PIXELS = 1 << 20  # _trim measures colour distances this many pixels at a time (12 MB of float32)
IDX_UBYTE_PREFIX = b"\x00\x00\x08"  # the first three bytes of IMAGES_MAGIC and LABELS_MAGIC
IDX_FIX = "Fix: pass an IDX images file of 28x28 images, e.g. t10k-images-idx3-ubyte.gz."


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


class ImageTooLarge(DataError):
    """An image with more pixels than limits.max_image_pixels: refused before it is decoded."""


@dataclass
class InputSet:
    """Images ready for the model, their names for the CSV, and what had to be left out."""

    names: list[str]
    images: torch.Tensor  # uint8 (N, 28, 28)
    skipped: list[tuple[str, str]]


def open_rgb(path: Path, max_pixels: int = DEFAULT_LIMITS.max_image_pixels) -> Image.Image:
    """Decode fully (a truncated file fails here, with its name); transparency becomes white. Image.open reads
    only the header, so the size is checked against `max_pixels` before any pixel is decoded."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"{clip(path)}: {width}x{height} = {width * height:,} pixels, more than the cap "
                                    f"limits.max_image_pixels={max_pixels}. Fix: downscale the image, or raise the "
                                    "cap with limits.max_image_pixels=N.")
            opened.load()
            ImageOps.exif_transpose(opened, in_place=True)  # no copy of the decoded image
            if opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info:
                rgba = opened if opened.mode == "RGBA" else opened.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(white, rgba).convert("RGB")
            return opened if opened.mode == "RGB" else opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = first_line(exc, default=type(exc).__name__)
        raise UnreadableImage(f"{clip(path)}: cannot be read as an image ({reason})") from None


def _background(pixels: np.ndarray) -> np.ndarray:
    """The median colour of the outermost pixels: the corners alone are fooled by one stray pixel."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def _trim(image: Image.Image, pixels: np.ndarray, background: np.ndarray, fuzz: float) -> Image.Image:
    """Crop to the pixels farther than `fuzz` from the background, measured a block of rows at a time so that the
    float copies stay small whatever the image's size."""
    height, width = pixels.shape[:2]
    far = np.empty((height, width), dtype=np.uint8)
    step = max(1, BLOCK_PIXELS // width)
    for top in range(0, height, step):
        block = pixels[top: top + step].astype(np.float32)
        far[top: top + step] = np.linalg.norm(block - background, axis=-1) / (255.0 * math.sqrt(3.0)) > fuzz
    box = Image.fromarray(far).getbbox()
    return image if box is None else image.crop(box)  # a blank image has nothing to trim to


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
    """An RGB image of any size -> uint8 (28, 28); a 28x28 one is only made grey (and negated), so Fashion-MNIST's
    own images pass through unchanged."""
    pixels = np.asarray(image)
    background = _background(pixels)
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        trimmed = _trim(image, pixels, background, conversion.fuzz)
        del pixels
        image = _fit(trimmed, background, conversion)
    grey = image.convert("L")
    light = float(np.dot(background, (0.299, 0.587, 0.114))) > 127.5
    if conversion.negate == "always" or (conversion.negate == "auto" and light):
        grey = ImageOps.invert(grey)
    return np.asarray(grey, dtype=np.uint8).copy()


def _is_idx(path: Path) -> bool:
    """Gzipped, or an IDX file of unsigned bytes (read_idx checks the rest)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return head[:2] == GZIP_MAGIC or (len(head) == 4 and head[:3] == IDX_UBYTE_PREFIX)


def _image_files(folder: Path, conversion: Conversion, limits: Limits) -> tuple[list[Path], list[tuple[str, str]]]:
    """The folder's image files, sorted, and the entries named like images that are not regular files (a dangling
    link, a FIFO, ...), which are skipped unopened; a folder over `limits.max_images` is refused while listing."""
    files, skipped = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if Path(entry.name).suffix.lower() not in conversion.extensions:
                continue
            try:
                mode = entry.stat().st_mode  # follows a link: a link to an image is read like the image
            except OSError as exc:
                skipped.append((entry.name, f"{clip(entry.name)}: skipped ({exc.strerror or exc})"))
                continue
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                skipped.append((entry.name, f"{clip(entry.name)}: skipped (not a regular file)"))
                continue
            files.append(folder / entry.name)
            if len(files) > limits.max_images:
                raise DataError(f"input {clip(folder)}: more than {limits.max_images:,} image files, the cap "
                                f"limits.max_images={limits.max_images}. Fix: split the folder, or raise the "
                                "cap with limits.max_images=N.")
    return sorted(files), sorted(skipped)


def _read_folder(folder: Path, conversion: Conversion, limits: Limits) -> InputSet:
    """Convert every readable image file; an unreadable one is logged and left out, one over the pixel cap ends it
    all (ImageTooLarge)."""
    paths, skipped = _image_files(folder, conversion, limits)
    if not paths and not skipped:
        raise DataError(f"input {folder}: no {'/'.join(conversion.extensions)} files in this folder.")
    for _, reason in skipped:
        log.warning("skipped %s", reason)
    converted = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    kept: list[str] = []
    for path in paths:
        try:
            converted[len(kept)] = to_fashion_mnist(open_rgb(path, limits.max_image_pixels), conversion)
            kept.append(path.name)
        except UnreadableImage as exc:
            log.warning("skipped %s", exc)
            skipped.append((path.name, str(exc)))
    if not kept:
        raise DataError(f"input {folder}: none of its {len(skipped)} image file(s) could be read: "
                        + clip("; ".join(reason for _, reason in skipped)))
    images = converted if len(kept) == len(paths) else converted[: len(kept)].copy()
    return InputSet(names=kept, images=torch.from_numpy(images), skipped=skipped)


def read_inputs(path: Path, conversion: Conversion, limits: Limits = DEFAULT_LIMITS) -> InputSet:
    """A folder of images, one image file, or an IDX images file; a system error on it is named as an input
    problem, never as one of the outputs."""
    try:
        if not path.exists():
            raise DataError(f"input {path}: no such file or folder. Fix: input=test, a folder of PNG/JPEG files, "
                            "one image file, or an IDX images file.")
        if path.is_dir():
            return _read_folder(path, conversion, limits)
        if _is_idx(path):
            images, _ = read_idx(path, IMAGES_MAGIC, None, limits.max_images, fix=IDX_FIX)
            return InputSet(names=[str(i) for i in range(len(images))], images=images, skipped=[])
        image = to_fashion_mnist(open_rgb(path, limits.max_image_pixels), conversion)  # unreadable: the error itself
        return InputSet(names=[path.name], images=torch.from_numpy(image)[None], skipped=[])
    except OSError as exc:
        raise DataError(f"input {clip(path)}: cannot be read ({exc.strerror or exc}). Fix: check that it exists and "
                        "is readable, or pass another input (test, a folder, an image, an IDX file).") from None
