"""Every option of every config group composes and builds the objects it promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from fmnist.core.config_dir import CONF_DIR
from fmnist.core.constants import INPUT_KINDS
from fmnist.training.builders import build_callbacks, build_datamodule, build_module, build_scheduler
from tests.helpers import compose

GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name != "hydra")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def test_every_group_has_options() -> None:
    expected = {"augmentation", "callbacks", "data", "experiment", "logger", "model", "optimizer", "paths",
                "regularization", "scheduler", "trainer"}
    assert expected <= set(GROUPS)
    assert {"adam", "adamw", "sgd"} <= set(options("optimizer"))
    assert {"none", "plateau", "cosine", "onecycle"} <= set(options("scheduler"))
    assert {"none", "l2", "max_norm", "label_smoothing"} <= set(options("regularization"))
    assert {"cpu", "gpu", "mps", "auto"} <= set(options("trainer"))
    assert {"tensorboard", "csv", "none"} <= set(options("logger"))
    assert {"none", "flip", "flip_translate"} <= set(options("augmentation"))


@pytest.mark.parametrize("option", options("model"))
def test_model_options_build(option: str) -> None:
    cfg = compose("train", f"model={option}")
    assert cfg.model.name == option and cfg.model.input in INPUT_KINDS and cfg.model.family in ("cnn", "sequence")
    module = build_module(cfg)
    x = torch.zeros(2, 1, 28, 28) if cfg.model.input == "image" else torch.zeros(2, 28, 28)
    assert module(x).shape == (2, 10)


@pytest.mark.parametrize("option", options("optimizer"))
@pytest.mark.parametrize("regularization", options("regularization"))
def test_optimizer_and_regularization_options_build(option: str, regularization: str) -> None:
    cfg = compose("train", f"optimizer={option}", f"regularization={regularization}")
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(3))])
    assert optimizer.defaults["lr"] == cfg.optimizer.lr
    assert optimizer.defaults["weight_decay"] == cfg.regularization.weight_decay
    assert build_module(cfg).label_smoothing == cfg.regularization.label_smoothing


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_options_build(option: str) -> None:
    spec = build_scheduler(compose("train", f"scheduler={option}"))
    if option == "none":
        assert spec is None
        return
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    kwargs = {spec.total_steps_kwarg: 100} if spec.total_steps_kwarg else {}
    assert hasattr(spec.factory(optimizer, **kwargs), "step") and spec.interval in ("step", "epoch")


@pytest.mark.parametrize("option", options("augmentation"))
def test_augmentation_options_build(option: str) -> None:
    cfg = compose("train", f"augmentation={option}")
    assert build_datamodule(cfg).augmentation.active == (option != "none")


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options_compose(option: str) -> None:
    cfg = compose("train", f"trainer={option}")
    expected = {"ddp": "auto", "ddp_spawn": "auto", "gpu_per_job": "gpu"}.get(option, option)
    assert cfg.trainer.accelerator == expected
    if option.startswith("ddp"):
        assert cfg.trainer.strategy == option
    if option in ("auto", "cpu"):
        assert instantiate(cfg.trainer, logger=False, enable_progress_bar=False).max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("logger", options("logger"))
@pytest.mark.parametrize("callbacks", options("callbacks"))
def test_logger_and_callback_options_build(logger: str, callbacks: str, tmp_path: Path) -> None:
    cfg = compose("train", f"logger={logger}", f"callbacks={callbacks}", output_dir=tmp_path)
    built_logger = instantiate(cfg.logger) if cfg.logger else None
    assert (built_logger is None) == (logger == "none")
    built = build_callbacks(cfg, has_logger=built_logger is not None, interactive=False)
    assert any(type(callback).__name__ == "ModelCheckpoint" for callback in built)


@pytest.mark.parametrize("option", options("experiment"))
def test_experiments_compose(option: str) -> None:
    cfg = compose("train", f"experiment={option}")
    assert cfg.trainer.max_epochs >= 1 and cfg.data.batch_size >= 1 and cfg.model.name


def test_study_a_settings() -> None:
    cfg = compose("train", "experiment=study_a_conv_maxpool")
    settings = (cfg.model.name, cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.num_folds)
    assert settings == ("conv_maxpool", 16, 10, 10)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-3
