"""Write result files so that a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, cast

from fmnist.core.errors import FmnistError, OutputWriteError
from fmnist.core.limits import clip


class UnsafeOutputError(FmnistError):
    """An output path that names something other than a regular file."""


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream to a temp file beside `path`, renamed over it only on success; a refused write (disk full,
    read-only folder) leaves the old file and raises OutputWriteError naming it, not a traceback deep in a writer."""
    path = Path(path)
    refuse_special_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputWriteError.from_os_error(path, exc) from exc
    writes: _WriteErrors | None = None
    try:
        with os.fdopen(handle, "wb") as stream:
            writes = _WriteErrors(stream)
            yield cast(BinaryIO, writes)
            writes.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes files owner-only; results are meant to be shared
        os.replace(temporary, path)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(temporary)
        # an OSError about another file (the caller reading its input, say) is not this write's failure
        if isinstance(exc, OSError) and exc.filename in (None, temporary, str(path)):
            raise OutputWriteError.from_os_error(path, exc) from exc
        if isinstance(exc, Exception) and writes is not None and writes.error is not None:
            raise OutputWriteError.from_os_error(path, writes.error) from exc
        raise


class _WriteErrors:
    """The file, remembering the OSError a write raised: torch.save's zip writer turns a full disk into
    `RuntimeError: ... unexpected pos`, which no longer says what happened."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._stream.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:  # flush, seek, tell, fileno, ...: the file's own
        return getattr(self._stream, name)


def refuse_special_target(path: Path) -> None:
    """Only a regular file or a new path is replaced: renaming over a symlink, device node or folder would
    silently turn it into a plain file (an `output=` naming /dev/sda or a link elsewhere)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputWriteError.from_os_error(path, exc) from exc
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise UnsafeOutputError(f"cannot write {clip(path)}: it is {kind}, and fmnist only replaces regular files. "
                                "Fix: name a new file or a regular one (output=<folder>/<name>.csv).")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_writer(path) as stream:
        stream.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_csv_atomic(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
