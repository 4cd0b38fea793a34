"""Validation folds on the real labels: disjoint, covering, stratified, stable, and never the test set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmnist.core.errors import ConfigError
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.data.folds import holdout_first, inner_split, stratified_fold, take_subset
from tests.helpers import DATA_DIR


def test_folds_are_disjoint_cover_and_are_stratified(fashion) -> None:
    labels = fashion.train_labels
    folds = [stratified_fold(labels, 5, k, split_seed=0) for k in range(5)]
    validation = [val for _, val in folds]
    assert sum(len(val) for val in validation) == 60_000
    assert len(np.unique(np.concatenate(validation))) == 60_000  # disjoint and covering
    for train, val in folds:
        assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 60_000
        counts = np.bincount(labels.numpy()[val], minlength=10)
        assert counts.max() - counts.min() <= 1  # within one image per class


def test_same_seed_same_folds_other_seed_other_folds(fashion) -> None:
    first = stratified_fold(fashion.train_labels, 5, 2, split_seed=7)[1]
    again = stratified_fold(fashion.train_labels, 5, 2, split_seed=7)[1]
    other = stratified_fold(fashion.train_labels, 5, 2, split_seed=8)[1]
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_bad_fold_settings_raise_config_errors(fashion) -> None:
    with pytest.raises(ConfigError, match="data.num_folds"):
        stratified_fold(fashion.train_labels, 1, 0, 0)
    with pytest.raises(ConfigError, match=r"data.fold.*0..4"):
        stratified_fold(fashion.train_labels, 5, 5, 0)
    with pytest.raises(ConfigError, match="data.train_subset"):
        take_subset(np.arange(100), 101, 0)



def test_inner_folds_never_reach_the_outer_validation_fold(fashion) -> None:
    """A nested search's split: inner train, inner val and outer val pairwise disjoint, the inner folds covering
    the outer training part exactly, stratified; the data module serves exactly that split."""
    labels = fashion.train_labels
    outer_train, outer_val = stratified_fold(labels, 5, 2, split_seed=1)
    inner = [inner_split(labels, outer_train, 4, k, split_seed=1) for k in range(4)]
    for train, val in inner:
        for first, second in ((train, val), (train, outer_val), (val, outer_val)):
            assert len(np.intersect1d(first, second)) == 0
        assert np.array_equal(np.sort(np.concatenate([train, val])), np.sort(outer_train))
        counts = np.bincount(labels.numpy()[val], minlength=10)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(np.sort(np.concatenate([val for _, val in inner])), np.sort(outer_train))
    module = FashionMnistDataModule(data_dir=str(DATA_DIR), num_folds=5, fold=2, split_seed=1, inner_folds=4,
                                    inner_fold=1, train_subset=500)
    module.setup("fit")
    assert np.array_equal(module.val_index, inner[1][1]) and len(module.train_index) == 500
    assert np.isin(module.train_index, inner[1][0]).all() and not np.isin(module.train_index, outer_val).any()


@pytest.mark.parametrize(("inner_folds", "inner_fold", "says"), [(4, None, "data.inner_fold: is null"),
                                                                  (None, 0, "data.inner_folds: is null"),
                                                                  (1, 0, "data.inner_folds: 1 is not"),
                                                                  (4, 4, r"data.inner_fold: .*0..3")])
def test_bad_inner_fold_settings_raise_config_errors(inner_folds, inner_fold, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        FashionMnistDataModule(data_dir=str(DATA_DIR), inner_folds=inner_folds, inner_fold=inner_fold)

def test_subset_and_holdout() -> None:
    subset = take_subset(np.arange(1000), 100, split_seed=0)
    assert len(subset) == 100 and len(np.unique(subset)) == 100
    assert np.array_equal(subset, take_subset(np.arange(1000), 100, split_seed=0))
    train, val = holdout_first(60_000, 5000)
    assert np.array_equal(val, np.arange(5000)) and train[0] == 5000 and len(train) == 55_000


def test_datamodule_serves_train_images_for_fit_and_val_and_test_only_for_test(fashion) -> None:
    module = FashionMnistDataModule(data_dir=str(DATA_DIR), input_kind="rows", batch_size=32, train_subset=500)
    module.setup("fit")
    assert len(module.train_index) == 500 and len(module.val_index) == 12_000
    assert module.train_index.max() < 60_000 and len(np.intersect1d(module.train_index, module.val_index)) == 0
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (32, 28, 28) and x.dtype == torch.float32 and y.shape == (32,)
    val_x, val_y = next(iter(module.val_dataloader()))
    expected = (fashion.train_images[module.val_index[:1024]].float() / 255 - module.mean) / module.std
    assert torch.allclose(val_x, expected) and torch.equal(val_y, fashion.train_labels[module.val_index[:1024]])
    test_batches = list(module.test_dataloader())
    assert sum(len(labels) for _, labels in test_batches) == 10_000
    assert torch.equal(torch.cat([labels for _, labels in test_batches]), fashion.test_labels)
    assert abs(module.mean - 0.2860) < 1e-3 and abs(module.std - 0.3530) < 1e-3


def test_image_batches_and_epoch_dependent_shuffling() -> None:
    module = FashionMnistDataModule(data_dir=str(DATA_DIR), input_kind="image", batch_size=64, train_subset=640)
    module.setup("fit")
    loader = module.train_dataloader()
    assert len(loader) == 10
    first_epoch = [labels for _, labels in loader]
    assert first_epoch[0].shape == (64,) and next(iter(loader))[0].shape == (64, 1, 28, 28)
    assert all(torch.equal(a, b) for a, b in zip(first_epoch, [labels for _, labels in loader], strict=True))
    loader.set_epoch(1)
    assert not torch.equal(first_epoch[0], next(iter(loader))[1])
