"""Shared fixtures: the real data loaded once, and one short real training run that many tests read (the helpers
themselves live in tests/helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist.data.sources import FashionMnist, load_fashion_mnist
from tests.helpers import DATA_DIR, CliResult, TrainedRun, run_cli, train_in_process

# The shared run: conv_maxpool, one epoch on 3,000 images, validated on two batches, tested on the whole test set
# (eval must reproduce its test figures exactly; predict writes a row per test image).
TINY_RUN = ("model=conv_maxpool", "data.train_subset=3000", "trainer.max_epochs=1", "logger=none",
            "++trainer.limit_val_batches=2")


@pytest.fixture(scope="session")
def fashion() -> FashionMnist:
    return load_fashion_mnist(DATA_DIR, download=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One short real training run, in-process, for every test that needs a checkpoint fmnist wrote."""
    return train_in_process(tmp_path_factory.mktemp("tiny_run") / "run", *TINY_RUN)


@pytest.fixture
def train_cli(tmp_path: Path):
    def run(*overrides: str) -> CliResult:
        return run_cli("fmnist.train", *overrides, run_dir=tmp_path / "run")

    return run



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules with tests that start processes first, each kept whole: under xdist their long tests start early
    instead of ending the run alone on one worker, and a module's fixtures are built by one worker."""
    starting = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("cli")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in starting)
