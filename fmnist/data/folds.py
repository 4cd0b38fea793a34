"""Validation splits drawn from the 60k train set only; the test set never enters here."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from fmnist.core.errors import ConfigError
from fmnist.core.numbers import is_int

FOLD_KEYS = ("data.num_folds", "data.fold")
INNER_KEYS = ("data.inner_folds", "data.inner_fold")


def stratified_fold(labels: torch.Tensor, num_folds: int, fold: int, split_seed: int,
                    keys: tuple[str, str] = FOLD_KEYS) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of one fold; the same seed always gives the same folds. `keys` name the settings in
    an error."""
    check_fold(num_folds, fold, keys)
    y = labels.cpu().numpy()
    smallest = int(np.bincount(y).min())
    if num_folds > smallest:  # every fold must hold each class at least once
        raise ConfigError(keys[0], f"{num_folds} folds exceed the {smallest} images of the smallest class",
                          f"use {keys[0]}=5 (the default) or 10")
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=check_split_seed(split_seed))
    return list(splitter.split(np.zeros(len(y)), y))[fold]


def check_fold(num_folds: int, fold: int, keys: tuple[str, str] = FOLD_KEYS) -> None:
    """The one check of data.num_folds and data.fold (or the pair `keys` names), also run before any data is read."""
    if not is_int(num_folds) or num_folds < 2:
        raise ConfigError(keys[0], f"{num_folds!r} is not an integer >= 2",
                          f"use {keys[0]}=2 or more (5 is the default)")
    if not is_int(fold) or not 0 <= fold < num_folds:
        raise ConfigError(keys[1], f"{fold!r} is not a fold of {num_folds}",
                          f"pick {keys[1]} in 0..{num_folds - 1}")


def check_inner_fold(inner_folds: int | None, inner_fold: int | None) -> bool:
    """Whether an inner split is asked for (both keys set; neither: off); one without the other is refused."""
    if inner_folds is None and inner_fold is None:
        return False
    if inner_folds is None or inner_fold is None:
        missing = INNER_KEYS[0] if inner_folds is None else INNER_KEYS[1]
        raise ConfigError(missing, "is null while the other inner split key is set",
                          "set both data.inner_folds and data.inner_fold (e.g. 5 and 0), or neither")
    check_fold(inner_folds, inner_fold, INNER_KEYS)
    return True


def inner_split(labels: torch.Tensor, outer_train: np.ndarray, inner_folds: int, inner_fold: int,
                split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of an inner fold drawn from `outer_train` alone, so no outer validation image enters."""
    train, val = stratified_fold(labels[torch.from_numpy(outer_train)], inner_folds, inner_fold, split_seed,
                                 INNER_KEYS)
    return outer_train[train], outer_train[val]


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
