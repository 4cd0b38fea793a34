"""Runs that end early or overlap: SIGTERM / SIGINT leave an "interrupted" run that resumes, a run dir holds one
live run at a time, and a killed run never blocks the next one."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fmnist.core.checkpoints import CheckpointError
from fmnist.core.command import explicit_run_dir
from fmnist.core.config_dir import CONF_DIR
from fmnist.core.errors import RunInterrupted
from fmnist.core.metrics_file import INTERRUPTED
from fmnist.core.run_files import RUN_LOCK_FILE
from fmnist.core.run_lock import RunDirInUseError, hold_run_dir, release_run_dir
from fmnist.train import stopping_signal
from fmnist.training.callbacks import FitClock
from tests.helpers import DATA_DIR, REPO, run_cli, start_cli

# Epochs of ~2 s on one core: a signal sent right after the first epoch's last.ckpt lands inside the second epoch.
SLOW_EPOCHS = ("data.train_subset=6000", "trainer.max_epochs=2", "trainer.limit_val_batches=2",
               "trainer.limit_test_batches=2", "logger=csv")
IN_PROCESS = ("data.train_subset=500", "trainer.max_epochs=2", "trainer.limit_val_batches=2",
              "trainer.limit_test_batches=2", "logger=none", "trainer.accelerator=cpu", "data.download=false")


class PressCtrlC(L.Callback):
    """Ctrl+C as Python delivers it (KeyboardInterrupt) in the middle of epoch `epoch` (of fold `fold`, if set)."""

    def __init__(self, epoch: int, fold: int | None = None) -> None:
        self.epoch, self.fold = epoch, fold

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object,
                           batch_idx: int) -> None:
        fold_matches = self.fold is None or trainer.datamodule.fold == self.fold
        if fold_matches and trainer.current_epoch == self.epoch and batch_idx == 1:
            raise KeyboardInterrupt


def start_train(run_dir: Path, *overrides: str) -> subprocess.Popen[str]:
    return start_cli("fmnist.train", *overrides, run_dir=run_dir)


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and path.stat().st_size) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert path.is_file(), f"{path} did not appear in {timeout} s"


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.cli
def test_sigterm_marks_the_run_interrupted_and_resume_finishes_it(tmp_path: Path) -> None:
    """A scheduler's pre-emption: Lightning stops at the next batch, the run says so and exits 128 + 15."""
    run_dir = tmp_path / "run"
    process = start_train(run_dir, *SLOW_EPOCHS)
    wait_for(run_dir / "checkpoints" / "last.ckpt", process)  # epoch 0 is done, epoch 1 is running
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    assert f"fmnist: interrupted by SIGTERM: {run_dir} is unfinished" in err
    stopped = metrics(run_dir)
    assert stopped["status"] == INTERRUPTED and stopped["signal"] == "SIGTERM" and stopped["epochs"] == 1
    assert stopped["last_ckpt"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert not list(run_dir.rglob("*.tmp"))
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["callbacks"]["FitClock"]["seconds"] > 0  # epoch 0's fit time, kept for the resumed run
    saved["callbacks"]["FitClock"]["seconds"] += 1e6  # as if that first part had trained for days
    torch.save(saved, last)

    resumed = run_cli("fmnist.resume", str(run_dir))  # continues epoch 1 from last.ckpt
    assert resumed.returncode == 0, resumed.output[-3000:]
    finished = metrics(run_dir)
    assert finished["status"] == "completed" and finished["epochs"] == 2
    assert finished["train_seconds"] > 1e6  # the whole training time, not only the part after the stop


@pytest.mark.parametrize("seconds", [float("nan"), -1.0, "12", None])
def test_a_fit_clock_that_is_not_seconds_is_refused(seconds: object) -> None:
    with pytest.raises(CheckpointError, match="fit clock .* is not a finite number of seconds"):
        FitClock().load_state_dict({"seconds": seconds})


@pytest.mark.cli
def test_a_second_run_in_a_live_run_dir_is_refused_and_a_killed_run_blocks_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = start_train(run_dir, *SLOW_EPOCHS, "trainer.max_epochs=50")
    try:
        wait_for(run_dir / ".hydra" / "overrides.yaml", first)  # written after the lock is taken
        overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
        second = run_cli("fmnist.train", "model=lstm", "logger=none", run_dir=run_dir)
        assert second.returncode == 2, second.output[-3000:]
        errors = [line for line in second.stderr.splitlines() if line.startswith("fmnist: error:")]
        assert len(errors) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
        assert f"{run_dir} is in use by another run (pid {first.pid} on " in errors[0]
        assert (run_dir / ".hydra" / "overrides.yaml").read_text() == overrides  # refused before Hydra wrote
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()  # SIGKILL: no handler runs, the kernel drops the lock with the process
        first.communicate()
    hold_run_dir(run_dir)  # what the next run in this dir does first: the killed run's lock is gone
    release_run_dir(run_dir)


def test_ctrl_c_in_process_is_an_interrupted_run_with_status_130(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from fmnist.train import fit_and_test

    run_dir = tmp_path / "run"
    monkeypatch.setenv("FMNIST_DATA_DIR", str(DATA_DIR))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*IN_PROCESS, f"paths.output_dir={run_dir}",
                                           "+callbacks.ctrl_c._target_=tests.test_interrupts.PressCtrlC",
                                           "+callbacks.ctrl_c.epoch=1"])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(RunInterrupted) as caught:
            fit_and_test(cfg, run_dir)
    finally:
        release_run_dir(run_dir)
    assert caught.value.code == 128 + signal.SIGINT and caught.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning put Ctrl+C back after its graceful shutdown
    stopped = metrics(run_dir)
    assert stopped["status"] == INTERRUPTED and stopped["signal"] == "SIGINT" and stopped["epochs"] == 1
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_an_interrupted_cv_fold_is_not_completed_and_the_rerun_finishes_it(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from fmnist.core.metrics_file import completed_metrics
    from fmnist.cv import cross_validate

    run_dir = tmp_path / "cv"
    monkeypatch.setenv("FMNIST_DATA_DIR", str(DATA_DIR))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("cv", overrides=[*IN_PROCESS, "data.num_folds=2", "cv.ensemble=false",
                                        "+callbacks.ctrl_c._target_=tests.test_interrupts.PressCtrlC",
                                        "+callbacks.ctrl_c.epoch=1", "+callbacks.ctrl_c.fold=1"])
    try:
        with pytest.raises(RunInterrupted) as caught:
            cross_validate(cfg, run_dir)
        assert caught.value.code == 130  # what the cv command exits with
        assert completed_metrics(run_dir / "fold_0") is not None
        assert completed_metrics(run_dir / "fold_1") is None  # not completed, and not "failed" either
        assert metrics(run_dir / "fold_1")["status"] == INTERRUPTED
        assert not (run_dir / "cv_summary.json").exists()

        cfg.callbacks.ctrl_c = None  # the same command again: fold 0 is skipped, fold 1 continues its last.ckpt
        summary = cross_validate(cfg, run_dir)
    finally:
        for fold in (0, 1):
            release_run_dir(run_dir / f"fold_{fold}")
    assert summary["status"] == "completed" and summary["per_fold"]["epochs"] == [2, 2]
    assert metrics(run_dir / "fold_1")["status"] == "completed"


@pytest.mark.cli
def test_the_lock_is_refused_while_its_holder_lives_and_free_once_it_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from fmnist.core.run_lock import hold_run_dir; "
                               "hold_run_dir(sys.argv[1]); print('held', flush=True); time.sleep(600)", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirInUseError, match=rf"in use by another run \(pid {holder.pid} on .* since "):
            hold_run_dir(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    hold_run_dir(tmp_path)
    hold_run_dir(tmp_path)  # again in the same process: already held, fine (cv folds, sweep jobs, tests)
    release_run_dir(tmp_path)
    assert (tmp_path / RUN_LOCK_FILE).is_file()  # the file stays; only the lock on it mattered


def test_the_signal_behind_what_lightning_raises() -> None:
    assert stopping_signal(SIGTERMException()) == signal.SIGTERM
    assert stopping_signal(KeyboardInterrupt()) == signal.SIGINT
    try:  # what a Trainer call raises after Ctrl+C: Lightning's graceful shutdown, then sys.exit(1)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)
    except SystemExit as lightning_exit:
        assert stopping_signal(lightning_exit) == signal.SIGINT
    assert stopping_signal(SystemExit(1)) is None
    assert stopping_signal(ValueError("a bug")) is None
    stop = pickle.loads(pickle.dumps(RunInterrupted(signal.SIGTERM, "/runs/x")))  # joblib sends it back pickled
    assert stop.code == 143 and stop.signum == signal.SIGTERM and stop.run_dir == Path("/runs/x")


def test_only_a_plain_single_run_names_its_dir_early() -> None:
    assert explicit_run_dir(["model=lstm", "hydra.run.dir=/runs/a"]) == Path("/runs/a")
    assert explicit_run_dir(['hydra.run.dir="/runs/a"']) == Path("/runs/a")  # Lightning's DDP launcher quotes it
    assert explicit_run_dir(["-m", "hydra.run.dir=/runs/a"]) is None
    assert explicit_run_dir(["hydra.run.dir=outputs/${now:%H}"]) is None
    assert explicit_run_dir(["model=lstm"]) is None
