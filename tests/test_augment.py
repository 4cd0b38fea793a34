"""Batch augmentations move pixels as intended and never change labels or shapes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fmnist.data.augment import Augmentation, random_erase, shift_and_mirror


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_flip_mirrors_about_half_the_batch() -> None:
    x = torch.rand(1000, 28, 28)
    flipped = shift_and_mirror(x, 0, True, generator())
    mirrored = torch.tensor([torch.equal(a.flip(-1), b) for a, b in zip(x, flipped, strict=True)])
    unchanged = torch.tensor([torch.equal(a, b) for a, b in zip(x, flipped, strict=True)])
    assert bool((mirrored | unchanged).all()) and 400 < int(mirrored.sum()) < 600


def test_translate_shifts_a_single_pixel_by_at_most_the_limit() -> None:
    x = torch.zeros(500, 28, 28)
    x[:, 14, 14] = 1.0
    moved = shift_and_mirror(x, 2, False, generator())
    assert moved.shape == x.shape and torch.equal(moved.sum(dim=(1, 2)), torch.ones(500))
    rows, cols = moved.nonzero()[:, 1], moved.nonzero()[:, 2]
    assert set(rows.tolist()) == set(range(12, 17)) and set(cols.tolist()) == set(range(12, 17))


def test_flip_and_translate_in_one_gather_equal_mirror_then_shift() -> None:
    """The fused op must equal the plain definition: mirror the image, pad it, crop 28x28 at the shift."""
    x = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    moved = shift_and_mirror(x, 2, True, generator())
    draws = generator()
    mirror = torch.rand(64, 1, generator=draws) < 0.5
    shifts = torch.randint(0, 5, (2, 64, 1), generator=draws)
    for index in range(64):
        image = x[index].flip(-1) if mirror[index] else x[index]
        top, left = int(shifts[0, index]), int(shifts[1, index])
        expected = F.pad(image, (2, 2, 2, 2))[top : top + 28, left : left + 28]
        assert torch.equal(moved[index], expected), index
    assert 20 < int(mirror.sum()) < 44 and len(set(shifts.flatten().tolist())) == 5


def test_erase_zeroes_a_rectangle_in_the_chosen_share() -> None:
    x = torch.ones(1000, 28, 28)
    erased = random_erase(x, 0.5, generator())
    touched = (erased == 0).flatten(1).any(dim=1)
    assert 400 < int(touched.sum()) < 600
    assert int((erased == 0).flatten(1).sum(dim=1).max()) <= 14 * 14


def test_inactive_augmentation_is_identity() -> None:
    x = torch.rand(8, 28, 28)
    assert not Augmentation().active and torch.equal(Augmentation()(x, generator()), x)
