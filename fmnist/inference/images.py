"""Turn user images into Fashion-MNIST images: 28x28 uint8 grey, light object on a black background.

Zalando made Fashion-MNIST from product photos (white background) in seven steps, listed in the
data set's README: PNG; trim edges close to the corner colour (5% of the largest RGB distance);
resize the longest edge to 28 by subsampling pixels; sharpen (Gaussian, radius and sigma 1.0);
extend the shortest edge to 28, centred; negate; 8-bit grey. `to_fashion_mnist` follows them with
Pillow; docs/inference.md lists the exact calls and where they approximate the original.

The files are data someone else may have made (docs/security.md): a folder holds at most `limits.max_images`
files and an image at most `limits.max_image_pixels` pixels, both checked before anything is decoded (the size
is in the header); only formats Pillow decodes itself are opened, whatever the file's name (never EPS, which runs
Ghostscript); and the conversion works on the decoded uint8 pixels in blocks, so its float copies stay small
whatever the image's size. An image over the cap ends the run with one line; a file that is not a readable
image is skipped by name, as before.
"""

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
from fmnist.core.limits import DEFAULT_LIMITS, Limits, clip
from fmnist.data.idx import GZIP_MAGIC, IMAGES_MAGIC, read_idx

log = logging.getLogger(__name__)

RESAMPLERS = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
              "bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}
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


def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(name for name in IMAGE_FORMATS if name in Image.OPEN)


def open_rgb(path: Path, max_pixels: int = DEFAULT_LIMITS.max_image_pixels) -> Image.Image:
    """Decode fully (so a truncated file fails here, with its name); transparency becomes white.

    Image.open reads only the header: the size is checked against `max_pixels` before any pixel is decoded."""
    try:
        with Image.open(path, formats=_formats()) as opened:
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
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnreadableImage(f"{clip(path)}: cannot be read as an image ({clip(reason)})") from None


def _background(pixels: np.ndarray) -> np.ndarray:
    """The median colour of the outermost pixels: the corners alone are fooled by one stray pixel.
    `pixels`: uint8 (H, W, 3); only the border is made float."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def _trim(image: Image.Image, pixels: np.ndarray, background: np.ndarray, fuzz: float) -> Image.Image:
    """Crop to the pixels farther than `fuzz` from the background; the distances are computed a block of rows
    at a time (each pixel exactly as on the whole image), so the float copies never exceed one block."""
    height, width = pixels.shape[:2]
    rows_hit = np.zeros(height, dtype=bool)
    cols_hit = np.zeros(width, dtype=bool)
    step = max(1, BLOCK_PIXELS // width)
    for top in range(0, height, step):
        block = pixels[top: top + step].astype(np.float32)
        distance = np.linalg.norm(block - background, axis=-1) / (255.0 * math.sqrt(3.0))
        hit = distance > fuzz
        rows_hit[top: top + step] = hit.any(axis=1)
        cols_hit |= hit.any(axis=0)
    rows, cols = np.flatnonzero(rows_hit), np.flatnonzero(cols_hit)
    if rows.size == 0:
        return image  # a blank image: nothing to trim to
    return image.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


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
    pixels = np.asarray(image)  # uint8 (H, W, 3), one copy
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
    """Gzipped, or an IDX file of unsigned bytes (magic 0x000008nn, any number of dimensions: read_idx says which
    it must be)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return head[:2] == GZIP_MAGIC or (len(head) == 4 and head[:3] == IDX_UBYTE_PREFIX)


def read_idx_images(path: Path, limits: Limits = DEFAULT_LIMITS) -> InputSet:
    """An IDX images file (gzipped or not) of at most `limits.max_images` 28x28 images, e.g.
    t10k-images-idx3-ubyte.gz; its header is checked before its data is read (fmnist.data.idx)."""
    images = read_idx(path, IMAGES_MAGIC, None, limits.max_images, fix=IDX_FIX).tensor
    return InputSet(names=[str(i) for i in range(len(images))], images=images, skipped=[])


def read_image_files(paths: list[Path], conversion: Conversion, names: list[str],
                     limits: Limits = DEFAULT_LIMITS) -> InputSet:
    """Convert every readable file; an unreadable one is logged by name and left out; one over
    `limits.max_image_pixels` ends it all (ImageTooLarge), before anything is decoded."""
    if len(paths) > limits.max_images:
        raise DataError(f"{len(paths):,} image files, more than the cap limits.max_images={limits.max_images}. "
                        "Fix: split them into smaller folders, or raise the cap with limits.max_images=N.")
    converted = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path, name in zip(paths, names, strict=True):
        try:
            converted[len(kept)] = to_fashion_mnist(open_rgb(path, limits.max_image_pixels), conversion)
            kept.append(name)
        except UnreadableImage as exc:
            log.warning("skipped %s", exc)
            skipped.append((name, str(exc)))
    images = converted if len(kept) == len(paths) else converted[: len(kept)].copy()
    return InputSet(names=kept, images=torch.from_numpy(images), skipped=skipped)


def _image_files(folder: Path, conversion: Conversion, limits: Limits) -> tuple[list[Path], list[tuple[str, str]]]:
    """The folder's image files (not sub-folders), sorted, and the entries named like images that are not readable
    files (a dangling link, a link loop, a FIFO, ...), each with its reason: they are skipped, never opened.
    Counting stops past `limits.max_images`, so a folder of millions of entries is refused without listing them."""
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


def read_inputs(path: Path, conversion: Conversion, limits: Limits = DEFAULT_LIMITS) -> InputSet:
    """A folder of images, one image file, or an IDX images file; `limits` (the config group) caps their cost.
    A system error on the input is named as an input problem, never as one of the outputs."""
    try:
        return _read_inputs(path, conversion, limits)
    except OSError as exc:
        raise DataError(f"input {clip(path)}: cannot be read ({exc.strerror or exc}). Fix: check that it exists and "
                        "is readable, or pass another input (test, a folder, an image, an IDX file).") from None


def _read_inputs(path: Path, conversion: Conversion, limits: Limits) -> InputSet:
    if not path.exists():
        raise DataError(f"input {path}: no such file or folder. Fix: input=test, a folder of PNG/JPEG files, "
                        "one image file, or an IDX images file.")
    if path.is_dir():
        files, unusable = _image_files(path, conversion, limits)
        if not files and not unusable:
            raise DataError(f"input {path}: no {'/'.join(conversion.extensions)} files in this folder.")
        found = read_image_files(files, conversion, [p.name for p in files], limits)
        for _, reason in unusable:
            log.warning("skipped %s", reason)
        found.skipped[:0] = unusable
    elif _is_idx(path):
        return read_idx_images(path, limits)
    else:  # one file: unreadable is the error itself
        image = to_fashion_mnist(open_rgb(path, limits.max_image_pixels), conversion)
        return InputSet(names=[path.name], images=torch.from_numpy(image)[None], skipped=[])
    if not found.names:
        raise DataError(f"input {path}: none of its {len(found.skipped)} image file(s) could be read: "
                        + clip("; ".join(reason for _, reason in found.skipped)))
    return found
