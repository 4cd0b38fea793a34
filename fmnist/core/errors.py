"""One exception type for every mistake a user can fix, so entry points can print it without a traceback."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path


class FmnistError(Exception):
    """A problem the user can fix: the message names what is wrong and how to fix it."""


class ConfigError(FmnistError):
    """A config value that is out of range or of the wrong kind."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key}: {problem}. Fix: {fix}")
        self.key = key
        self.problem = problem
        self.fix = fix

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        """Pickle from all three parts: a sweep job in another process (joblib) sends its error back pickled."""
        return type(self), (self.key, self.problem, self.fix)


class DataError(FmnistError):
    """The data set is missing, truncated or not Fashion-MNIST."""


class RunInterrupted(SystemExit):
    """SIGTERM or SIGINT stopped the run. It exits with 128 + the signal's number, the status a shell gives a process
    killed by that signal: schedulers and scripts see neither a success nor a user error (exit 2)."""

    def __init__(self, signum: int, run_dir: str | Path) -> None:
        super().__init__(128 + signum)
        self.signum = signal.Signals(signum)
        self.run_dir = Path(run_dir)

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        return type(self), (int(self.signum), str(self.run_dir))


# errno codes that mean the place, not fmnist, refuses the write; each with what a user can do about it
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}
WRITE_ERRNOS = frozenset(_NO_SPACE | _READ_ONLY)


def write_fix(code: int | None) -> str:
    """What to do when the system refused a write with this errno code."""
    elsewhere = "hydra.run.dir=..., or hydra.sweep.dir=... with -m"
    if code in _NO_SPACE:
        return f"free disk space (or quota) there, or write the outputs elsewhere ({elsewhere})"
    if code in _READ_ONLY:
        return f"check that folder's permissions and that its disk is writable, or write elsewhere ({elsewhere})"
    return f"check that disk and folder, or write the outputs elsewhere ({elsewhere})"


class OutputWriteError(FmnistError):
    """The system refused to write an output file (disk full, folder read-only, ...); no half-written file is left."""

    def __init__(self, path: str, reason: str, code: int | None = None) -> None:
        super().__init__(f"cannot write {path}: {reason}. Fix: {write_fix(code)}.")
        self.path = path
        self.reason = reason
        self.code = code

    def __reduce__(self) -> tuple[type, tuple[str, str, int | None]]:
        return type(self), (self.path, self.reason, self.code)

    @classmethod
    def from_os_error(cls, path: str | os.PathLike[str], error: OSError) -> OutputWriteError:
        return cls(str(path), error.strerror or str(error), error.errno)
