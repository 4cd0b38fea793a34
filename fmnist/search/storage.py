"""Open the study's storage from the one string a user writes (hydra.sweeper.storage): an SQLAlchemy URL opens
Optuna's RDB storage, a path without a scheme its journal file storage (no database server, fine on SLURM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.core.errors import ConfigError
from fmnist.core.limits import clip, first_line

STORAGE_KEY = "hydra.sweeper.storage"
SQLITE = "sqlite:///"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def absolute_storage(storage: Any) -> str:
    """The storage string with its file path made absolute, so jobs started elsewhere (submitit) open the same file;
    ConfigError if it is not a string a study can live in."""
    if not isinstance(storage, str) or not storage.strip():
        raise ConfigError(STORAGE_KEY, f"{storage!r} is not a storage; trials report to the study from their own "
                          "processes, so it must be shared", "use e.g. storage=sqlite:///multirun/optuna.db, or a "
                          "journal file path such as multirun/optuna.journal")
    if storage.startswith(SQLITE):
        path = storage.removeprefix(SQLITE)
        if path in ("", ":memory:"):
            raise ConfigError(STORAGE_KEY, f"{storage} is an in-memory database that jobs cannot share",
                              "use a file: storage=sqlite:///multirun/optuna.db")
        return storage if path.startswith("/") else SQLITE + str(Path(path).absolute())
    if "://" in storage:
        return storage
    if storage.endswith(SQLITE_SUFFIXES):
        raise ConfigError(STORAGE_KEY, f"{storage} has no scheme, so it would be a journal file, but its name says "
                          "SQLite", f"write storage=sqlite:///{storage} (or rename it *.journal for a journal file)")
    return str(Path(storage).absolute())


def open_storage(storage: str) -> Any:
    """Optuna's storage for an absolute_storage string; ConfigError naming the cause if it cannot be opened."""
    import optuna

    try:
        if "://" in storage:
            if storage.startswith(SQLITE):
                Path(storage.removeprefix(SQLITE)).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(storage)
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(
            storage, lock_obj=optuna.storages.journal.JournalFileOpenLock(storage))
        return optuna.storages.JournalStorage(backend)
    except Exception as exc:  # SQLAlchemy's, a driver's and the OS's errors differ by backend; all mean "cannot open"
        raise ConfigError(STORAGE_KEY, f"{clip(storage, 200)} cannot be opened "
                          f"({first_line(exc, 200, type(exc).__name__)})",
                          "check the URL, its driver and that the folder is writable, e.g. "
                          "storage=sqlite:///multirun/optuna.db") from None

