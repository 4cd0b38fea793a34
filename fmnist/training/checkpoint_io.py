"""Checkpoint writes that a SIGKILL cannot tear: temp file in the same folder, fsync, then rename."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fmnist.core.atomic import atomic_writer


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's default stages the file in /tmp and `shutil.move`s it, a copy when /tmp is another disk.

    A full disk or a read-only folder raises atomic_writer's OutputWriteError, naming the checkpoint file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_writer(path) as stream:
            torch.save(checkpoint, stream)
