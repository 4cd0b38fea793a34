"""The configs outside the checkout's own commands: composed in a notebook that never imports fmnist, and
shipped in the wheel, whose installed package trains from any folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.helpers import DATA_DIR, REPO

# What the wheel is built from (pyproject.toml names README.md); the rest of the checkout stays out.
BUILD_INPUTS = ("pyproject.toml", "README.md", "fmnist", "conf")

NOTEBOOK = textwrap.dedent("""
    import json, sys
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf_dir, output_dir, *overrides = sys.argv[1:]
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        # No Hydra run outside a command, so no run dir to interpolate: the notebook names one.
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={output_dir}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert "fmnist" not in sys.modules, "composing imported fmnist"
    print(json.dumps(resolved))
""")


# Hydra's plugin scan (pkgutil over the hydra_plugins namespace), as `hydra/sweeper=optuna` needs it
DISCOVER_SWEEPERS = ("from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
                     "print([f'{c.__module__}.{c.__name__}' for c in Plugins.instance().discover(Sweeper)])")


def check(*command: str | Path, **kwargs) -> str:
    """Run a command that must succeed; its output, or its error in the assertion."""
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def compose_in_notebook(tmp_path: Path, *overrides: str) -> dict:
    """Compose and resolve in a fresh interpreter, outside the repository, as a notebook would."""
    return json.loads(check(sys.executable, "-c", NOTEBOOK, REPO / "conf", tmp_path / "run", *overrides, cwd=tmp_path))


@pytest.mark.cli
def test_configs_compose_and_resolve_without_importing_fmnist(tmp_path: Path) -> None:
    default = compose_in_notebook(tmp_path)
    assert default["model"]["name"] == "conv_maxpool" and default["logger"]["save_dir"] == str(tmp_path / "run")
    study = compose_in_notebook(tmp_path, "experiment=study_a_conv_maxpool")
    assert (study["model"]["name"], study["data"]["batch_size"], study["data"]["num_folds"]) == ("conv_maxpool", 16, 10)
    per_job = compose_in_notebook(tmp_path, "trainer=gpu_per_job")
    # a target, called when the trainer is built
    assert per_job["trainer"]["devices"] == {"_target_": "fmnist.training.devices.job_gpu"}


@pytest.mark.cli
def test_the_wheel_ships_the_configs_and_trains_from_any_folder(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a clean copy: an in-tree build would leave build/ in the checkout
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    check(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-q", "-w", tmp_path / "wheel")
    (wheel,) = (tmp_path / "wheel").glob("fmnist-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    plugins = source / "fmnist" / "search" / "hydra_plugins"  # mapped to the hydra_plugins namespace
    expected = {f"fmnist/{path.relative_to(source / 'fmnist').as_posix()}" for path in source.glob("fmnist/**/*.py")
                if not path.is_relative_to(plugins)}
    expected |= {f"fmnist/{path.relative_to(source).as_posix()}" for path in source.glob("conf/**/*.yaml")}
    expected |= {f"hydra_plugins/{path.relative_to(plugins).as_posix()}" for path in plugins.glob("**/*.py")}
    assert expected - shipped == set()  # a new subpackage must join [tool.setuptools] packages
    assert "hydra_plugins/fmnist_optuna_sweeper/optuna_sweeper.py" in shipped
    assert "hydra_plugins/__init__.py" not in shipped  # a namespace shared with every other Hydra plugin

    # A fresh venv with the wheel alone; torch and the other dependencies come from this venv's site-packages
    # through a .pth line, which does not run that folder's own .pth files (the editable install's finder).
    venv = tmp_path / "venv"
    check(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    check(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel)
    fresh = Path(check(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (fresh / "fmnist_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= {"FMNIST_DATA_DIR": str(DATA_DIR), "PYTHONWARNINGS": "ignore"}
    where = check(python, "-c", "import fmnist, fmnist.core.config_dir as c; print(fmnist.__file__); print(c.CONF_DIR)",
                  cwd=tmp_path, env=env).split()
    assert all(Path(path).is_relative_to(fresh / "fmnist") for path in where), where
    sweepers = check(python, "-c", DISCOVER_SWEEPERS, cwd=tmp_path, env=env)
    assert "hydra_plugins.fmnist_optuna_sweeper.optuna_sweeper.OptunaSweeper" in sweepers  # Hydra's own scan finds it

    run_dir = tmp_path / "run"
    check(python, "-m", "fmnist.train", "data.train_subset=512", "trainer.max_epochs=1", "logger=csv",
          f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "conv_maxpool" and "test/acc" in metrics


def test_every_command_is_a_console_script_beside_its_module() -> None:
    """pyproject's [project.scripts]: `fmnist-<command>` for each `python -m fmnist.<command>`, each resolving to a
    function of that command's module."""
    import importlib

    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    expected = {"train", "cv", "eval", "predict", "export", "report", "bench", "models", "resume", "lr-find", "tune"}
    assert {name.removeprefix("fmnist-") for name in scripts} == expected
    for name, target in scripts.items():
        module_name, function = target.split(":")
        command = name.removeprefix("fmnist-").replace("-", "_")
        assert module_name in (f"fmnist.{command}", f"fmnist.{command}.__main__"), name
        assert callable(getattr(importlib.import_module(module_name), function)), target


@pytest.mark.cli
def test_hydra_discovers_the_optuna_sweeper_in_the_editable_install(tmp_path: Path) -> None:
    """From a folder outside the checkout, so only the install (its editable finder) can make it visible."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    sweepers = check(sys.executable, "-c", DISCOVER_SWEEPERS, cwd=tmp_path, env=env)
    assert "hydra_plugins.fmnist_optuna_sweeper.optuna_sweeper.OptunaSweeper" in sweepers
