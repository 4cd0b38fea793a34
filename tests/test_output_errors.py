"""A full disk or an unwritable folder ends a run with one clear line, and leaves no half-written file."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from fmnist.core.atomic import atomic_writer, write_json_atomic
from fmnist.core.cli import EXIT_USER_ERROR, run_guarded
from fmnist.core.config_dir import CONF_DIR
from fmnist.core.errors import OutputWriteError
from tests.helpers import DATA_DIR

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*.tmp"))


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_leaves_the_old_file_and_no_temp_file(where: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old\n")

    def refuse(*args: object) -> None:
        raise NO_SPACE

    if where == "fsync":
        monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(OutputWriteError) as caught:
        with atomic_writer(target) as stream:
            stream.write(b"new, and half")
            if where == "write":
                refuse()
    message = str(caught.value)
    assert message.startswith(f"cannot write {target}: No space left on device. Fix: free disk space"), message
    assert caught.value.code == errno.ENOSPC and caught.value.path == str(target)
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


def test_an_unwritable_folder_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(OutputWriteError, match=f"cannot write {tmp_path / 'a.json'}: Permission denied. Fix: "):
        write_json_atomic(tmp_path / "a.json", {"a": 1})
    assert not (tmp_path / "a.json").exists()


def test_other_errors_inside_the_block_pass_through_unchanged(tmp_path: Path) -> None:
    """Reading some other file failed: that is not this write's fault, and the target stays as it was."""
    with pytest.raises(FileNotFoundError):
        with atomic_writer(tmp_path / "out.bin"):
            (tmp_path / "input.txt").read_text()
    with pytest.raises(KeyError):
        with atomic_writer(tmp_path / "out.bin"):
            raise KeyError("bug")
    assert list(tmp_path.iterdir()) == []


def test_output_write_error_survives_pickling() -> None:
    """A sweep job in another process (joblib) sends its error back pickled."""
    error = OutputWriteError("/runs/x/metrics.json", "No space left on device", errno.ENOSPC)
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.code == errno.ENOSPC


def test_run_guarded_turns_os_errors_naming_a_file_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def log_dir_refused() -> None:
        raise PermissionError(errno.EROFS, "Read-only file system", "/runs/x/tensorboard")

    with pytest.raises(SystemExit) as caught:
        run_guarded(log_dir_refused)
    assert caught.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("fmnist: error: /runs/x/tensorboard: Read-only file system. Fix: ") and err.count("\n") == 1

    def bug() -> None:
        raise OSError("an OSError that names no file: a bug, keep its traceback")

    with pytest.raises(OSError, match="names no file"):
        run_guarded(bug)


class AlmostFullDisk:
    """The `os` module as atomic.py sees it on a disk with `room` bytes left: a write past that raises ENOSPC, as a
    real file system's does (tests/test_full_disk.py fills a real tmpfs, which needs root)."""

    def __init__(self, room: int) -> None:
        self.room = room

    def fdopen(self, handle: int, mode: str) -> Any:
        return _FileOnAlmostFullDisk(os.fdopen(handle, mode), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


class _FileOnAlmostFullDisk:
    def __init__(self, stream: Any, disk: AlmostFullDisk) -> None:
        self.stream, self.disk = stream, disk

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if size > self.disk.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.disk.room -= size
        return self.stream.write(data)

    def __enter__(self) -> _FileOnAlmostFullDisk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def test_full_disk_while_training_ends_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The checkpoint does not fit: the real torch.save, inside Lightning's ModelCheckpoint during trainer.fit,
    catches the ENOSPC of its write and raises its own RuntimeError; the run still ends with the one line."""
    from fmnist.core import atomic
    from fmnist.train import fit_and_test

    run_dir = tmp_path / "run"
    monkeypatch.setenv("FMNIST_DATA_DIR", str(DATA_DIR))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["data.train_subset=256", "trainer.max_epochs=1", "logger=none",
                                           "trainer.accelerator=cpu", "data.download=false",
                                           f"paths.output_dir={run_dir}"])

    monkeypatch.setattr(atomic, "os", AlmostFullDisk(room=200_000))  # the small files fit, a checkpoint does not
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        run_guarded(lambda: fit_and_test(cfg, run_dir))
    assert caught.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fmnist: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith(f"fmnist: error: cannot write {run_dir / 'checkpoints'}/"), lines[0]
    assert ".ckpt: No space left on device. Fix: free disk space" in lines[0]
    assert not (run_dir / "metrics.json").exists()
    assert leftovers(run_dir) == [] and not list(run_dir.rglob("*.ckpt"))
