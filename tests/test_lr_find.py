"""`python -m fmnist.lr_find`: Lightning's learning-rate finder on a training recipe writes a plot and a suggestion."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from omegaconf import DictConfig

from fmnist.core.errors import ConfigError
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.lr_find import PLOT_FILE, RESULT_FILE, find_lr, lr_override, steepest_descent_lr
from tests.helpers import compose as compose_command
from tests.helpers import run_cli

SMALL = ["model=conv_maxpool", "data.train_subset=2000", "data.holdout_size=1000", "lr_find.num_training=30",
         "seed=0"]


def compose(overrides: list[str], tmp: Path) -> DictConfig:
    return compose_command("lr_find", *overrides, output_dir=tmp)


@pytest.mark.cli
def test_the_command_writes_a_plot_and_a_suggestion_and_prints_the_override(tmp_path: Path) -> None:
    """`python -m fmnist.lr_find` as a user runs it: the lr_find command's one start in the suite."""
    result = run_cli("fmnist.lr_find", *SMALL, run_dir=tmp_path / "run")
    assert result.returncode == 0, result.output[-3000:]
    printed = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"optimizer\.lr=\d\.\de-?\d+", printed), printed
    found = json.loads((result.run_dir / RESULT_FILE).read_text())
    assert found["override"] == printed and 1e-6 <= found["suggested_lr"] <= 1.0
    assert found["suggestion"] == "log_slope" and found["suggested_lr"] == found["log_slope_lr"]
    assert found["lightning_lr"] is not None  # Lightning's own suggestion, recorded beside ours
    assert found["configured_lr"] == 1e-3 and found["steps_run"] == len(found["lr"]) == len(found["loss"]) <= 30
    assert (result.run_dir / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(result.run_dir.glob(".lr_find*")) and not (result.run_dir / "checkpoints").exists()


def test_the_finder_trains_on_the_training_split_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: FashionMnistDataModule) -> None:
        raise AssertionError("the learning-rate finder asked for the test set")

    monkeypatch.setattr(FashionMnistDataModule, "test_dataloader", refuse)
    found = find_lr(compose(SMALL, tmp_path), tmp_path)
    assert found["model"] == "conv_maxpool" and (tmp_path / PLOT_FILE).is_file()


def test_grouped_steps_and_bad_options_are_refused_with_the_fix(tmp_path: Path) -> None:
    grouped = [*SMALL, "module=grouped_steps", "data.steps_per_execution=4"]
    with pytest.raises(ConfigError, match=r"module: .*Fix: add module=default data.steps_per_execution=1"):
        find_lr(compose(grouped, tmp_path), tmp_path)
    with pytest.raises(ConfigError, match=r"lr_find.max_lr: 1e-07 is not above lr_find.min_lr"):
        find_lr(compose([*SMALL, "lr_find.max_lr=1e-7"], tmp_path), tmp_path)


def test_the_override_uses_the_configs_notation() -> None:
    assert lr_override(3.2e-3) == "optimizer.lr=3.2e-3"
    assert lr_override(0.01995) == "optimizer.lr=2.0e-2"
    assert lr_override(1.5) == "optimizer.lr=1.5e0"


def test_the_suggestion_is_the_steepest_descent_against_log_lr() -> None:
    """A loss that falls fastest per decade at 1e-2: Lightning's slope against lr itself would pick a small rate."""
    lrs = [10 ** (-6 + 6 * step / 99) for step in range(100)]
    losses = [2.0 - 1.0 / (1.0 + math.exp(-3.0 * (math.log10(lr) + 2.0))) for lr in lrs]
    assert steepest_descent_lr(lrs, losses) == pytest.approx(1e-2, rel=0.15)
    assert steepest_descent_lr(lrs[:12], losses[:12]) is None  # too few rates after the skips
