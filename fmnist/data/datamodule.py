"""The one place that decides which images train, validate and test a model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from fmnist.core.checkpoints import stored_normalisation
from fmnist.core.constants import INPUT_KINDS
from fmnist.core.errors import ConfigError
from fmnist.core.numbers import is_int
from fmnist.data.augment import Augmentation
from fmnist.data.batches import BatchTransform, TensorBatches
from fmnist.data.folds import check_inner_fold, holdout_first, inner_split, stratified_fold, take_subset
from fmnist.data.sources import SYSTEM_DATA_DIR, load_fashion_mnist, locate

log = logging.getLogger(__name__)


class FashionMnistDataModule(L.LightningDataModule):
    """Official split; validation from the 60k train set only. The whole set stays resident as uint8 on the training
    device, so a GPU never waits on host copies and a CPU never waits on workers."""

    def __init__(
        self,
        data_dir: str = "data",
        system_dir: str = str(SYSTEM_DATA_DIR),
        input_kind: str = "image",
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        num_folds: int = 5,
        fold: int = 0,
        split_seed: int = 0,
        holdout_size: int | None = None,
        inner_folds: int | None = None,
        inner_fold: int | None = None,
        train_subset: int | None = None,
        augmentation: Augmentation | None = None,
        download: bool = True,
        verify_checksums: bool = True,
        shuffle_seed: int | None = 0,
        channels_last: bool = False,
        steps_per_execution: int = 1,
    ) -> None:
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise ConfigError("model.input", f"'{input_kind}' is not an input kind", f"use one of {INPUT_KINDS}")
        for key, value in (("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size),
                           ("data.steps_per_execution", steps_per_execution)):
            if not is_int(value) or value <= 0:
                raise ConfigError(key, f"{value!r} is not a positive integer", "use an integer of 1 or more")
        self.nested = check_inner_fold(inner_folds, inner_fold)
        self.data_dir = Path(data_dir)
        self.system_dir = Path(system_dir)
        self.input_kind = input_kind
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_folds = num_folds
        self.fold = fold
        self.split_seed = split_seed
        self.holdout_size = holdout_size
        self.inner_folds = inner_folds
        self.inner_fold = inner_fold
        self.train_subset = train_subset
        self.augmentation = augmentation or Augmentation()
        self.download = download
        self.verify_checksums = verify_checksums
        self.shuffle_seed = shuffle_seed if shuffle_seed is not None else 0
        self.channels_last = channels_last
        self.steps_per_execution = steps_per_execution
        self.train_index = np.empty(0, dtype=np.int64)
        self.val_index = np.empty(0, dtype=np.int64)
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mean = 0.0
        self.std = 1.0

    def prepare_data(self) -> None:
        locate(self.data_dir, self.download, self.system_dir)

    def _split(self, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The outer split, its training part split again for inner folds; the train subset is taken last."""
        if self.holdout_size is not None:
            train_idx, val_idx = holdout_first(len(labels), self.holdout_size)
        else:
            train_idx, val_idx = stratified_fold(labels, self.num_folds, self.fold, self.split_seed)
        if self.nested:
            train_idx, val_idx = inner_split(labels, train_idx, self.inner_folds, self.inner_fold, self.split_seed)
        return take_subset(train_idx, self.train_subset, self.split_seed), val_idx

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        data = load_fashion_mnist(self.data_dir, self.download, self.verify_checksums, self.system_dir)
        self.train_index, self.val_index = self._split(data.train_labels)
        pixels = data.train_images.float().div_(255.0)  # the official train set's statistics, as the studies used
        self.mean, self.std = float(pixels.mean()), float(pixels.std())
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

        def shard(images: torch.Tensor, labels: torch.Tensor, index: np.ndarray,
                  equal: bool) -> tuple[torch.Tensor, torch.Tensor]:
            """Every `world`-th image from `rank`: training shards cut to equal length (the same number of steps per
            process), evaluation shards uneven so each image counts exactly once (unlike a DistributedSampler)."""
            part = torch.from_numpy(index[rank::world][: len(index) // world if equal else None])
            return images[part].to(device), labels[part].to(device)

        self._splits = {
            "fit": shard(data.train_images, data.train_labels, self.train_index, True),
            "val": shard(data.train_images, data.train_labels, self.val_index, False),
            "test": shard(data.test_images, data.test_labels, np.arange(len(data.test_labels)), False),
        }
        log.info("data from %s: %d train / %d val / %d test images, on %s", data.source,
                 len(self.train_index), len(self.val_index), len(data.test_labels), device)

    @property
    def transform(self) -> BatchTransform:
        return BatchTransform(self.mean, self.std, self.input_kind, self.augmentation, self.channels_last)

    def state_dict(self) -> dict[str, float]:
        """The normalisation, saved in every checkpoint so that predict needs no train set."""
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.mean, self.std = stored_normalisation(state_dict)

    def train_dataloader(self) -> TensorBatches:
        """Each item holds `steps_per_execution` batches: one Lightning step runs that many optimizer steps."""
        return self.train_batches(self.steps_per_execution)

    def train_batches(self, steps_per_execution: int = 1) -> TensorBatches:
        return TensorBatches(*self._splits["fit"], self.batch_size, self.transform, train=True, seed=self.shuffle_seed,
                             steps_per_execution=steps_per_execution)

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(*self._splits["val"], self.eval_batch_size, self.transform)

    def test_dataloader(self) -> TensorBatches:
        """The 10k test set: only `trainer.test` asks for it, nothing selects on it."""
        return TensorBatches(*self._splits["test"], self.eval_batch_size, self.transform)
