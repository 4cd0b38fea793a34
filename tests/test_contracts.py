"""The shared contracts on their own: checkpoint paths and format, per-class metric names, flip TTA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmnist.core.checkpoints import (
    CHECKPOINT_CONFIG_KEY,
    CheckpointError,
    last_checkpoint,
    load_checkpoint,
    net_weights,
    resolve_ckpt_path,
    run_config,
)
from fmnist.core.metric_keys import class_column, class_metric_key, flatten_per_class, metric_safe


def run_dir_with(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for name in names:
        torch.save({"state_dict": {}, "epoch": 0}, folder / name)
    return tmp_path / "run"


def test_unset_ckpt_path_starts_fresh_unless_a_model_is_required() -> None:
    for value in (None, "", "???"):
        assert resolve_ckpt_path(value) is None
        with pytest.raises(CheckpointError, match="ckpt_path is not set. Fix:"):
            resolve_ckpt_path(value, required=True)


def test_last_is_the_run_dirs_last_checkpoint_or_a_fresh_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    assert resolve_ckpt_path("last", empty) is None  # killed before its first save: train from scratch
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_ckpt_path("last", empty, required=True)
    run_dir = run_dir_with(tmp_path, "last.ckpt")
    assert resolve_ckpt_path("last", run_dir) == last_checkpoint(run_dir) == run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match="its own run dir"):
        resolve_ckpt_path("last")


def test_a_file_is_itself_and_a_run_dir_is_its_single_best_checkpoint(tmp_path: Path) -> None:
    run_dir = run_dir_with(tmp_path, "best-epoch003.ckpt", "last.ckpt")
    best = run_dir / "checkpoints" / "best-epoch003.ckpt"
    assert resolve_ckpt_path(str(best)) == best
    assert resolve_ckpt_path(run_dir) == best
    assert resolve_ckpt_path(run_dir / "checkpoints") == best
    torch.save({}, run_dir / "checkpoints" / "best-epoch004.ckpt")
    with pytest.raises(CheckpointError, match=r"holds 2 best-\*.ckpt files \(best-epoch003.ckpt, best-epoch004"):
        resolve_ckpt_path(run_dir)
    missing = tmp_path / "missing.ckpt"
    with pytest.raises(CheckpointError, match="does not exist: no such file") as caught:
        resolve_ckpt_path(missing)
    assert str(missing) in str(caught.value) and "Fix:" in str(caught.value)


def test_the_raw_loader_refuses_what_is_not_an_fmnist_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        load_checkpoint(path)
    torch.save({"state_dict": {}}, path)
    checkpoint = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"not written by fmnist .*'{CHECKPOINT_CONFIG_KEY}'"):
        run_config(checkpoint, path)
    assert run_config({CHECKPOINT_CONFIG_KEY: {"model": {"name": "m"}}}, path) == {"model": {"name": "m"}}


def test_net_weights_drop_the_module_and_torch_compile_prefixes() -> None:
    one = torch.ones(1)
    state_dict = {"net.fc.weight": one, "net._orig_mod.conv.bias": one, "val_metrics.acc.tp": one}
    assert net_weights(state_dict) == {"fc.weight": one, "conv.bias": one}


def test_per_class_figures_are_named_once_for_logs_and_report() -> None:
    assert metric_safe("T-shirt/top") == "T-shirt_top" and metric_safe("Ankle boot") == "Ankle_boot"
    assert class_metric_key("test", "f1", "T-shirt/top") == "test/class_f1/T-shirt_top"
    assert class_column("test", "recall", "Ankle boot") == "test_recall_Ankle_boot"
    per_class = {"acc": torch.tensor([0.5, 1.0]), "f1": torch.tensor([0.25, 0.75])}
    assert flatten_per_class("val", per_class, ("T-shirt/top", "Bag")) == {
        "val/class_acc/T-shirt_top": 0.5, "val/class_acc/Bag": 1.0,
        "val/class_f1/T-shirt_top": 0.25, "val/class_f1/Bag": 0.75}
    with pytest.raises(ValueError):  # a class without a name (or a name without a value) is a bug, not a gap
        flatten_per_class("val", per_class, ("T-shirt/top",))


