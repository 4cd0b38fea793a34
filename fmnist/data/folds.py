"""Validation splits drawn from the 60k train set only; the test set never enters here."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from fmnist.core.errors import ConfigError
from fmnist.core.numbers import is_int


def stratified_fold(labels: torch.Tensor, num_folds: int, fold: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of one fold; the same seed always gives the same folds."""
    check_fold(num_folds, fold)
    y = labels.cpu().numpy()
    smallest = int(np.bincount(y).min())
    if num_folds > smallest:  # every fold must hold each class at least once
        raise ConfigError("data.num_folds", f"{num_folds} folds exceed the {smallest} images of the smallest class",
                          "use data.num_folds=5 (the default) or 10")
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=check_split_seed(split_seed))
    train_idx, val_idx = list(splitter.split(np.zeros(len(y)), y))[fold]
    return train_idx, val_idx


def check_fold(num_folds: int, fold: int) -> None:
    """The one check of data.num_folds and data.fold: run by the commands before any data is read, and here."""
    if not is_int(num_folds) or num_folds < 2:
        raise ConfigError("data.num_folds", f"{num_folds!r} is not an integer >= 2",
                          "use data.num_folds=2 or more (5 is the default)")
    if not is_int(fold) or not 0 <= fold < num_folds:
        raise ConfigError("data.fold", f"{fold!r} is not a fold of {num_folds}",
                          f"pick data.fold in 0..{num_folds - 1}")


def check_split_seed(split_seed: int) -> int:
    """NumPy's and scikit-learn's seeds are unsigned 32-bit integers."""
    if not 0 <= split_seed < 2**32:
        raise ConfigError("data.split_seed", f"{split_seed} is not between 0 and 2**32 - 1",
                          "use e.g. data.split_seed=0")
    return split_seed


def holdout_first(num_train: int, holdout_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Study B's protocol: the first N train images are the validation set."""
    if not 0 < holdout_size < num_train:
        raise ConfigError("data.holdout_size", f"{holdout_size} is not between 1 and {num_train - 1}",
                          "set a positive size smaller than the train set, or null for k-fold")
    return np.arange(holdout_size, num_train), np.arange(holdout_size)


def take_subset(train_idx: np.ndarray, train_subset: int | None, split_seed: int) -> np.ndarray:
    """The first N of the shuffled training indices, for quick runs."""
    if train_subset is None:
        return train_idx
    if not 1 <= train_subset <= len(train_idx):
        raise ConfigError("data.train_subset", f"{train_subset} is outside 1..{len(train_idx)} "
                          "(the training part of this split)", f"use a value in 1..{len(train_idx)} or null")
    shuffled = np.random.default_rng(check_split_seed(split_seed)).permutation(train_idx)
    return np.sort(shuffled[:train_subset])
