"""An existing output folder (maybe copied from elsewhere, docs/security.md) is refused if it holds a link or special
file: writers that open files in place (Hydra, Lightning, the run lock) would write through it, or block on a FIFO."""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fmnist.core.cli import user_error
from fmnist.core.errors import FmnistError
from fmnist.core.limits import clip

MAX_ENTRIES = 200_000  # entries walked in one folder: a run dir holds dozens, a study's sweep dir thousands
LINK_FIX = "Fix: delete it, copy the folder without links (cp -rL), or write elsewhere (hydra.run.dir=...)."


class UnsafeOutputDirError(FmnistError):
    """An existing output folder that holds a link or a special file, so writing into it could write elsewhere."""


def _unsafe_kind(path: Path, mode: int) -> str | None:
    """None for a folder or regular file, else what `path` is (a link with its target, where readable)."""
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        with suppress(OSError):
            return f"a symbolic link to {clip(os.readlink(path), 160)}"
        return "a symbolic link"
    return "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device or special file"


def check_output_dir(folder: str | Path) -> None:
    """Raise UnsafeOutputDirError if `folder`, or anything under it, is a link or a special file; a missing
    folder is fine (it will be new). The folder itself may not be a link either: name the folder it points to."""
    root = Path(folder)
    try:
        mode = root.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnsafeOutputDirError(f"cannot inspect {clip(root)} ({exc.strerror or exc}). {LINK_FIX}") from None
    kind = _unsafe_kind(root, mode)
    if kind is not None:
        raise UnsafeOutputDirError(f"{clip(root)} is {kind}, and fmnist writes only into plain "
                                   f"folders. Fix: name the folder itself, or write elsewhere (hydra.run.dir=...).")
    pending, seen = [root], 0
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    seen += 1
                    if seen > MAX_ENTRIES:
                        raise UnsafeOutputDirError(
                            f"{clip(root)} holds more than {MAX_ENTRIES:,} entries, too many to check before "
                            "writing into it. Fix: write elsewhere (hydra.run.dir=... / hydra.sweep.dir=...).")
                    kind = _unsafe_kind(Path(entry.path), entry.stat(follow_symlinks=False).st_mode)
                    if kind is not None:
                        inside = Path(entry.path).relative_to(root)
                        raise UnsafeOutputDirError(
                            f"{clip(root)} holds {kind} at {clip(inside)}; fmnist never "
                            f"writes through links or into special files, so nothing was written. {LINK_FIX}")
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
        except OSError as exc:
            raise UnsafeOutputDirError(f"cannot inspect {clip(directory)} ({exc.strerror or exc}), so nothing was "
                                       f"written into {clip(root)}. {LINK_FIX}") from None


class CheckOutputDirs(Callback):
    """Hydra callback: check the run dir (single run) or sweep dir (-m) before Hydra creates its .hydra/ record
    and job log there. A refused folder ends the command with fmnist's one line and exit 2."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        folder = OmegaConf.select(config, key)
        from fmnist.core.run_lock import held_run_dirs  # run_lock imports this module

        if Path(str(folder)).resolve() in held_run_dirs():
            return  # train held (and so checked) the dir it names before Hydra started: not walked twice
        try:
            check_output_dir(str(folder))
        except UnsafeOutputDirError as exc:
            raise SystemExit(user_error(str(exc))) from None
