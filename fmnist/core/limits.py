"""Caps on what a file read back may cost (conf/limits/default.yaml, docs/security.md), each checked before the work
it bounds, so a small hostile checkpoint, run dir, image or IDX file cannot take gigabytes or hours."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fmnist.core.config_dir import CONF_DIR
from fmnist.core.errors import ConfigError
from fmnist.core.numbers import is_int

MAX_NAME_CHARS = 100  # a model, class or file name read from a file: longer is refused
MAX_MESSAGE_CHARS = 300  # any one value quoted in a message is clipped to this
# A metrics.json, history.csv, cv_summary.json or overrides.yaml read back; the largest committed one is 41 KB.
MAX_RUN_FILE_BYTES = 4 * 2**20
# A model name read from a file must be a config file's stem: no separator, no '..', so it is also a safe file name.
MODEL_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_NAME_CHARS - 1}}}")
MODEL_NAME_RULE = f"letters, digits, _ and -, at most {MAX_NAME_CHARS} characters"


def model_name_problem(name: object) -> str | None:
    """The one model-name rule (config, checkpoint, metrics.json, comparison): None, or why `name` breaks it."""
    if isinstance(name, str) and MODEL_NAME.fullmatch(name):
        return None
    return f"{clip(name, 80)!r} is not a model config's name ({MODEL_NAME_RULE})"


@dataclass(frozen=True)
class Limits:
    max_params: int  # parameters + buffers of a model rebuilt from a checkpoint's config
    max_checkpoint_mb: int  # size of a checkpoint file
    max_image_pixels: int  # width x height of one image given to predict
    max_images: int  # images in one predict input (a folder or an IDX file)

    @classmethod
    def from_config(cls, node: Any) -> Limits:
        """The `limits` group of a composed config; each value a positive integer, else one line."""
        values = {}
        for field in fields(cls):
            value = node.get(field.name)
            if not is_int(value) or value < 1:
                raise ConfigError(f"limits.{field.name}", f"expected a positive integer, got {clip(value)!r}",
                                  f"set limits.{field.name}=N (defaults in conf/limits/default.yaml)")
            values[field.name] = value
        return cls(**values)


def clip(value: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`value` as text short enough to print: a megabyte-long name must not become a megabyte-long error."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 30]}... ({len(text):,} characters)"


def first_line(error: BaseException, limit: int = MAX_MESSAGE_CHARS, default: str = "") -> str:
    """The first line of an error's message, clipped (`default` if it has none): what a one-line error quotes."""
    text = str(error)
    return clip(text.splitlines()[0], limit) if text else default


def run_limits(cfg: Any) -> Limits:
    """The composed config's `limits` group; the defaults for configs without one (the benchmark's)."""
    node = cfg.get("limits")
    return DEFAULT_LIMITS if node is None else Limits.from_config(node)


DEFAULT_LIMITS = Limits.from_config(OmegaConf.load(Path(CONF_DIR) / "limits" / "default.yaml"))
