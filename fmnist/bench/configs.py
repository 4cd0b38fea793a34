"""Run configs composed through Hydra exactly as `python -m fmnist.train` composes them, and the device they run on,
so every timing measures what a user's run would do."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from fmnist.core.config_dir import CONF_DIR
from fmnist.core.process import apply_process_settings
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.training.builders import build_datamodule


def compose_run(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """The `train` config with the given overrides; the run dir is set since no Hydra app is running."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={output_dir}"])


def study_batch_size(model: str) -> tuple[int | None, str | None]:
    """(batch size, experiment) of the model's own recipe in conf/experiment/: a study's protocol first
    (study_*.yaml), otherwise any recipe built on the model (e.g. speedrun for fast_cnn)."""
    paths = sorted((Path(CONF_DIR) / "experiment").glob("*.yaml"), key=lambda p: (not p.stem.startswith("study_"), p))
    for path in paths:
        recipe = OmegaConf.load(path)
        models = [entry["override /model"] for entry in recipe.get("defaults") or []
                  if isinstance(entry, DictConfig) and "override /model" in entry]
        batch_size = recipe.get("data", {}).get("batch_size")
        if models and models[0] == model and batch_size is not None:
            return int(batch_size), path.stem
    return None, None


def probe_trainer(cfg: DictConfig) -> L.Trainer:
    """A bare trainer with the config's accelerator: its `strategy.root_device` is the device Lightning trains on
    (accelerator=auto picks GPU, MPS or CPU). It applies the process settings, so the plain loop runs under them."""
    apply_process_settings(cfg.process)
    return L.Trainer(accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def resident_datamodule(cfg: DictConfig, probe: L.Trainer) -> FashionMnistDataModule:
    """Set up on the probe's device, so fmnist and the plain loop read the same resident tensors."""
    datamodule = build_datamodule(cfg)
    datamodule.trainer = probe
    datamodule.setup("fit")
    datamodule.trainer = None
    return datamodule
