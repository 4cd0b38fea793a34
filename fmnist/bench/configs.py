"""Run configs for the benchmark, composed through Hydra exactly as `python -m fmnist.train` composes them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from fmnist.core.config_dir import CONF_DIR
from fmnist.training.process import apply_process_settings


def compose_run(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """The `train` config with the given overrides; the run dir is set since no Hydra app is running."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={output_dir}"])


def model_exists(name: str, conf_dir: str = CONF_DIR) -> bool:
    return (Path(conf_dir) / "model" / f"{name}.yaml").is_file()


def _experiment_model(path: Path) -> str | None:
    for entry in OmegaConf.load(path).get("defaults") or []:
        if isinstance(entry, DictConfig) and "override /model" in entry:
            return str(entry["override /model"])
    return None


def study_batch_size(model: str, conf_dir: str = CONF_DIR) -> tuple[int | None, str | None]:
    """(batch size, experiment) of the model's own recipe in conf/experiment/: a study's protocol first
    (study_*.yaml), otherwise any recipe built on the model (e.g. speedrun for fast_cnn)."""
    paths = sorted((Path(conf_dir) / "experiment").glob("*.yaml"), key=lambda p: (not p.stem.startswith("study_"), p))
    for path in paths:
        if _experiment_model(path) == model:
            batch_size = OmegaConf.load(path).get("data", {}).get("batch_size")
            if batch_size is not None:
                return int(batch_size), path.stem
    return None, None


def probe_trainer(cfg: DictConfig) -> L.Trainer:
    """A bare trainer with the config's accelerator: its `strategy.root_device` is the device Lightning
    trains on (accelerator=auto picks GPU, MPS or CPU), and data modules can be set up onto it."""
    apply_process_settings(cfg.process)  # before any timing: the plain loop runs under the same settings
    return L.Trainer(accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
