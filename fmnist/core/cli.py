"""Turn user mistakes into one clear line and a non-zero exit instead of a traceback."""

from __future__ import annotations

import errno
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from fmnist.core.errors import WRITE_ERRNOS, FmnistError, write_fix

T = TypeVar("T")
EXIT_USER_ERROR = 2
PATH_ERRNOS = frozenset({errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG})
log = logging.getLogger("fmnist")


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def user_error(message: str, status: int = EXIT_USER_ERROR) -> int:
    """Print the one line every command gives a user mistake (`fmnist: error: ... Fix: ...`); return `status`."""
    print(f"fmnist: error: {message}", file=sys.stderr)
    return status


def run_guarded(task: Callable[[], T]) -> T:
    """Run a task; a user error, or the system refusing a file, ends a single run with one line and exit 2.

    In a sweep it fails only that job. Lightning re-raises what a callback or a checkpoint save raised
    unchanged, so a full disk during `trainer.fit` arrives here as the OutputWriteError of atomic_writer.
    """
    try:
        return task()
    except (FmnistError, OSError) as exc:
        message = user_message(exc)
        if message is None:
            raise  # an OSError that names no file and no full or read-only disk: a bug, whose traceback helps
        if _in_multirun():
            log.error("%s", message)
            raise
        raise SystemExit(user_error(message)) from None


def user_message(error: BaseException) -> str | None:
    """The one line a user needs, or None where only a traceback can help."""
    if isinstance(error, FmnistError):
        return str(error)
    if isinstance(error, OSError) and (error.filename is not None or error.errno in WRITE_ERRNOS):
        where = error.filename if error.filename is not None else "an output file"
        if error.errno in PATH_ERRNOS:  # not the disk refusing a write: the path itself is wrong
            return f"{where}: {error.strerror or error}. Fix: check that path (missing, a broken link or a loop?)."
        return f"{where}: {error.strerror or error}. Fix: {write_fix(error.errno)}."
    return None


def _writable(folder: Path) -> str | None:
    """None if a file can be created in `folder` (created if missing), else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def exit_unless_output_writable(argv: Sequence[str]) -> None:
    """Hydra creates the run dir before any fmnist code runs and fails with a traceback; check first."""
    chosen = {"hydra.run.dir": None, "hydra.sweep.dir": None}
    for argument in argv:
        key, _, value = argument.partition("=")
        value = value.strip("\"'")  # Lightning's DDP launcher re-runs us with hydra.run.dir="<dir>"
        if key in chosen and value and "${" not in value:
            chosen[key] = value
    folders = [Path(value) for value in chosen.values() if value] or [Path.cwd()]
    for folder in folders:
        reason = _writable(folder)
        if reason:
            raise SystemExit(user_error(f"cannot write the output directory {folder} ({reason}). Fix: choose a "
                                        "writable place with hydra.run.dir=... (hydra.sweep.dir=... for -m), or run "
                                        "from a writable folder."))
