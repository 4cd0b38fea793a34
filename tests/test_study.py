"""A whole study as parallel one-fold jobs (conf/study/, issue: study throughput): the same figures as one fold
after another, never more torch threads than cores, and a failing job that leaves the others' results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fmnist.core.errors import ConfigError
from fmnist.core.process import available_cores, threads_per_job
from fmnist.core.run_files import METRICS_FILE, PREDICTIONS_FILE, RUN_INFO_FILE, SUMMARY_FILE
from tests.helpers import CliResult, run_cli

needs_joblib = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                                  reason="the sweep extra is not installed: pip install -e '.[sweep]'")
# Two study-A models x two folds of a small subset, one short epoch each.
TINY_STUDY = ("study=study_a", "experiment=study_a_small_conv,study_a_rnn", "data.num_folds=2", "cv.folds=[0],[1]",
              "data.train_subset=1200", "trainer.max_epochs=1", "++trainer.limit_val_batches=3",
              "++trainer.limit_test_batches=2")
COMPARED = ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss", "best_epoch")


def study(sweep_dir: Path, *overrides: str) -> CliResult:
    return run_cli("fmnist.cv", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}", run_dir=sweep_dir.parent)


def fold_results(sweep_dir: Path) -> dict[tuple[str, str], dict]:
    return {(path.parent.parent.name, path.parent.name): json.loads(path.read_text())
            for path in sorted(sweep_dir.glob(f"*/fold_*/{METRICS_FILE}"))}


@pytest.mark.parametrize(("setting", "jobs", "cores", "expected"), [
    ("auto", 2, 2, 1), ("auto", 4, 16, 4), ("auto", 3, 16, 5), ("auto", 1, 16, None), ("auto", 8, 2, 1),
    (None, 2, 2, None), (3, 2, 16, 3),
])
def test_threads_per_job_share_the_cores(setting: object, jobs: int, cores: int, expected: int | None) -> None:
    threads = threads_per_job(setting, jobs, cores)
    assert threads == expected
    if setting == "auto" and threads is not None and jobs <= cores:
        assert threads * jobs <= cores  # never oversubscribed while each job can have a core


@pytest.mark.parametrize("setting", [0, -2, "many", True])
def test_a_bad_thread_setting_is_refused(setting: object) -> None:
    with pytest.raises(ConfigError, match="process.threads"):
        threads_per_job(setting, 2, 2)


@pytest.mark.cli
@needs_joblib
def test_parallel_study_equals_folds_run_one_by_one(tmp_path: Path) -> None:
    parallel_dir, sequential_dir = tmp_path / "parallel", tmp_path / "sequential"
    parallel = study(parallel_dir, *TINY_STUDY, "hydra.launcher.n_jobs=2")
    assert parallel.returncode == 0, parallel.output[-2000:]
    # the same jobs one after another in the sweep's own process (joblib runs n_jobs=1 inline), at one thread each
    sequential = study(sequential_dir, *TINY_STUDY, "hydra.launcher.n_jobs=1", "process.threads=1")
    assert sequential.returncode == 0, sequential.output[-2000:]

    runs, reference = fold_results(parallel_dir), fold_results(sequential_dir)
    assert sorted(runs) == sorted(reference) == [(model, f"fold_{k}") for model in ("rnn", "small_conv")
                                                 for k in (0, 1)]
    for key, metrics in runs.items():
        assert metrics["status"] == "completed"
        assert {name: metrics[name] for name in COMPARED} == {name: reference[key][name] for name in COMPARED}, key
        ours = np.load(parallel_dir / key[0] / key[1] / PREDICTIONS_FILE)
        theirs = np.load(sequential_dir / key[0] / key[1] / PREDICTIONS_FILE)
        assert np.array_equal(ours["probabilities"], theirs["probabilities"]), key
        # two jobs at once on this machine: threads per job x jobs never exceeds its cores
        threads = json.loads((parallel_dir / key[0] / key[1] / RUN_INFO_FILE).read_text())["torch_threads"]
        assert threads * min(2, available_cores()) <= max(2, available_cores()) and threads >= 1
    for model in ("rnn", "small_conv"):  # the callback joined each model's one-fold jobs into its summary
        summary = json.loads((parallel_dir / model / SUMMARY_FILE).read_text())
        assert summary["folds"] == [0, 1] and summary["status"] == "completed"
        assert summary["mean"]["val/acc"] == pytest.approx(
            (runs[(model, "fold_0")]["val/acc"] + runs[(model, "fold_1")]["val/acc"]) / 2)
        assert "ensemble" in summary


@pytest.mark.cli
@needs_joblib
def test_a_failing_job_leaves_the_others_results(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "study"
    result = study(sweep_dir, "study=study_a", "experiment=study_a_rnn", "data.num_folds=2", "cv.folds=[0],[1]",
                   "optimizer.lr=0.001,-1", "hydra.sweep.subdir=${model.name}_lr${optimizer.lr}",
                   "data.train_subset=1000", "trainer.max_epochs=1", "++trainer.limit_val_batches=2",
                   "++trainer.limit_test_batches=2", "hydra.launcher.n_jobs=1")  # inline: parallel jobs are above
    assert result.returncode != 0 and "optimizer.lr" in result.output
    good, bad = sweep_dir / "rnn_lr0.001", sweep_dir / "rnn_lr-1"
    assert [json.loads((good / f"fold_{k}" / METRICS_FILE).read_text())["status"] for k in (0, 1)] == \
        ["completed", "completed"]
    assert json.loads((good / SUMMARY_FILE).read_text())["folds"] == [0, 1]
    assert json.loads((bad / METRICS_FILE).read_text())["status"] == "failed"
    assert not (bad / SUMMARY_FILE).exists()  # no summary of folds that never ran
