"""How a run's Trainer writes, reads and deletes checkpoints: atomically, safely, and only inside its own folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fmnist.core.atomic import atomic_writer
from fmnist.core.checkpoints import check_layout, confine_callback_paths, is_bare_state_dict, read_checkpoint
from fmnist.core.limits import DEFAULT_LIMITS, Limits


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes atomically in place (Lightning's default copies from /tmp); reads go through fmnist's checks with the
    recorded paths confined to `checkpoint_dir`; deletes touch only plain files of this run."""

    def __init__(self, checkpoint_dir: str | Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.limits = limits
        # files this process's Trainer wrote outside that folder (the tuner's .lr_find_*.ckpt), and ddp_spawn's
        # hand-over files it read: its own, to load in full and to remove
        self._written: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_writer(path) as stream:
            torch.save(checkpoint, stream)
        self._written.add(Path(str(path)).resolve())

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Always weights_only, whatever the caller asks; a bare state_dict (ddp_spawn's hand-over file, tensors
        alone) is accepted too, and that file may then be removed."""
        content = read_checkpoint(path, self.limits)
        if is_bare_state_dict(content):
            self._written.add(Path(str(path)).resolve())
            return content
        check_layout(content, Path(path))
        return confine_callback_paths(content, self.checkpoint_dir, own=self._is_own(Path(str(path))))

    def remove_checkpoint(self, path: Any) -> None:
        """Lightning's default removes recursively whatever a callback state names; here only our own files."""
        target = Path(str(path))
        if self._is_own(target) and target.is_file() and not target.is_symlink():
            target.unlink()

    def _is_own(self, path: Path) -> bool:
        return path.parent.resolve() == self.checkpoint_dir.resolve() or path.resolve() in self._written
