"""Record what produced a run, so a number can be traced to code and library versions."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from fmnist.core.atomic import write_json_atomic
from fmnist.core.run_files import RUN_INFO_FILE

PACKAGES = ("fmnist", "torch", "lightning", "hydra-core", "omegaconf", "torchmetrics", "numpy")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def git_commit(cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def write_run_info(run_dir: Path) -> None:
    source_dir = Path(__file__).resolve().parent
    write_json_atomic(run_dir / RUN_INFO_FILE, {
        "versions": {package: _version(package) for package in PACKAGES},
        "torch_threads": torch.get_num_threads(),  # process.threads: what parallel jobs each ran with
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(source_dir),
    })
