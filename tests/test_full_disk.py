"""A really full disk: a small tmpfs that fills up, not a patched function (needs root to mount; skipped otherwise).

On a real disk torch.save's zip writer catches the OSError of its write and raises its own
`RuntimeError: [enforce fail at inline_container.cc] unexpected pos`; the run must still end with the one-line
OutputWriteError, no temp file left and the previous file intact.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fmnist.core.atomic import write_json_atomic
from fmnist.core.errors import OutputWriteError
from fmnist.training.checkpoint_io import AtomicCheckpointIO
from tests.helpers import run_cli


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 KiB tmpfs: room for a run's small files, not for a conv_maxpool checkpoint (~770 KB)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill(folder: Path) -> None:
    """Take the rest of the disk."""
    with open(folder / "filler", "wb") as stream:
        try:
            while True:
                stream.write(b"\0" * 65536)
                stream.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_checkpoint_that_does_not_fit_keeps_the_old_one(small_disk: Path) -> None:
    checkpoint_io = AtomicCheckpointIO(small_disk)
    target = small_disk / "last.ckpt"
    checkpoint_io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}}, target)
    before = target.read_bytes()
    with pytest.raises(OutputWriteError) as caught:
        checkpoint_io.save_checkpoint({"state_dict": {"w": torch.zeros(200_000)}}, target)  # 800 KB
    assert str(caught.value).startswith(f"cannot write {target}: No space left on device. Fix: free disk space")
    assert isinstance(caught.value.__cause__, RuntimeError)  # what torch.save raised, kept as the cause
    assert target.read_bytes() == before
    assert sorted(path.name for path in small_disk.iterdir()) == ["last.ckpt"]  # no temp file


def test_json_on_a_full_disk_keeps_the_old_file(small_disk: Path) -> None:
    target = small_disk / "metrics.json"
    write_json_atomic(target, {"status": "completed"})
    fill(small_disk)
    with pytest.raises(OutputWriteError, match=f"cannot write {target}: No space left on device"):
        write_json_atomic(target, {"status": "completed", "more": list(range(5000))})
    assert target.read_text() == '{\n  "status": "completed"\n}\n'
    assert sorted(path.name for path in small_disk.iterdir()) == ["filler", "metrics.json"]


@pytest.mark.cli
def test_training_on_a_disk_that_fills_ends_with_one_line(small_disk: Path) -> None:
    """Through the command: a real ENOSPC inside torch.save ends in one line and exit 2."""
    run_dir = small_disk / "run"
    result = run_cli("fmnist.train", "data.train_subset=500", "trainer.max_epochs=1", "logger=csv",
                        "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", run_dir=run_dir)
    assert result.returncode == 2, result.output[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("fmnist: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(f"fmnist: error: cannot write {run_dir / 'checkpoints'}/"), errors[0]
    assert ".ckpt: No space left on device. Fix: free disk space" in errors[0]
    assert not list(run_dir.rglob("*.tmp")) and not list(run_dir.rglob("*.ckpt"))
    assert not (run_dir / "metrics.json").exists()
