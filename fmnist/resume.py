"""`python -m fmnist.resume <run dir>`: continue a killed or stopped run in place, with its own overrides.

Re-running `python -m fmnist.train <the same overrides> hydra.run.dir=<run dir> ckpt_path=last` does the
same; this reads the overrides Hydra saved so nobody has to remember them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from fmnist.core.run_files import CHECKPOINT_DIR
from fmnist.training.checkpoints import LAST


def resume_command(run_dir: Path) -> list[str]:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        raise SystemExit(f"fmnist: error: {overrides_file} not found, so {run_dir} is not an fmnist run dir. "
                         f"Fix: pass the folder that holds the run's .hydra/ and {CHECKPOINT_DIR}/.")
    overrides = [item for item in yaml.safe_load(overrides_file.read_text()) or []
                 if not item.startswith(("ckpt_path=", "hydra.run.dir="))]
    return [sys.executable, "-m", "fmnist.train", *overrides, f"hydra.run.dir={run_dir}", f"ckpt_path={LAST}"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m fmnist.resume <run dir>")
    command = resume_command(Path(args[0]))
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
