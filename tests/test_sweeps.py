"""Real sweeps on a tiny train subset: a multirun with failing jobs, an Optuna study that continues, joblib."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from fmnist.report.__main__ import main as report_main
from tests.helpers import CliResult, run_cli

TINY = ("data.train_subset=500", "trainer.max_epochs=1", "data.num_folds=10", "data.batch_size=100", "logger=csv",
        "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2")
needs_sweep_extra = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.fmnist_optuna_sweeper") is None
    or importlib.util.find_spec("optuna") is None
    or importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="the sweep extra is not installed: pip install -e '.[sweep]'",
)


def sweep(tmp: Path, *overrides: str, module: str = "fmnist.train") -> CliResult:
    return run_cli(module, "-m", *overrides, f"hydra.sweep.dir={tmp}", run_dir=tmp)


def job_metrics(sweep_dir: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/metrics.json"))}


@pytest.fixture(scope="module")
def failing_multirun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four jobs: two models, each with a valid and an invalid learning rate."""
    sweep_dir = tmp_path_factory.mktemp("multirun") / "sweep"
    result = sweep(sweep_dir, "model=conv_maxpool,lstm", "optimizer.lr=0.001,-1", *TINY)
    assert result.returncode != 0 and "optimizer.lr: -1 is outside" in result.output  # the sweep says it failed
    return sweep_dir


@pytest.mark.cli
def test_failed_jobs_are_recorded_and_the_others_kept(failing_multirun: Path) -> None:
    jobs = job_metrics(failing_multirun)
    assert sorted(jobs) == ["0", "1", "2", "3"]
    completed = {job["model"] for job in jobs.values() if job["status"] == "completed"}
    failed = [job for job in jobs.values() if job["status"] == "failed"]
    assert completed == {"conv_maxpool", "lstm"}
    assert len(failed) == 2 and all("optimizer.lr: -1 is outside" in job["error"] for job in failed)
    assert all("optimizer.lr=-1" in job["overrides"] for job in failed)


@pytest.mark.cli
def test_report_builds_despite_failed_jobs(failing_multirun: Path) -> None:
    """`python -m fmnist.report <sweep dir>` as a user runs it: the report command's one start in the suite."""
    result = run_cli("fmnist.report", str(failing_multirun), timeout=300)
    assert result.returncode == 0, result.output[-3000:]
    report = (failing_multirun / "report" / "report.md").read_text()
    rows = (failing_multirun / "report" / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == 3 and {row.split(",")[0] for row in rows[1:]} == {"conv_maxpool", "lstm"}
    assert "## Failed runs" in report and report.count("optimizer.lr: -1 is outside") == 2
    assert (failing_multirun / "report" / "figures" / "curves_lstm.png").is_file()


def optuna_search(tmp: Path) -> tuple[str, ...]:
    return ("hparams_search=conv_maxpool_optuna", f"hydra.sweeper.storage=sqlite:///{tmp / 'study.db'}", *TINY)


@pytest.mark.cli
@needs_sweep_extra
def test_optuna_sweep_of_two_trials_optimises_val_acc_and_reports(tmp_path: Path) -> None:
    first = sweep(tmp_path / "first", *optuna_search(tmp_path), "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.output[-3000:]
    jobs = job_metrics(tmp_path / "first")
    assert len(jobs) == 2 and all(job["status"] == "completed" for job in jobs.values())
    best = yaml.safe_load((tmp_path / "first" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(job["val/acc"] for job in jobs.values()))  # val, never test

    assert report_main([str(tmp_path / "first")]) == 0
    labels = [row.split(",")[0].strip('"') for row in
              (tmp_path / "first" / "report" / "leaderboard.csv").read_text().splitlines()[1:]]
    assert len(labels) == 2 and all(label.startswith("conv_maxpool (") for label in labels)  # one row per trial
    assert all("optimizer.lr=" in label for label in labels)


@pytest.mark.cli
@needs_sweep_extra
def test_pruned_trials_end_normally_and_the_report_lists_them_apart(tmp_path: Path) -> None:
    """A pruner that stops every trial after its first epoch (val/acc below 0.99): exit 0, PRUNED in the study,
    "pruned" in each run dir, and the report's search section and pruned list (not failed)."""
    pruner = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.99}"
    result = sweep(tmp_path / "sweep", *optuna_search(tmp_path), "hydra.sweeper.n_trials=2", pruner,
                   "trainer.max_epochs=3")
    assert result.returncode == 0, result.output[-3000:]
    import optuna

    study = optuna.load_study(study_name="conv_maxpool_train", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(trial.intermediate_values.keys() == {0} for trial in study.trials)  # stopped after epoch 0
    jobs = job_metrics(tmp_path / "sweep")
    assert sorted(jobs) == ["0", "1"] and all(job["status"] == "pruned" and job["epochs"] == 1 for job in jobs.values())
    assert report_main([str(tmp_path / "sweep")]) == 0
    report = (tmp_path / "sweep" / "report" / "report.md").read_text()
    assert "## Search" in report and "| 0 | 2 | 0 | 0 | 2 |" in report  # complete, pruned, failed, running, total
    pruned = report[report.index("## Pruned runs"):report.index("## Failed runs")]
    assert pruned.count("pruned by the search's pruner after epoch 0") == 2
    assert report[report.index("## Failed runs"):].strip().endswith("None.")


@pytest.mark.slow
@pytest.mark.cli
@needs_sweep_extra
def test_optuna_study_continues_from_sqlite(tmp_path: Path) -> None:
    for name, trials in (("first", 1), ("again", 2)):
        result = sweep(tmp_path / name, *optuna_search(tmp_path), f"hydra.sweeper.n_trials={trials}")
        assert result.returncode == 0, result.output[-3000:]
    import optuna

    study = optuna.load_study(study_name="conv_maxpool_train", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len([trial for trial in study.trials if trial.state.is_finished()]) == 2  # n_trials is the study's total
    assert study.trials[0].params != study.trials[1].params  # the second run proposed a new point


@pytest.mark.slow
@pytest.mark.cli
@needs_sweep_extra
def test_joblib_launcher_runs_jobs_in_parallel_and_records_failures(tmp_path: Path) -> None:
    result = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=0.001,-1", *TINY)
    assert result.returncode != 0
    jobs = job_metrics(tmp_path)
    assert sorted(job["status"] for job in jobs.values()) == ["completed", "failed"]


def test_user_errors_survive_the_trip_back_from_a_joblib_worker() -> None:
    """A job's exception is pickled back to the sweep; an unpicklable one broke the whole pool."""
    import pickle

    from fmnist.core.errors import ConfigError

    error = pickle.loads(pickle.dumps(ConfigError("optimizer.lr", "-1 is outside (0.0, inf)", "use 1e-3")))
    assert isinstance(error, ConfigError) and error.key == "optimizer.lr"
    assert str(error) == "optimizer.lr: -1 is outside (0.0, inf). Fix: use 1e-3"
