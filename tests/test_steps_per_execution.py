"""Several optimizer steps per Lightning step (data.steps_per_execution) train exactly like one.

ClassifierModule steps its own optimizer so that one Lightning step can run K of them; it also takes
over what Lightning's automatic optimization did: scheduler steps, gradient clipping, step counting.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import DictConfig

from fmnist.data.batches import BatchTransform, TensorBatches
from fmnist.errors import ConfigError
from fmnist.training.builders import build_datamodule, build_module, build_trainer, trainer_arguments
from fmnist.training.module import ClassifierModule, MonitorMissingError
from tests.conftest import DATA_DIR
from tests.test_config import compose

SMALL_RUN = [f"data.data_dir={DATA_DIR}", "model=conv_maxpool", "data.holdout_size=500", "data.train_subset=1000",
             "data.batch_size=64", "data.eval_batch_size=500", "logger=none", "seed=0", "trainer.deterministic=true"]


def test_groups_hold_the_same_batches_in_the_same_order() -> None:
    images = torch.zeros(1000, 28, 28, dtype=torch.uint8)
    labels = torch.arange(1000)
    transform = BatchTransform(0.0, 1.0, input_kind="rows")
    single = TensorBatches(images, labels, 64, transform, train=True, seed=3)
    grouped = TensorBatches(images, labels, 64, transform, train=True, seed=3, batches_per_item=5)
    batches = [y for _, y in single]
    groups = [y for _, y in grouped]
    assert len(single) == 16 and len(grouped) == 4  # 16 batches (the last of 40 images) in groups 5, 5, 5, 1
    assert [len(group) for group in groups] == [320, 320, 320, 40]
    split = [part for group in groups for part in group.split(64)]
    assert all(torch.equal(a, b) for a, b in zip(batches, split, strict=True))
    assert [grouped.batches_in(items) for items in (1, 3, 4, 9)] == [5, 15, 16, 16]
    assert grouped.full_items == 3  # the fourth holds one short batch


def fit(cfg: DictConfig, tmp_path: Path, fast_steps: bool = True) -> tuple[ClassifierModule, int]:
    trainer = build_trainer(cfg, tmp_path)
    L.seed_everything(0, verbose=False)
    module = build_module(cfg)
    module.fast_steps = fast_steps
    trainer.fit(module, datamodule=build_datamodule(cfg))
    return module, trainer.global_step


def test_grouped_steps_train_exactly_like_single_steps(tmp_path: Path) -> None:
    """Same weights bit for bit, with a per-step schedule whose length must count optimizer steps (one-cycle
    raises if stepped past its end), through the hook-free step and through Lightning's own."""
    runs = {}
    for name, per_call, fast in (("single", 1, True), ("grouped", 5, True), ("grouped_lightning_path", 5, False)):
        cfg = compose([*SMALL_RUN, "trainer.max_epochs=2", "scheduler=onecycle", "regularization=max_norm",
                       f"data.steps_per_execution={per_call}"], str(tmp_path / name))
        runs[name] = fit(cfg, tmp_path / name, fast)
    (single, single_steps) = runs["single"]
    assert single_steps == 32  # 16 batches x 2 epochs
    assert single._silent_hooks and not runs["grouped_lightning_path"][0]._silent_hooks
    for name in ("grouped", "grouped_lightning_path"):
        module, steps = runs[name]
        assert steps == single_steps, name
        for key, value in single.net.state_dict().items():
            assert torch.equal(value, module.net.state_dict()[key]), (name, key)


def test_max_steps_counts_optimizer_steps_inside_a_group(tmp_path: Path) -> None:
    cfg = compose([*SMALL_RUN, "trainer.max_epochs=3", "+trainer.max_steps=7", "data.steps_per_execution=5"],
                  str(tmp_path))
    assert fit(cfg, tmp_path)[1] == 7


def test_gradient_clip_val_bounds_each_step(tmp_path: Path) -> None:
    """SGD with gradients clipped to norm 1e-3 moves the weights by at most lr x 1e-3 per step."""
    plain_sgd = ["optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0", "optimizer.nesterov=false"]
    cfg = compose([*SMALL_RUN, "trainer.max_epochs=1", *plain_sgd, "trainer.gradient_clip_val=1e-3"], str(tmp_path))
    module = build_module(cfg)
    before = torch.cat([p.detach().flatten().clone() for p in module.net.parameters()])
    trainer = build_trainer(cfg, tmp_path)
    trainer.fit(module, datamodule=build_datamodule(cfg))
    moved = torch.cat([p.detach().flatten() for p in module.net.parameters()]) - before
    assert trainer.global_step == 16
    assert 0 < moved.norm() <= 0.1 * 1e-3 * 16 * 1.0001


def test_an_epoch_schedule_steps_after_validation(tmp_path: Path) -> None:
    """ReduceLROnPlateau set to never see an improvement after the first epoch halves the rate after the second."""
    never_improves = ["scheduler=plateau", "scheduler.monitor=val/loss", "scheduler.factory.patience=0",
                      "scheduler.factory.mode=max", "+scheduler.factory.threshold_mode=abs",
                      "+scheduler.factory.threshold=1e9"]
    cfg = compose([*SMALL_RUN, "trainer.max_epochs=2", "optimizer.lr=1e-3", *never_improves], str(tmp_path))
    module, _ = fit(cfg, tmp_path)
    assert module.optimizers().param_groups[0]["lr"] == pytest.approx(5e-4)
    cfg = compose([*SMALL_RUN, "trainer.max_epochs=1", "+trainer.limit_val_batches=0", *never_improves],
                  str(tmp_path / "no_val"))
    with pytest.raises(MonitorMissingError, match=r"monitors 'val/loss'.*Fix: keep validation on"):
        fit(cfg, tmp_path / "no_val")


def test_settings_lightning_refuses_under_manual_optimization() -> None:
    cfg = compose(["trainer.gradient_clip_val=0.5", "trainer.gradient_clip_algorithm=value"])
    assert "gradient_clip_val" not in trainer_arguments(cfg)  # applied by the module instead
    with pytest.raises(ConfigError, match=r"trainer.accumulate_grad_batches: 2 .*Fix: raise data.batch_size"):
        trainer_arguments(compose(["+trainer.accumulate_grad_batches=2"]))
    with pytest.raises(ConfigError, match=r"data.steps_per_execution: 0 is not a positive integer"):
        build_datamodule(compose(["data.steps_per_execution=0"]))


def test_steps_per_execution_defaults_to_about_1024_images() -> None:
    assert compose(["data.batch_size=16"]).data.steps_per_execution == 64
    assert compose(["data.batch_size=100"]).data.steps_per_execution == 11
    assert compose(["data.batch_size=2048"]).data.steps_per_execution == 1
