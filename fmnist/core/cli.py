"""Turn user mistakes into one clear line and a non-zero exit instead of a traceback."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from fmnist.core.errors import WRITE_ERRNOS, FmnistError, write_fix

T = TypeVar("T")
EXIT_USER_ERROR = 2
PATH_ERRNOS = frozenset({errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG})
log = logging.getLogger("fmnist")


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def user_error(message: str, status: int = EXIT_USER_ERROR) -> int:
    """Print the one line every command gives a user mistake (`fmnist: error: ... Fix: ...`); return `status`."""
    print(f"fmnist: error: {message}", file=sys.stderr)
    return status


def run_guarded(task: Callable[[], T]) -> T:
    """Run a task; a user error, or the system refusing a file, ends a single run with one line and exit 2, and
    fails only its job in a sweep (Lightning re-raises a callback's or checkpoint save's error unchanged)."""
    try:
        return task()
    except (FmnistError, OSError) as exc:
        message = user_message(exc)
        if message is None:
            raise  # an OSError that names no file and no full or read-only disk: a bug, whose traceback helps
        if in_multirun():
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
