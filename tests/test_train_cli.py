"""The real entry point: short real trainings learn, and bad input ends in one clear line."""

from __future__ import annotations

import pytest

REQUIRED_KEYS = {"model", "params", "epochs", "train/acc", "val/acc", "val/precision", "val/recall", "val/f1",
                 "test/acc", "test/precision", "test/recall", "test/f1", "train_seconds", "ms_per_step",
                 "images_per_second", "best_ckpt"}


@pytest.mark.parametrize(
    ("model", "params", "overrides"),
    [
        ("conv_maxpool", 63_050, ["trainer.max_epochs=2", "data.batch_size=64"]),
        ("lstm", 53_010, ["trainer.max_epochs=2", "data.batch_size=32"]),
    ],
)
def test_short_real_training_learns_and_writes_metrics(train_cli, model: str, params: int,
                                                        overrides: list[str]) -> None:
    result = train_cli(f"model={model}", "data.train_subset=6000", "logger=csv", *overrides)
    assert result.returncode == 0, result.output[-3000:]
    metrics = result.metrics()
    assert REQUIRED_KEYS <= set(metrics) and all(metrics[key] is not None for key in REQUIRED_KEYS)
    assert metrics["model"] == model and metrics["params"] == params and metrics["epochs"] == 2
    assert metrics["test/acc"] > 0.70 and metrics["val/acc"] > 0.70  # chance is 0.10
    assert len(metrics["test/confusion"]) == 10 and sum(map(sum, metrics["test/confusion"])) == 10_000
    run_dir = result.run_dir
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "history.csv").is_file()
    assert (run_dir / "run_info.json").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()


# one of each kind through the real command: a missing config option and an unknown key (Hydra's own messages),
# a bad value (fmnist's check, one line through run_guarded); tests/test_reliability.py checks every value in-process
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=resnet9000", "Could not find 'model/resnet9000'"),
        ("data.batch_size=0", "fmnist: error: data.batch_size: 0 is not an integer >= 1. Fix:"),
        ("data.batchsize=3", "Key 'batchsize' is not in struct"),
    ],
)
def test_bad_config_gives_one_clear_error(train_cli, override: str, expected: str) -> None:
    result = train_cli(override)
    assert result.returncode != 0
    assert expected in result.output
    assert "Traceback" not in result.output


def test_unknown_model_lists_the_valid_ones(train_cli) -> None:
    result = train_cli("model=nope")
    assert result.returncode != 0 and "conv_maxpool" in result.output and "lstm" in result.output


def test_missing_data_says_how_to_fix(train_cli, tmp_path) -> None:
    result = train_cli(f"data.data_dir={tmp_path}/empty", f"data.system_dir={tmp_path}/none", "data.download=false")
    assert result.returncode == 2
    assert "Fashion-MNIST is not in" in result.stderr and "apt-get install dataset-fashion-mnist" in result.stderr
    assert "Traceback" not in result.output


def test_an_earlier_best_epoch_keeps_the_whole_runs_figures(train_cli) -> None:
    # mode=min picks the epoch with the lowest val/acc (epoch 0 of a run that learns); evaluating that checkpoint
    # restores every callback's state to epoch 0, which must not shorten the run's history in metrics.json
    result = train_cli("model=small_conv", "data.train_subset=3000", "trainer.max_epochs=2", "logger=csv",
                       "callbacks.model_checkpoint.mode=min")
    assert result.returncode == 0, result.output[-3000:]
    metrics = result.metrics()
    rows = (result.run_dir / "history.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and metrics["epochs"] == 2 and metrics["best_epoch"] == 0
    assert metrics["train/acc"] is not None and metrics["ms_per_step"] > 0
