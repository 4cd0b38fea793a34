"""What every command does around its job, in one place (the lightning-hydra-template's task_wrapper): a command's
file holds its job and one line, `cli = hydra_command("<config>", job)`."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from fmnist.core.cli import run_guarded, user_error
from fmnist.core.config_dir import CONF_DIR
from fmnist.core.console import apply_extras
from fmnist.core.errors import RunInterrupted
from fmnist.core.process import apply_process_settings
from fmnist.core.run_lock import hold_run_dir

OUTPUT_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


def named_output_dirs(argv: Sequence[str]) -> dict[str, Path]:
    """The run and sweep dirs named on a command line ({key: dir}); a dir Hydra would pick (`${now:...}`) is not."""
    named = {}
    for argument in argv:
        key, _, value = argument.partition("=")
        value = value.strip("\"'")  # Lightning's DDP launcher re-runs us with hydra.run.dir="<dir>"
        if key.lstrip("+") in OUTPUT_KEYS and value and "${" not in value:
            named[key.lstrip("+")] = Path(value)
    return named


def explicit_run_dir(argv: Sequence[str]) -> Path | None:
    """The dir a plain single run names on its command line, so it can be held before Hydra writes its .hydra/
    record into it; None for a sweep or any Hydra flag (-m, --cfg, ...) or a dir Hydra picks."""
    if any(argument.startswith("-") for argument in argv):
        return None
    return named_output_dirs(argv).get("hydra.run.dir")


def exit_unless_output_writable(argv: Sequence[str]) -> None:
    """Hydra creates the run dir before any fmnist code runs and fails with a traceback; check first."""
    for folder in list(named_output_dirs(argv).values()) or [Path.cwd()]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SystemExit(user_error(f"cannot write the output directory {folder} ({reason}). Fix: choose a "
                                        "writable place with hydra.run.dir=... (hydra.sweep.dir=... for -m), or run "
                                        "from a writable folder.")) from None


def resume_hint(stop: RunInterrupted, run_dir: Path) -> str:
    """What a stopped single run tells its user: `fmnist.resume` continues it from its last checkpoint."""
    return (f"{stop.run_dir} is unfinished (metrics.json status \"interrupted\"); continue it from its last "
            f"checkpoint: python -m fmnist.resume {stop.run_dir}")


def hydra_command(config_name: str, job: Callable[[DictConfig, Path], Any], *, hold_named_run_dir: bool = False,
                  unfinished: Callable[[RunInterrupted, Path], str] = resume_hint) -> Callable[[], None]:
    """The console script of `job(cfg, run_dir)`; with `hold_named_run_dir` a run dir named on the command line is
    held before Hydra starts, so Hydra never rewrites .hydra/ in a dir a live run holds."""

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def run(cfg: DictConfig) -> Any:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        if "extras" in cfg:
            apply_extras(cfg, rank_zero=rank_zero_only.rank == 0)
        if "process" in cfg:
            apply_process_settings(cfg.process)
        try:
            return run_guarded(lambda: job(cfg, run_dir))
        except RunInterrupted as stop:
            if rank_zero_only.rank == 0:
                print(f"fmnist: interrupted by {stop.signum.name}: {unfinished(stop, run_dir)}", file=sys.stderr)
            raise

    def cli() -> None:
        exit_unless_output_writable(sys.argv[1:])
        named = explicit_run_dir(sys.argv[1:]) if hold_named_run_dir else None
        if named is not None and rank_zero_only.rank == 0:
            run_guarded(lambda: hold_run_dir(named))
        run()

    cli.__doc__ = f"`python -m fmnist.{config_name}`: Hydra composes conf/{config_name}.yaml, then the command runs."
    return cli
