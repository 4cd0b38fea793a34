"""Modern recipe options: EMA / SWA weight averaging, mixup / CutMix, and the warm-up + cosine schedule.

Each averaged model must be what every figure after fit reports; mixing must keep shapes, give soft labels that sum
to 1, never touch the resident uint8 data, never reach validation or test, and leave a run without it unchanged.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmnist.core.errors import ConfigError
from fmnist.data.augment import Augmentation, mix_batch
from fmnist.data.batches import BatchTransform, TensorBatches
from fmnist.inference.checkpoint import load_model
from fmnist.train import fit_and_test
from fmnist.training.builders import build_datamodule, build_module, build_scheduler
from fmnist.training.schedules import warmup_cosine
from tests.helpers import GROUPED, SMALL_RUN, compose, fit

QUICK = [*SMALL_RUN, "data.train_subset=2000", "data.holdout_size=1000", "trainer.max_epochs=2"]


def uint8_images(count: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (count,), generator=generator)


def batches(augmentation: Augmentation, steps_per_execution: int = 1, train: bool = True,
            channels_last: bool = True) -> tuple[TensorBatches, torch.Tensor]:
    images, labels = uint8_images()
    transform = BatchTransform(0.286, 0.353, "image", augmentation, channels_last)
    return (TensorBatches(images, labels, 32, transform, train=train, seed=3, steps_per_execution=steps_per_execution),
            images)


# --- mixup and CutMix -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alphas", [(0.2, 0.0), (0.0, 1.0), (0.4, 1.0)], ids=["mixup", "cutmix", "both"])
def test_mixing_keeps_shapes_and_gives_soft_labels_that_sum_to_one(alphas: tuple[float, float]) -> None:
    x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,))
    before = x.clone()
    for seed in range(20):
        mixed, soft = mix_batch(x, y, *alphas, 1.0, 0.5, np.random.default_rng(seed))
        assert mixed.shape == x.shape and mixed.dtype == x.dtype and soft.shape == (64, 10)
        assert mixed.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(soft.sum(dim=1), torch.ones(64), atol=1e-6) and bool((soft >= 0).all())
        # image i is mixed with image 63 - i, in the proportion its soft label gives its own class
        own = soft.gather(1, y[:, None]).squeeze(1)
        partner_share = soft.gather(1, y.flip(0)[:, None]).squeeze(1)
        differ = y != y.flip(0)
        lam = own[differ]
        assert torch.allclose(lam, lam[0].expand_as(lam)) and torch.allclose(partner_share[differ], 1 - lam, atol=1e-6)
        is_mixup = torch.allclose(mixed, lam[0] * x + (1 - lam[0]) * x.flip(0), atol=1e-5)
        from_self, from_partner = mixed == x, mixed == x.flip(0)  # CutMix: every pixel is one of the two
        is_cutmix = bool((from_self | from_partner).all())
        assert is_mixup if alphas[1] == 0 else is_cutmix if alphas[0] == 0 else is_mixup or is_cutmix
        if is_cutmix:  # in the share the label says
            assert torch.allclose(from_self.flatten(1).float().mean(dim=1)[differ], lam, atol=1e-6)
    assert torch.equal(x, before)


def test_mixing_never_touches_the_uint8_source_nor_the_evaluation_batches() -> None:
    mixup = Augmentation(flip=True, translate=2, mixup_alpha=0.2, cutmix_alpha=1.0)
    loader, images = batches(mixup)
    source = images.clone()
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and y.shape == (len(x), 10)
    assert torch.equal(images, source)
    evaluated, _ = batches(mixup, train=False)
    plain, _ = batches(Augmentation(), train=False)
    for (x, y), (x_plain, y_plain) in zip(evaluated, plain, strict=True):
        assert y.dtype == torch.int64 and torch.equal(y, y_plain) and torch.equal(x, x_plain)


def test_mixing_off_is_the_pipeline_of_before_and_on_only_adds_the_mix() -> None:
    """Off (alphas 0, or probability 0) draws nothing extra: the batches are those of the pixel moves alone. On, each
    batch is the same pixel-moved batch, then mixed: the device's random stream is left as it was."""
    moves = Augmentation(flip=True, translate=2, erase=0.5)
    reference = list(batches(moves)[0])
    for off in (Augmentation(flip=True, translate=2, erase=0.5, mixup_alpha=0.0, cutmix_alpha=0.0),
                Augmentation(flip=True, translate=2, erase=0.5, mixup_alpha=0.2, mix_probability=0.0)):
        assert not off.mixing
        for (x, y), (x_ref, y_ref) in zip(batches(off)[0], reference, strict=True):
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    mixed = list(batches(Augmentation(flip=True, translate=2, erase=0.5, mixup_alpha=0.2))[0])
    for (x, soft), (x_ref, y_ref) in zip(mixed, reference, strict=True):
        differ = int(torch.nonzero(y_ref != y_ref.flip(0))[0])  # an image whose partner has another label
        lam = float(soft[differ, y_ref[differ]])
        assert torch.allclose(x, lam * x_ref + (1 - lam) * x_ref.flip(0), atol=1e-5)


def test_grouped_items_are_mixed_as_their_batches_one_by_one() -> None:
    both = Augmentation(flip=True, mixup_alpha=0.2, cutmix_alpha=1.0)
    single = list(batches(both)[0])
    grouped = list(batches(both, steps_per_execution=3)[0])
    x_single, y_single = torch.cat([x for x, _ in single]), torch.cat([y for _, y in single])
    x_grouped, y_grouped = torch.cat([x for x, _ in grouped]), torch.cat([y for _, y in grouped])
    assert torch.equal(x_single, x_grouped) and torch.equal(y_single, y_grouped)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_label_loss_equals_the_index_loss_on_one_hot_labels(smoothing: float) -> None:
    module = build_module(compose("train", "regularization=label_smoothing",
                                  f"regularization.label_smoothing={smoothing}"))
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    hard = module.training_loss(x, y)
    soft = module.training_loss(x, F.one_hot(y, 10).float())
    assert torch.allclose(hard, soft, atol=1e-6)
    assert torch.equal(module.train_tally.targets[0], module.train_tally.targets[1])  # accuracy: the argmax


def test_bad_mixing_options_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"augmentation.mixup_alpha: -1 is not a number >= 0"):
        Augmentation(mixup_alpha=-1)
    with pytest.raises(ConfigError, match=r"augmentation.mix_probability: 2 is not a probability"):
        Augmentation(cutmix_alpha=1.0, mix_probability=2)


@pytest.mark.parametrize("option", ["mixup", "cutmix"])
def test_mixed_training_runs_and_grouped_steps_train_alike(tmp_path: Path, option: str) -> None:
    runs = {}
    for name, extra in (("default", []), ("grouped", GROUPED)):
        cfg = compose("train", *SMALL_RUN, "trainer.max_epochs=1", f"augmentation={option}",
                      "regularization=label_smoothing", *extra, output_dir=tmp_path / name)
        runs[name] = fit(cfg, tmp_path / name)[0]
    for key, value in runs["default"].net.state_dict().items():
        assert torch.equal(value, runs["grouped"].net.state_dict()[key]), key


# --- warm-up + cosine -------------------------------------------------------------------------------------------


def test_warmup_cosine_rises_then_falls() -> None:
    spec = build_scheduler(compose("train", "scheduler=warmup_cosine", "scheduler.factory.warmup_fraction=0.1"))
    assert spec is not None and spec.interval == "step" and spec.total_steps_kwarg == "total_steps"
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = spec.factory(optimizer, **{spec.total_steps_kwarg: 100})
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(0.005) and peak == 10 and lrs[peak] == pytest.approx(0.5)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :], strict=False)) and lrs[-1] < 1e-3
    no_warmup = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    assert type(warmup_cosine(no_warmup, 100, warmup_fraction=0.0)).__name__ == "CosineAnnealingLR"
    with pytest.raises(ConfigError, match=r"scheduler.factory.warmup_fraction: 1.5 is not in \[0, 1\)"):
        warmup_cosine(no_warmup, 100, warmup_fraction=1.5)


class LrRecorder(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_warmup_cosine_spans_the_whole_run_in_both_modules(tmp_path: Path) -> None:
    schedule = ["scheduler=warmup_cosine", "scheduler.factory.warmup_fraction=0.25", "optimizer.lr=2e-3"]
    recorder = LrRecorder()
    default, trainer = fit(compose("train", *SMALL_RUN, "trainer.max_epochs=2", *schedule, output_dir=tmp_path / "d"),
                           tmp_path / "d", recorder)
    lrs = recorder.lrs
    assert len(lrs) == trainer.global_step == 32 and int(np.argmax(lrs)) == 8 and max(lrs) == pytest.approx(2e-3)
    assert lrs[0] == pytest.approx(2e-5) and lrs[-1] < 0.02 * 2e-3
    grouped, _ = fit(compose("train", *SMALL_RUN, "trainer.max_epochs=2", *schedule, *GROUPED,
                             output_dir=tmp_path / "g"), tmp_path / "g")
    assert grouped.optimizers().param_groups[0]["lr"] == default.optimizers().param_groups[0]["lr"]
    for key, value in default.net.state_dict().items():
        assert torch.equal(value, grouped.net.state_dict()[key]), key


# --- EMA and SWA ------------------------------------------------------------------------------------------------


def history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "history.csv").open() as stream:
        return list(csv.DictReader(stream))


def accuracy_of(checkpoint: str, cfg: Any, stage: str) -> float:
    """Accuracy of a checkpoint's backbone on the run's validation or (first limit_test_batches) test batches,
    outside Lightning."""
    net = load_model(checkpoint).net
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
    batches = list(loader)[: cfg.trainer.limit_test_batches if stage == "test" else None]
    with torch.inference_mode():
        logits = torch.cat([net.eval()(x) for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    return float((logits.argmax(dim=1) == labels).float().mean())


def train(tmp_path: Path, name: str, *overrides: str) -> tuple[dict[str, Any], Any]:
    cfg = compose("train", *QUICK, "logger=csv", "trainer.limit_test_batches=2", *overrides, output_dir=tmp_path / name)
    return fit_and_test(cfg, tmp_path / name), cfg


def test_ema_is_what_validation_checkpoints_test_and_eval_use(tmp_path: Path) -> None:
    plain, _ = train(tmp_path, "plain")
    ema, cfg = train(tmp_path, "ema", "callbacks=ema", "callbacks.ema.decay=0.9")
    assert ema["val/acc"] != plain["val/acc"] and ema["test/acc"] != plain["test/acc"]
    trained = [(row["train/loss"], row["train/acc"]) for row in history(tmp_path / "plain")]
    assert [(row["train/loss"], row["train/acc"]) for row in history(tmp_path / "ema")] == trained  # same training
    best = ema["best_ckpt"]
    assert ema["val/acc"] == pytest.approx(accuracy_of(best, cfg, "val"), abs=1e-6)
    assert ema["test/acc"] == pytest.approx(accuracy_of(best, cfg, "test"), abs=1e-6)
    validated = {int(row["epoch"]): float(row["val/acc"]) for row in history(tmp_path / "ema")}
    assert validated[ema["best_epoch"]] == pytest.approx(ema["val/acc"], abs=1e-6)  # the EMA weights, each epoch
    saved = torch.load(best, map_location="cpu", weights_only=True)
    assert any(not torch.equal(saved["state_dict"][key], saved["current_model_state"][key])
               for key in saved["state_dict"] if key.startswith("net."))


def test_swa_evaluates_the_average_of_its_epochs(tmp_path: Path) -> None:
    """swa_epoch_start=2 (1-based) averages the weights at the start of epochs 2 and 3, i.e. after epochs 0 and 1."""
    every_epoch = ["callbacks.model_checkpoint.save_top_k=-1", "callbacks.model_checkpoint.filename='epoch{epoch:03d}'"]
    swa, cfg = train(tmp_path, "swa", "trainer.max_epochs=3", "callbacks=swa", "callbacks.swa.swa_epoch_start=2",
                     "callbacks.swa.swa_lrs=5e-4", *every_epoch)
    best = Path(swa["best_ckpt"])
    assert best.name == "averaged.ckpt" and swa["epochs"] == 3 and swa["best_epoch"] == 2  # the last epoch
    assert swa["train/acc"] is not None
    averaged = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    epochs = [torch.load(best.parent / f"epoch{epoch:03d}.ckpt", map_location="cpu", weights_only=True)["state_dict"]
              for epoch in (0, 1, 2)]
    for key in (key for key in averaged if key.startswith("net.")):
        assert torch.allclose(averaged[key], (epochs[0][key] + epochs[1][key]) / 2, atol=1e-6), key
    assert swa["val/acc"] == pytest.approx(accuracy_of(str(best), cfg, "val"), abs=1e-6)
    assert swa["test/acc"] == pytest.approx(accuracy_of(str(best), cfg, "test"), abs=1e-6)


@pytest.mark.parametrize(("option", "refused"), [("ema", "EMAWeightAveraging act"),
                                                  ("swa", "StochasticWeightAveraging swaps")])
def test_grouped_steps_refuse_weight_averaging_with_the_fix(tmp_path: Path, option: str, refused: str) -> None:
    cfg = compose("train", *SMALL_RUN, "trainer.max_epochs=1", f"callbacks={option}", *GROUPED, output_dir=tmp_path)
    with pytest.raises(ConfigError, match=rf"{refused}.*Fix: use module=default data.steps_per_execution=1"):
        fit(cfg, tmp_path)
