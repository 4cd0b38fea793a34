"""`python -m fmnist.resume <run dir> [override ...]`: continue a stopped run in place with its saved overrides, which
are data: one that could choose code, read the environment or change Hydra is replayed only when passed again."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from fmnist.core.checkpoints import LAST
from fmnist.core.cli import user_error
from fmnist.core.errors import FmnistError
from fmnist.core.limits import clip, first_line
from fmnist.core.output_dirs import UnsafeOutputDirError, check_output_dir
from fmnist.core.run_files import CHECKPOINT_DIR, OVERRIDES_FILE, RunFileError, read_run_yaml

# Set by resume itself, from the command line, not from the file.
REPLACED = ("ckpt_path=", "hydra.run.dir=")
RESTART = "Fix: restart the run with python -m fmnist.train and your own overrides."
# Keys that make Hydra call or configure code, and interpolations (which can read environment variables).
CODE_MARKERS = ("_target_", "_args_", "_partial_", "_convert_", "_recursive_", "${")


class ResumeError(FmnistError):
    """The run dir or its overrides cannot be replayed safely; the message says why and what to do."""


def _needs_consent(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("~+")
    return any(marker in override for marker in CODE_MARKERS) or key.startswith(("hydra.", "hydra/"))


def read_overrides(run_dir: Path) -> list[str]:
    """The run's saved task overrides, checked to be a list of strings that Hydra's parser accepts one by one."""
    overrides_file = run_dir / OVERRIDES_FILE
    if not overrides_file.exists():
        raise ResumeError(f"{clip(overrides_file)} not found, so {clip(run_dir)} is not an fmnist run dir. "
                          f"Fix: pass the folder that holds the run's .hydra/ and {CHECKPOINT_DIR}/.")
    try:
        overrides = read_run_yaml(overrides_file) or []
    except RunFileError as exc:
        raise ResumeError(f"{clip(overrides_file)} {exc}. {RESTART}") from None
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise ResumeError(f"{clip(overrides_file)} must be a list of override strings, such as - model=lstm. "
                          f"{RESTART}")
    parser = OverridesParser.create()
    for item in overrides:
        try:
            parsed = parser.parse_overrides([item])[0]
        except HydraException as exc:
            raise ResumeError(f"{clip(overrides_file)}: {clip(item, 120)!r} is not a command-line override "
                              f"({first_line(exc, 160)}). {RESTART}") from None
        if parsed.is_sweep_override():
            raise ResumeError(f"{clip(overrides_file)}: {clip(item, 120)!r} is a sweep, and resume continues one run. "
                              "Fix: resume each job's own run dir.")
    return [item for item in overrides if not item.startswith(REPLACED)]


def resume_command(run_dir: Path, extra: list[str] | None = None) -> list[str]:
    """The train command that continues `run_dir`; `extra` overrides (the user's own) come last and win."""
    extra = list(extra or [])
    try:
        check_output_dir(run_dir)  # before its files are read: a link planted in a copied run dir is refused
    except UnsafeOutputDirError as exc:
        raise ResumeError(str(exc)) from None
    saved = read_overrides(run_dir)
    unconfirmed = [item for item in saved if _needs_consent(item) and item not in extra]
    if unconfirmed:
        item = clip(unconfirmed[0], 120)
        raise ResumeError(f"{clip(run_dir / OVERRIDES_FILE)} holds {item!r}, which could choose code or read the "
                          "environment, so resume does not replay it on its own. Fix: pass it again if you trust it: "
                          f"python -m fmnist.resume {clip(run_dir)} '{item}'")
    kept = [item for item in saved if item not in extra]
    return [sys.executable, "-m", "fmnist.train", *kept, *extra, f"hydra.run.dir={run_dir}", f"ckpt_path={LAST}"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        raise SystemExit("usage: python -m fmnist.resume <run dir> [override ...]")
    try:
        command = resume_command(Path(args[0]), args[1:])
    except ResumeError as exc:
        raise SystemExit(user_error(str(exc))) from None
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
