"""Shared fixtures: the real data loaded once, and a runner for the real command-line entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fmnist.core.config_dir import CONF_DIR
from fmnist.data.sources import FashionMnist, load_fashion_mnist

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("FMNIST_DATA_DIR", REPO / "data"))


@pytest.fixture(scope="session")
def fashion() -> FashionMnist:
    return load_fashion_mnist(DATA_DIR, download=False)


def compose_config(config: str, *overrides: str) -> DictConfig:
    """A command's composed config, in-process, as the command would see it (`config`: train, cv, lr_find...)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config, overrides=list(overrides))


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())


def run_module(module: str, *overrides: str, run_dir: Path, timeout: float = 600) -> CliResult:
    """Run `python -m <module>` as a user would, with its run dir under the test's tmp_path."""
    env = {**os.environ, "FMNIST_DATA_DIR": str(DATA_DIR), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", module, *overrides, f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr, run_dir)


@pytest.fixture
def train_cli(tmp_path: Path):
    def run(*overrides: str) -> CliResult:
        return run_module("fmnist.train", *overrides, run_dir=tmp_path / "run")

    return run
