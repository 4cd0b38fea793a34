"""What the tests share: where things are, one config composer, one in-process runner and one command-line runner.

Most tests call a command's own Python entry (`run_in_process`) on a config composed as the command would compose it
(`compose`), as the lightning-hydra-template does; `run_cli` starts `python -m fmnist.<command>` for the few tests
marked `cli` that are about the process itself (exit codes, signals, what it prints).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from fmnist.core.config_dir import CONF_DIR

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("FMNIST_DATA_DIR", REPO / "data"))  # else conf's data.system_dir, as in CI
UNUSED_OUTPUT_DIR = "/tmp/fmnist-test-run"  # for configs that are composed and built but never run


def compose(config: str, *overrides: str, output_dir: str | Path = UNUSED_OUTPUT_DIR) -> DictConfig:
    """A command's config (`config`: train, cv, eval, predict, export, lr_find), composed in-process as the command
    composes it, with `paths.output_dir` set (outside Hydra's run it has no value)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config, overrides=[f"paths.output_dir={output_dir}", *overrides])  # theirs win


# --- in-process -------------------------------------------------------------------------------------------------

def _entry(command: str) -> Callable[[DictConfig, Path], Any]:
    """The function behind `python -m fmnist.<command>`, as f(cfg, run_dir): the one place that knows their names."""
    if command == "train":
        return import_module("fmnist.train").fit_and_test
    if command == "cv":
        return import_module("fmnist.cv").cross_validate
    if command == "eval":
        return import_module("fmnist.eval").run_eval
    if command == "predict":
        run_predict = import_module("fmnist.predict").run_predict
        return lambda cfg, run_dir: run_predict(cfg)  # it writes cfg.output
    if command == "export":
        return import_module("fmnist.export").run_export
    if command == "lr_find":
        return import_module("fmnist.lr_find").find_lr
    raise ValueError(f"no in-process entry for {command!r}")


def run_in_process(command: str, *overrides: str, run_dir: Path, cfg: DictConfig | None = None) -> Any:
    """Run a command's job in this process on its composed config (or `cfg`); return what the job returns (train,
    eval: metrics.json's content; cv: the summary; predict: its summary; export: its report; lr_find: the result).

    Like the command, it holds the run dir (and a CV's fold dirs) while it runs; unlike a process that ends, it then
    lets them go, so a later test may run a command there again.
    """
    if cfg is None:
        cfg = compose(command, *overrides, output_dir=run_dir)
    with run_dirs_released():
        return _entry(command)(cfg, run_dir)


@contextlib.contextmanager
def run_dirs_released() -> Iterator[None]:
    """Let go of the run dirs a job in this process held (as a command's process does when it ends)."""
    from fmnist.core import run_lock

    held = run_lock.held_run_dirs()
    try:
        yield
    finally:
        for directory in run_lock.held_run_dirs() - held:
            run_lock.release_run_dir(directory)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run: its dir, its metrics.json and its checkpoints. Shared: read it, never change it."""

    run_dir: Path
    metrics: dict[str, Any]

    @property
    def ckpt(self) -> Path:
        return Path(self.metrics["best_ckpt"])

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"


def train_in_process(run_dir: Path, *overrides: str) -> TrainedRun:
    """A real training run in this process (fmnist.train's fit_and_test on the composed train config)."""
    run_in_process("train", *overrides, run_dir=run_dir)
    return TrainedRun(run_dir, read_metrics(run_dir))


# --- the command line -------------------------------------------------------------------------------------------

@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def metrics(self) -> dict[str, Any]:
        assert self.run_dir is not None
        return read_metrics(self.run_dir)


def cli_command(module: str, *arguments: str, run_dir: Path | None = None) -> list[str]:
    """`python -m <module> <arguments>`, with `hydra.run.dir=<run_dir>` last when a run dir is given."""
    return [sys.executable, "-m", module, *arguments, *([f"hydra.run.dir={run_dir}"] if run_dir is not None else [])]


def cli_env(python_warnings: bool = False, **extra: str) -> dict[str, str]:
    """The environment of a command started by a test: the data dir, and Python's warnings off unless asked for."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    env.update(FMNIST_DATA_DIR=str(DATA_DIR), **extra)
    if not python_warnings:
        env["PYTHONWARNINGS"] = "ignore"
    return env


def run_cli(module: str, *arguments: str, run_dir: Path | None = None, timeout: float = 600,
            python_warnings: bool = False, **env: str) -> CliResult:
    """Run `python -m <module>` to its end as a user would (from the repository, its run dir under the test's
    tmp_path when given)."""
    done = subprocess.run(cli_command(module, *arguments, run_dir=run_dir), cwd=REPO,
                          env=cli_env(python_warnings, **env), capture_output=True, text=True, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr, run_dir)


def start_cli(module: str, *arguments: str, run_dir: Path | None = None, **env: str) -> subprocess.Popen[str]:
    """Start `python -m <module>` in the background (to signal or kill it); its output is piped."""
    return subprocess.Popen(cli_command(module, *arguments, run_dir=run_dir), cwd=REPO, env=cli_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fmnist_lines(stderr: str) -> list[str]:
    """What fmnist printed, without what the environment adds (a C library's warning about a variable, say)."""
    return [line for line in stderr.splitlines() if line.startswith("fmnist:")]


# --- training in pieces (builders, one Trainer) -------------------------------------------------------------------

# A small deterministic run: 1,000 training images in 16 batches of 64, 500 validation images.
SMALL_RUN = ("model=conv_maxpool", "data.holdout_size=500", "data.train_subset=1000", "data.batch_size=64",
             "data.eval_batch_size=500", "logger=none", "seed=0", "trainer.deterministic=true")
GROUPED = ("module=grouped_steps", "data.steps_per_execution=5")


def fit(cfg: DictConfig, run_dir: Path, *callbacks: Any) -> tuple[Any, Any]:
    """Lightning's fit of the config's module on its data module, with extra callbacks: (module, trainer)."""
    import lightning as L

    from fmnist.training.builders import build_datamodule, build_module, build_trainer

    trainer = build_trainer(cfg, run_dir)
    trainer.callbacks.extend(callbacks)
    L.seed_everything(0, verbose=False)
    module = build_module(cfg)
    trainer.fit(module, datamodule=build_datamodule(cfg))
    return module, trainer


def run_guarded_in_process(command: str, *overrides: str, run_dir: Path) -> tuple[int, str]:
    """What the command's own guard (fmnist.core.cli.run_guarded) makes of its job run in this process: its exit
    status (0 when the job ran to its end) and what it printed to stderr (a user error: one line `fmnist: error:`).
    Anything else the job raises (a bug) propagates, with its traceback."""
    from fmnist.core.cli import run_guarded

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            run_guarded(lambda: run_in_process(command, *overrides, run_dir=run_dir))
        except SystemExit as exited:
            return int(exited.code or 0), err.getvalue()
    return 0, err.getvalue()
