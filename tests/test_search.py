"""fmnist's Optuna sweeper (hydra/sweeper=optuna) in-process, through Hydra's own sweep runner, on a toy task that
reports to its trial like a training run: pruning, the budget a rerun continues, failures, parallel joblib trials,
and each bad input's one line. Real training through the sweeper is in tests/test_sweeps.py."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.test_utils.test_utils import SweepTaskFunction
from omegaconf import DictConfig

optuna = pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")

from fmnist.core.config_dir import CONF_DIR  # noqa: E402
from fmnist.search.trial import JobTrial, RunPruned  # noqa: E402

TrialState = optuna.trial.TrialState
THRESHOLD = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.5}"  # x < 0.5: pruned at step 0


def toy_task(cfg: DictConfig) -> float:
    """Report x at steps 0-2 to the job's trial (as ReportToTrial does each epoch); pruned: return normally."""
    started = time.time()
    if cfg.sleep:
        time.sleep(cfg.sleep)
    out = Path(HydraConfig.get().runtime.output_dir)
    trial = JobTrial(cfg.search.trial)
    (Path(os.environ["TOY_LOG"]) / f"trial_{trial.number}.json").write_text(json.dumps(
        {"started": started, "ended": time.time(), "x": cfg.x, "out": str(out)}))
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} is too large")
    try:
        for step in range(3):
            trial.report(float(cfg.x), step)
    except RunPruned:
        return float(cfg.x)
    return float(cfg.x)


@pytest.fixture
def search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run the toy search with overrides into tmp_path/sweep, study in tmp_path/study.db; return the study.

    Hydra's own sweep runner (hydra.test_utils), entered without its exit, which would delete the sweep dir that
    a rerun must find."""
    log = tmp_path / "log"
    log.mkdir()
    monkeypatch.setenv("TOY_LOG", str(log))
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def run(*overrides: str, sweep_dir: Path | None = None):
        runner = SweepTaskFunction()
        runner.calling_file, runner.calling_module, runner.task_function = __file__, None, toy_task
        runner.config_path, runner.config_name = "configs/search", "toy"
        runner.overrides = [f"hydra.searchpath=[file://{CONF_DIR}]", f"hydra.sweeper.storage={storage}", *overrides]
        runner.temp_dir = str(sweep_dir or tmp_path / "sweep")
        runner.__enter__()
        return optuna.load_study(study_name="toy", storage=storage)

    # Hydra's job logging replaces the root logger's handlers with ones bound to this test's captured streams;
    # later tests in this worker would log into closed streams ("--- Logging error ---"), so they are put back
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield run
    for handler in [handler for handler in root.handlers if handler not in handlers]:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def states(study) -> list[TrialState]:
    return [trial.state for trial in study.trials]


def test_a_pruned_trial_is_recorded_pruned_and_its_job_ends_normally(search, tmp_path: Path) -> None:
    study = search("hydra/sweeper/sampler=grid", "hydra.sweeper.params.x='choice(0.2,0.8)'", THRESHOLD,
                   "hydra.sweeper.n_trials=5")  # the grid holds 2: the budget stops there
    by_x = {trial.params["x"]: trial for trial in study.trials}
    assert sorted(by_x) == [0.2, 0.8]
    assert by_x[0.2].state == TrialState.PRUNED and by_x[0.2].intermediate_values == {0: 0.2}
    assert by_x[0.8].state == TrialState.COMPLETE and by_x[0.8].value == 0.8
    assert sorted(path.name for path in (tmp_path / "sweep").iterdir() if path.name.isdigit()) == ["0", "1"]


def test_a_rerun_continues_to_the_budget_and_numbers_its_jobs_after_the_earlier_ones(search, tmp_path: Path) -> None:
    first = search("hydra.sweeper.n_trials=2", "hydra/sweeper/sampler=random")
    assert states(first) == [TrialState.COMPLETE] * 2
    marker = tmp_path / "sweep" / "0" / "kept.txt"
    marker.write_text("trial 0's results")
    again = search("hydra.sweeper.n_trials=3", "hydra/sweeper/sampler=random")
    assert states(again) == [TrialState.COMPLETE] * 3  # one more, not three more
    jobs = sorted(int(path.name) for path in (tmp_path / "sweep").iterdir() if path.name.isdigit())
    assert jobs == [0, 1, 2] and marker.read_text() == "trial 0's results"  # job 2 is new; job 0 untouched
    logged = json.loads((tmp_path / "log" / "trial_2.json").read_text())
    assert Path(logged["out"]).name == "2"
    done = search("hydra.sweeper.n_trials=3", "hydra/sweeper/sampler=random")
    assert len(done.trials) == 3 and not (tmp_path / "sweep" / "3").exists()  # at the budget: nothing runs


def test_a_trial_left_running_by_a_killed_search_is_failed_and_counted(search, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search("hydra.sweeper.n_trials=1")
    study = optuna.load_study(study_name="toy", storage=storage)
    study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # what a killed search leaves: RUNNING
    study = search("hydra.sweeper.n_trials=3", "hydra.sweeper.max_failure_rate=0.5")
    assert states(study) == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


def test_a_failing_trial_is_isolated(search, tmp_path: Path) -> None:
    study = search("hydra/sweeper/sampler=grid", "hydra.sweeper.params.x='choice(0.2,0.8)'", "fail_above=0.5",
                   "hydra.sweeper.max_failure_rate=0.5")
    by_x = {trial.params["x"]: trial.state for trial in study.trials}
    assert by_x == {0.2: TrialState.COMPLETE, 0.8: TrialState.FAIL}
    assert study.best_value == 0.2


def test_too_many_failures_stop_the_search_with_one_line(search, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        search("fail_above=-1", "hydra.sweeper.n_trials=4")
    assert stop.value.code == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fmnist: error:")]
    assert "max_failure_rate=0.0" in line and "Fix:" in line


def test_joblib_runs_two_trials_at_once(search, tmp_path: Path) -> None:
    study = search("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2", "sleep=2")
    assert states(study) == [TrialState.COMPLETE] * 2  # each job told the study from its own worker process
    spans = [json.loads(path.read_text()) for path in sorted((tmp_path / "log").glob("trial_*.json"))]
    assert len(spans) == 2 and max(span["started"] for span in spans) < min(span["ended"] for span in spans)


BAD_INPUTS = {
    "unknown sampler": (["hydra.sweeper.sampler._target_=optuna.samplers.NoSuchSampler"],
                        "optuna.samplers.NoSuchSampler cannot be built"),
    "unknown pruner": (["hydra.sweeper.pruner={_target_:optuna.pruners.NoSuchPruner}"],
                       "optuna.pruners.NoSuchPruner cannot be built"),
    "empty space": (["hydra.sweeper.params=null"], "the search space is empty"),
    "malformed space": (["hydra.sweeper.params.x='interval(0,'"], "is not in Hydra's sweep grammar"),
    "empty interval": (["hydra.sweeper.params.x='interval(1,0)'"], "interval(1.0, 0.0) is empty"),
    "storage": (["hydra.sweeper.storage=sqlite:////dev/null/study.db"], "cannot be opened"),
    "in-memory storage": (["hydra.sweeper.storage=sqlite:///:memory:"], "in-memory database"),
    "other direction": (["hydra.sweeper.direction=minimize"], "was created to maximize, not minimize"),
    "other ranges": (["hydra.sweeper.params.x='interval(0,2)'"], "searched another space (x differ)"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_each_bad_input_ends_in_one_line_and_exit_2_with_the_study_intact(
        search, tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    overrides, expected = BAD_INPUTS[case]
    before = search("hydra.sweeper.n_trials=1")  # an existing study, which nothing below may change
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        search("hydra.sweeper.n_trials=3", *overrides, sweep_dir=tmp_path / "again")
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("fmnist: error: ") and expected in errors[0], errors
    assert "Fix:" in errors[0]
    after = optuna.load_study(study_name="toy", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [(t.number, t.state, t.params) for t in after.trials] == [(t.number, t.state, t.params)
                                                                    for t in before.trials]
    assert not (tmp_path / "again").exists() or not any(p.name.isdigit() for p in (tmp_path / "again").iterdir())


def test_cv_reports_the_running_mean_of_its_folds_and_stops_when_pruned(tmp_path: Path, monkeypatch) -> None:
    """fmnist.cv as a trial: after each fold the mean so far; a pruned CV ends after its first fold, normally."""
    from hydra import compose, initialize_config_dir

    import fmnist.cv as cv
    from fmnist.core.metrics_file import PRUNED

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="cv", storage=storage, direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trained: list[int] = []

    def fake_fold(cfg, fold, run_dir, split_seed=None):
        trained.append(fold)
        return {"model": "conv_maxpool", "num_folds": 5, "fold": fold, "val/acc": 0.3, "test/acc": 0.3,
                "status": "completed"}

    monkeypatch.setattr(cv, "run_fold", fake_fold)
    spec = ("++search.trial={study:cv,storage:'" + storage + "',number:0,"
            "pruner:{_target_:optuna.pruners.ThresholdPruner,lower:0.5}}")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("cv", overrides=[spec, f"paths.output_dir={tmp_path}"])
    summary = cv.cross_validate(cfg, tmp_path)
    assert trained == [0] and summary["status"] == PRUNED and summary["folds"] == [0]
    assert study.trials[trial.number].state == TrialState.PRUNED
    assert study.trials[0].intermediate_values == {0: 0.3}
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == PRUNED


@pytest.mark.cli
def test_optuna_dashboard_serves_the_study_over_http(tmp_path: Path) -> None:
    """The README's one command, on a test study, read back over HTTP on localhost."""
    import shutil
    import socket
    import subprocess
    import urllib.request

    if shutil.which("optuna-dashboard") is None and not (Path(os.sys.executable).parent / "optuna-dashboard").exists():
        pytest.skip("optuna-dashboard is not installed: pip install -e '.[dashboard]'")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="shown", storage=storage, direction="maximize")
    for value in (0.5, 0.7):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = shutil.which("optuna-dashboard") or str(Path(os.sys.executable).parent / "optuna-dashboard")
    server = subprocess.Popen([command, storage, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        studies = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    studies = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.2)
        assert studies is not None, "optuna-dashboard did not answer"
        (summary,) = studies["study_summaries"]
        assert summary["study_name"] == "shown"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}", timeout=5) as reply:
            detail = json.loads(reply.read())
        assert sorted(trial["values"][0] for trial in detail["trials"]) == [0.5, 0.7]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_report_opens_a_study_named_by_a_run_dir_only_inside_the_reported_folders_and_read_only(
        tmp_path: Path) -> None:
    """A copied run dir names its storage as data: outside the reported folders (and the working directory) it is
    never opened; inside, SQLite is opened with mode=ro, so a file that is no Optuna study stays as it was."""
    import hashlib

    from fmnist.report.search import _local_storage

    inside = tmp_path / "runs" / "study.db"
    inside.parent.mkdir()
    optuna.create_study(study_name="s", storage=f"sqlite:///{inside}").add_trial(optuna.trial.create_trial(value=1.0))
    before = hashlib.sha256(inside.read_bytes()).hexdigest()
    opened = _local_storage(f"sqlite:///{inside}", [tmp_path / "runs"])
    assert len(optuna.load_study(study_name="s", storage=opened).trials) == 1
    assert hashlib.sha256(inside.read_bytes()).hexdigest() == before
    elsewhere = tmp_path / "elsewhere" / "app.sqlite"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"")
    assert _local_storage(f"sqlite:///{elsewhere}", [tmp_path / "runs"]) is None  # outside: not opened
    with pytest.raises(Exception):  # noqa: B017 - SQLAlchemy's error for a file that is no study, read-only
        _local_storage(f"sqlite:///{elsewhere}", [tmp_path / "elsewhere"])
    assert elsewhere.read_bytes() == b""  # no Optuna table written into it
    (tmp_path / "runs" / "link.db").symlink_to(inside)
    assert _local_storage(f"sqlite:///{tmp_path / 'runs' / 'link.db'}", [tmp_path / "runs"]) is None
