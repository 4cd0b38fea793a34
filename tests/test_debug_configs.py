"""The debug configs (conf/debug/): each composes over the rest and does what it says in a short real run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from fmnist.core.config_dir import CONF_DIR
from fmnist.training.builders import build_trainer
from tests.helpers import compose, run_in_process

DEBUG_CONFIGS = sorted(path.stem for path in (Path(CONF_DIR) / "debug").glob("*.yaml"))


def compose_debug(name: str, tmp_path: Path, *overrides: str):
    return compose("train", f"debug={name}", *overrides, output_dir=tmp_path)


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted(run_dir.rglob("*.ckpt"))


def test_the_debug_configs_are_there() -> None:
    assert {"default", "fdr", "overfit", "limit", "profiler", "profiler_advanced"} <= set(DEBUG_CONFIGS)


@pytest.mark.parametrize("name", DEBUG_CONFIGS)
def test_debug_configs_override_experiments_and_searches(name: str, tmp_path: Path) -> None:
    """Composed after experiment=..., so a debug config's trainer settings win; the command line wins over both."""
    cfg = compose_debug(name, tmp_path, "experiment=study_a_conv_maxpool")
    assert cfg.trainer.max_epochs == {"overfit": 30, "limit": 3}.get(name, 1)  # the study trains 100 epochs
    assert "debug" in cfg.tags
    assert compose_debug(name, tmp_path, "trainer.max_epochs=7").trainer.max_epochs == 7


def test_debug_default_turns_on_anomaly_detection_on_the_cpu(tmp_path: Path, monkeypatch) -> None:
    cfg = compose_debug("default", tmp_path)
    assert cfg.trainer.detect_anomaly is True and cfg.trainer.deterministic is True
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.max_epochs) == ("cpu", 1, 1)
    assert cfg.logger._target_.endswith("CSVLogger") and cfg.extras.ignore_warnings is False
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # Lightning sets it for deterministic=True
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer = build_trainer(cfg, tmp_path)
        assert trainer._detect_anomaly is True and trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    finally:
        torch.use_deterministic_algorithms(deterministic)  # process-wide: leave the other tests as they were


def test_fdr_runs_train_without_writing_a_checkpoint(tmp_path: Path) -> None:
    metrics = run_in_process("train", "debug=fdr", run_dir=tmp_path / "run")
    # no checkpoint under fast_dev_run: validate and test ran on the final weights
    assert metrics["best_ckpt"] == "" and metrics["status"] == "completed" and metrics["epochs"] == 1
    assert checkpoints(tmp_path / "run") == []


def test_fdr_runs_cv_without_writing_a_checkpoint(tmp_path: Path) -> None:
    run_in_process("cv", "debug=fdr", "data.num_folds=2", run_dir=tmp_path / "cv")
    summary = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())
    assert summary["status"] == "completed" and summary["folds"] == [0, 1]
    assert checkpoints(tmp_path / "cv") == []


def test_overfit_learns_its_batches_by_heart(tmp_path: Path) -> None:
    # the test set plays no part here
    run_in_process("train", "debug=overfit", "trainer.limit_test_batches=1", run_dir=tmp_path / "run")
    with (tmp_path / "run" / "history.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 30
    assert float(rows[-1]["train/acc"]) >= 0.95, [row["train/acc"] for row in rows]


def test_limit_runs_the_limited_batches(tmp_path: Path) -> None:
    # 6400 images: 100 train batches of 64, 5% -> 5 a epoch; test: 10 batches of 1024, 25% -> 2
    metrics = run_in_process("train", "debug=limit", "data.train_subset=6400", run_dir=tmp_path / "run")
    assert metrics["epochs"] == 3
    assert sum(map(sum, metrics["test/confusion"])) == 2 * 1024
    best = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=False)
    assert best["global_step"] == 5 * (metrics["best_epoch"] + 1)


def test_profiler_writes_its_report_in_the_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_in_process("train", "debug=profiler", "data.train_subset=1024", "trainer.limit_val_batches=2",
                   "trainer.limit_test_batches=2", "logger=none", run_dir=run_dir)
    report = run_dir / "fit-profile.txt"
    assert report.is_file() and "run_training_epoch" in report.read_text()
    assert (run_dir / "test-profile.txt").is_file()
