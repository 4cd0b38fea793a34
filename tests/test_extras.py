"""What a run does around its job (fmnist/core/console.py, cfg.extras): the config tree, tags, the per-epoch lines
off a terminal, the summary table, and the warning filters."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from fmnist.core import console as extras
from fmnist.training.callbacks import EpochLine
from tests.helpers import CliResult, run_cli

LEAF_SPEC = "`isinstance(treespec, LeafSpec)` is deprecated"
TIP = "💡 Tip: For seamless cloud logging"


def run_train(*overrides: str, run_dir: Path) -> CliResult:
    """The train command with Python's default warning filters: these tests are about warnings and printed output."""
    return run_cli("fmnist.train", "data.train_subset=512", "trainer.limit_val_batches=2",
                   "trainer.limit_test_batches=2", *overrides, run_dir=run_dir, python_warnings=True)


@pytest.mark.cli
def test_ignore_warnings_false_shows_them_all_and_no_tree_off_a_terminal(tmp_path: Path) -> None:
    """The other side of the train smoke test (tests/test_train_cli.py), whose run filters them."""
    result = run_train("trainer.max_epochs=1", "logger=none", "extras.ignore_warnings=false", run_dir=tmp_path / "run")
    assert result.returncode == 0, result.output[-3000:]
    assert LEAF_SPEC in result.stderr and TIP in result.output
    assert "Restoring states from the checkpoint" in result.output
    assert "├── model" not in result.stdout  # print_config: null -> only on a terminal
    assert "conv_maxpool: results" in result.stdout


def test_print_config_follows_the_terminal_unless_set(monkeypatch) -> None:
    for terminal in (True, False):
        monkeypatch.setattr(extras, "is_terminal", lambda terminal=terminal: terminal)
        assert extras.wants(None) is terminal
        assert extras.wants(True) is True and extras.wants(False) is False


def test_config_tree_lists_every_top_level_key() -> None:
    cfg = OmegaConf.create({"seed": 1, "model": {"name": "m", "width": "${seed}"}, "tags": [], "zzz": {"a": 1}})
    console = extras.Console(record=True, width=100, color_system=None)
    extras.print_config_tree(cfg, console)
    text = console.export_text()
    assert text.index("model") < text.index("seed") < text.index("zzz")
    assert "width: 1" in text and "tags: []" in text  # resolved


def test_ignore_known_warnings_filters_only_the_known_ones(caplog) -> None:
    lightning_log = logging.getLogger(extras.LIGHTNING_LOGGERS[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extras.ignore_known_warnings()
        try:
            warnings.warn(f"{LEAF_SPEC}, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()`", FutureWarning,
                          stacklevel=1)
            warnings.warn("another future change", FutureWarning, stacklevel=1)
            with caplog.at_level(logging.INFO, logger=lightning_log.name):
                lightning_log.info(f"{TIP}, try installing [litlogger]")
                lightning_log.info("Restoring states from the checkpoint path at x.ckpt")
                lightning_log.info("Restored all states from the checkpoint at x.ckpt")
        finally:
            for name in extras.LIGHTNING_LOGGERS:
                logging.getLogger(name).removeFilter(extras.keeps_line)
    assert [str(warning.message) for warning in caught] == ["another future change"]
    assert [record.getMessage() for record in caplog.records] == ["Restored all states from the checkpoint at x.ckpt"]


@pytest.mark.parametrize(("progress_bar", "always", "logged"), [(None, False, True), (object(), False, False),
                                                                 (object(), True, True)])
def test_epoch_line_is_quiet_beside_a_progress_bar(progress_bar, always: bool, logged: bool, caplog) -> None:
    trainer = SimpleNamespace(is_global_zero=True, progress_bar_callback=progress_bar, sanity_checking=False,
                              current_epoch=2, max_epochs=5,
                              callback_metrics={"train/loss": torch.tensor(0.5), "train/acc": torch.tensor(0.8),
                                                "val/loss": torch.tensor(0.6), "val/acc": torch.tensor(0.75)})
    callback = EpochLine(always=always)
    with caplog.at_level(logging.INFO, logger="fmnist.train"):
        callback.on_train_epoch_start(trainer, None)
        callback.on_train_epoch_end(trainer, None)
    messages = [record.getMessage() for record in caplog.records]
    if logged:
        assert len(messages) == 1
        assert messages[0].startswith("epoch 2/4: train loss 0.5000 acc 0.8000 | val loss 0.6000 acc 0.7500 | ")
    else:
        assert messages == []
