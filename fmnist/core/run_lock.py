"""One live run per run dir (two would overwrite each other's results): an flock on a file in the dir, which the
kernel drops however its process ends, so a dead run never blocks a restart and no stale lock is left."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
import time
from contextlib import suppress
from pathlib import Path

from fmnist.core.errors import FmnistError, OutputWriteError
from fmnist.core.output_dirs import LINK_FIX, UnsafeOutputDirError, check_output_dir
from fmnist.core.run_files import RUN_LOCK_FILE

log = logging.getLogger("fmnist")
_held: dict[Path, int] = {}  # run dir -> this process's open, locked lock file


class RunDirInUseError(FmnistError):
    """Another live process is writing this run dir."""


def hold_run_dir(run_dir: str | Path) -> None:
    """Lock `run_dir` for the rest of this process (again: a no-op), or raise RunDirInUseError while another live
    process holds it; only the process that writes the results (rank 0) calls it."""
    directory = Path(run_dir).resolve()
    if directory in _held:
        return
    path = directory / RUN_LOCK_FILE
    check_output_dir(run_dir)  # a link planted in a copied run dir (the lock itself, say) is never written through
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # not inherited by exec'd children (PEP 446); never through a link, never blocking on a FIFO
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        raise OutputWriteError.from_os_error(path, exc) from exc
    opened = os.fstat(handle)
    if not stat.S_ISREG(opened.st_mode) or opened.st_nlink > 1:
        os.close(handle)  # a FIFO or device, or a hard link that would truncate a file elsewhere
        raise UnsafeOutputDirError(f"{path} is not a plain file of its own, so fmnist does not write it. {LINK_FIX}")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = "a live process"
        with suppress(OSError):  # who holds it, as that run wrote it below
            holder = os.pread(handle, 200, 0).decode("utf-8", "replace").strip() or holder
        os.close(handle)
        raise RunDirInUseError(
            f"{directory} is in use by another run ({holder}); two runs in one run dir would overwrite each other's "
            "checkpoints and results. Fix: wait for that run to end (or stop it), or give this one its own dir "
            "(hydra.run.dir=...).") from None
    except OSError as exc:
        os.close(handle)
        log.warning("cannot lock %s (%s): a second run started in this dir would not be refused", path,
                    exc.strerror or exc)
        return
    with suppress(OSError):  # who holds it, for the message of a refused run; a full disk only loses that
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                 .encode())
    _held[directory] = handle


def release_run_dir(run_dir: str | Path) -> None:
    """Give the dir up before the process ends (the file stays: unlinking a lock file races with its next user)."""
    handle = _held.pop(Path(run_dir).resolve(), None)
    if handle is not None:
        os.close(handle)


def held_run_dirs() -> set[Path]:
    """The run dirs this process holds now (a job run in-process, as the tests do, gives its dirs up after)."""
    return set(_held)
