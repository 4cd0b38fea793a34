"""Which parts of fmnist may import which: the report and checkpoint checks stay free of Lightning, and
sub-packages import each other in one direction only (models and data at the bottom, training below inference).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "fmnist"
# sub-package -> the sub-packages it must never import, at module level or inside a function
# the commands, at the top level: nothing below imports them
COMMANDS = {"train", "cv", "eval", "predict", "export", "resume", "lr_find", "tune"}
FORBIDDEN = {
    "core": {"models", "data", "training", "inference", "report", "bench", *COMMANDS},
    "models": {"data", "training", "inference", "report", "bench", *COMMANDS},
    "data": {"models", "training", "inference", "report", "bench", *COMMANDS},
    "training": {"inference", "report", "bench", *COMMANDS},
    "inference": {"report", "bench", *COMMANDS},
    "report": {"training", "inference", "bench", *COMMANDS},
    "search": {"inference", "report", "bench", *COMMANDS},  # the sweeper and its job side; reports read studies
}
LIGHTNING_FREE = ["fmnist.report.__main__", "fmnist.report.studies", "fmnist.core.checkpoints", "fmnist.core.figures",
                  "fmnist.inference.checkpoint", "fmnist.core.metric_keys", "fmnist.core.atomic"]


def imported_subpackages(path: Path) -> set[str]:
    """The fmnist sub-packages a source file imports (`from fmnist.x ...`, `import fmnist.x`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "fmnist":
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_sub_packages_import_downwards_only(package: str) -> None:
    wrong = {str(path.relative_to(REPO)): sorted(imported_subpackages(path) & FORBIDDEN[package])
             for path in sorted((PACKAGE / package).rglob("*.py"))}
    assert {path: names for path, names in wrong.items() if names} == {}


@pytest.mark.cli
def test_the_lightning_free_modules_import_no_lightning() -> None:
    """In one fresh interpreter, importing them one after another: the first that loads lightning is named
    (torchmetrics counts too, it imports lightning_utilities)."""
    code = ("import importlib, sys\n"
            f"for module in {LIGHTNING_FREE!r}:\n"
            "    importlib.import_module(module)\n"
            "    loaded = sorted(m for m in sys.modules if m.startswith('lightning'))\n"
            "    if loaded:\n"
            "        raise SystemExit(f'{module} loads {loaded[:5]}')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
