"""The real entry point: short real trainings learn, and bad input ends in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from tests.helpers import compose, read_metrics, run_cli, run_guarded_in_process, run_in_process
from tests.test_extras import LEAF_SPEC, TIP

REQUIRED_KEYS = {"model", "params", "epochs", "train/acc", "val/acc", "val/precision", "val/recall", "val/f1",
                 "test/acc", "test/precision", "test/recall", "test/f1", "train_seconds", "ms_per_step",
                 "images_per_second", "best_ckpt"}


def assert_learned(metrics: dict, run_dir: Path, model: str, params: int) -> None:
    assert REQUIRED_KEYS <= set(metrics) and all(metrics[key] is not None for key in REQUIRED_KEYS)
    assert metrics["model"] == model and metrics["params"] == params and metrics["epochs"] == 2
    assert metrics["test/acc"] > 0.70 and metrics["val/acc"] > 0.70  # chance is 0.10
    assert len(metrics["test/confusion"]) == 10 and sum(map(sum, metrics["test/confusion"])) == 10_000
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "history.csv").is_file()
    assert (run_dir / "run_info.json").is_file()


@pytest.mark.cli
def test_short_real_training_learns_writes_metrics_and_prints_its_lines(tmp_path: Path) -> None:
    """`python -m fmnist.train` as a user runs it, off a terminal, with Python's default warning filters: the train
    command's one successful start in the suite (tests/test_extras.py checks the printing helpers in-process)."""
    result = run_cli("fmnist.train", "model=conv_maxpool", "data.train_subset=6000", "logger=csv",
                     "trainer.max_epochs=2", "data.batch_size=64", "tags=[baseline,cpu]", "extras.print_config=true",
                     run_dir=tmp_path / "run", python_warnings=True)
    assert result.returncode == 0, result.output[-3000:]
    assert_learned(result.metrics(), result.run_dir, "conv_maxpool", 63_050)
    assert (result.run_dir / ".hydra" / "config.yaml").is_file()
    # the config tree, forced on off a terminal
    assert "config" in result.stdout and "├── model" in result.stdout and "conv_maxpool" in result.stdout
    # one line per epoch (no progress bar in a pipe)
    lines = [line for line in result.output.splitlines() if "fmnist.train" in line and "] - epoch " in line]
    assert [line.split("] - ")[1].split(":")[0] for line in lines] == ["epoch 0/1", "epoch 1/1"]
    assert all("train loss" in line and "val loss" in line and "acc" in line and line.endswith(" s") for line in lines)
    # the summary table at the end
    assert "conv_maxpool: results" in result.stdout and "accuracy" in result.stdout and "macro F1" in result.stdout
    assert f"results: {result.run_dir}" in result.stdout
    # tags: in metrics.json and in the logger's hparams
    assert result.metrics()["tags"] == ["baseline", "cpu"]
    hparams = OmegaConf.load(next((result.run_dir / "csv").rglob("hparams.yaml")))
    assert list(hparams.tags) == ["baseline", "cpu"]
    # the known notices are filtered by default, and nothing else
    assert LEAF_SPEC not in result.output and TIP not in result.output
    assert "Restoring states from the checkpoint" not in result.output
    assert "GPU available" in result.output  # Lightning's other info lines stay


def test_a_short_real_lstm_training_learns(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    metrics = run_in_process("train", "model=lstm", "data.train_subset=6000", "logger=csv", "trainer.max_epochs=2",
                             "data.batch_size=32", run_dir=run_dir)
    assert metrics == read_metrics(run_dir)
    assert_learned(metrics, run_dir, "lstm", 53_010)


# One of each kind through the real command: a config Hydra cannot compose (its own message, no traceback) and a bad
# value (fmnist's check, one line and exit 2 through run_guarded). The same failures of other keys and values are
# checked in-process below and in tests/test_reliability.py.
@pytest.mark.cli
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=nope", "Could not find 'model/nope'"),
        ("data.batch_size=0", "fmnist: error: data.batch_size: 0 is not an integer >= 1. Fix:"),
    ],
)
def test_bad_config_gives_one_clear_error(train_cli, override: str, expected: str) -> None:
    result = train_cli(override)
    assert result.returncode != 0 and (result.returncode == 2 or override.startswith("model="))
    assert expected in result.output
    assert "Traceback" not in result.output
    if override == "model=nope":  # the message lists the valid ones
        assert "conv_maxpool" in result.output and "lstm" in result.output


@pytest.mark.parametrize(
    ("override", "error", "expected"),
    [
        ("model=resnet9000", MissingConfigException, "Could not find 'model/resnet9000'"),
        ("data.batchsize=3", ConfigCompositionException, "Key 'batchsize' is not in struct"),
    ],
)
def test_a_config_hydra_cannot_compose_is_named(override: str, error: type, expected: str) -> None:
    """What the command prints for them, as for model=nope above: Hydra's message."""
    with pytest.raises(error) as caught:
        compose("train", override)
    assert expected in str(caught.value) or expected in str(caught.value.__cause__)


def test_missing_data_says_how_to_fix(tmp_path) -> None:
    status, err = run_guarded_in_process("train", f"data.data_dir={tmp_path}/empty",
                                         f"data.system_dir={tmp_path}/none", "data.download=false",
                                         run_dir=tmp_path / "run")
    assert status == 2
    assert "Fashion-MNIST is not in" in err and "apt-get install dataset-fashion-mnist" in err
    assert "Traceback" not in err


def test_an_earlier_best_epoch_keeps_the_whole_runs_figures(tmp_path: Path) -> None:
    # mode=min picks the epoch with the lowest val/acc (epoch 0 of a run that learns); evaluating that checkpoint
    # restores every callback's state to epoch 0, which must not shorten the run's history in metrics.json
    run_dir = tmp_path / "run"
    metrics = run_in_process("train", "model=small_conv", "data.train_subset=3000", "trainer.max_epochs=2",
                             "logger=csv", "callbacks.model_checkpoint.mode=min", run_dir=run_dir)
    rows = (run_dir / "history.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and metrics["epochs"] == 2 and metrics["best_epoch"] == 0
    assert metrics["train/acc"] is not None and metrics["ms_per_step"] > 0
