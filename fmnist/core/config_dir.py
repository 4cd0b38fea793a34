"""Where the Hydra configs live: the one definition every command and test imports."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # fmnist/


def config_dir() -> Path:
    """The wheel ships conf/ as the data package fmnist/conf (pyproject.toml); a checkout, editable
    installs included, reads the repository's top-level conf/ itself, so edits there apply at once."""
    for candidate in (_PACKAGE / "conf", _PACKAGE.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Hydra configs in {_PACKAGE / 'conf'} nor {_PACKAGE.parent / 'conf'}")


CONF_DIR = str(config_dir())
