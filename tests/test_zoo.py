"""The whole zoo end to end: every model trains and tests a batch, every study recipe matches its paper,
and `python -m fmnist.models` lists them all with the right sizes."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from fmnist.core.config_dir import CONF_DIR
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.models.__main__ import main as listing_main
from fmnist.models.catalog import model_names
from fmnist.training.builders import build_datamodule, build_module
from tests.helpers import DATA_DIR, compose, run_cli
from tests.helpers.models import PARAMS_FROM_MODELS_MD, pytorch_params

TINY_DATA = [f"data.data_dir={DATA_DIR}", "data.train_subset=64", "data.batch_size=8", "data.eval_batch_size=16",
             "data.verify_checksums=false", "data.download=false"]


@pytest.fixture(scope="module")
def datamodules() -> dict[str, FashionMnistDataModule]:
    """One set-up data module per input kind: reading the 70k images once keeps this file fast."""
    built = {}
    for kind, model in (("image", "conv_maxpool"), ("rows", "lstm")):
        datamodule = build_datamodule(compose("train", f"model={model}", *TINY_DATA))
        datamodule.setup("fit")
        built[kind] = datamodule
    return built


def test_every_model_config_is_covered_by_the_parameter_table() -> None:
    assert set(PARAMS_FROM_MODELS_MD) | {"fast_cnn"} >= set(model_names())


@pytest.mark.parametrize("name", model_names())
def test_fast_dev_run_trains_and_tests_one_batch(name: str, datamodules: dict[str, FashionMnistDataModule]) -> None:
    cfg = compose("train", f"model={name}", *TINY_DATA)
    torch.manual_seed(0)
    module = build_module(cfg)
    before = [parameter.detach().clone() for parameter in module.net.parameters()]
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    datamodule = datamodules[cfg.model.input]
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 1
    changed = [not torch.equal(old, new) for old, new in zip(before, module.net.parameters(), strict=True)]
    assert any(changed), "one optimizer step left every weight unchanged"
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    assert 0.0 <= results[0]["test/acc"] <= 1.0


# experiment -> (model, lr, batch, epochs, scheduler, weight decay, max-norm, validation, augmentation)
# validation: ("folds", k) or ("holdout", n); augmentation: (flip, translate, erase)
STUDIES = {
    "study_a_conv_maxpool": ("conv_maxpool", 1e-3, 16, 10, "none", 0.0, None, ("folds", 10), (False, 0, 0.0)),
    "study_a_stride_conv": ("stride_conv", 1e-4, 16, 20, "none", 0.0, None, ("folds", 10), (False, 0, 0.0)),
    "study_a_small_conv": ("small_conv", 1e-3, 16, 20, "none", 0.0, None, ("folds", 10), (False, 0, 0.0)),
    "study_a_drop_norm_l2": ("drop_norm_l2", 1e-3, 16, 30, "none", 1e-4, None, ("folds", 10), (False, 0, 0.0)),
    "study_a_drop_norm_conv": ("drop_norm_conv", 1e-3, 16, 20, "none", 0.0, None, ("folds", 10), (False, 0, 0.0)),
    "study_a_rnn": ("rnn", 1e-3, 64, 20, "none", 0.0, None, ("folds", 5), (False, 0, 0.0)),
    "study_a_lstm": ("lstm", 1e-3, 64, 20, "none", 0.0, None, ("folds", 5), (False, 0, 0.0)),
    "study_b_lstm186": ("lstm186", 1e-3, 32, 10, "none", 0.0, None, ("holdout", 5000), (False, 0, 0.0)),
    "study_b_lstm2_784_186": ("lstm2_784_186", 1e-3, 32, 10, "none", 0.0, None, ("holdout", 5000), (False, 0, 0.0)),
    "study_b_cnn_geron": ("cnn_geron", 1e-3, 32, 10, "none", 0.0, None, ("holdout", 5000), (False, 0, 0.0)),
    "study_c_conv2dnet": ("conv2dnet", 1e-3, 128, 50, "plateau", 0.0, 4.0, ("folds", 5), (False, 0, 0.0)),
    "study_c_inception_cnn": ("inception_cnn", 1e-3, 128, 50, "plateau", 0.0, 4.0, ("folds", 5), (False, 0, 0.0)),
    "study_c_conv2dsimple": ("conv2dsimple", 1e-3, 128, 50, "plateau", 0.0, 4.0, ("folds", 5), (False, 0, 0.0)),
    "study_c_conv2dsimple2": ("conv2dsimple2", 1e-3, 128, 50, "plateau", 0.0, 4.0, ("folds", 5), (False, 0, 0.0)),
    "study_c_conv2dsimple3": ("conv2dsimple3", 1e-3, 128, 50, "plateau", 0.0, 4.0, ("folds", 5), (False, 0, 0.0)),
    "study_d_qstp_cnn": ("qstp_cnn", 1e-3, 500, 250, "none", 0.0, None, ("folds", 5), (True, 0, 0.0)),
}
KERAS_INIT = {"lstm186": "keras", "lstm2_784_186": "keras", "cnn_geron": "glorot", "conv2dnet": "glorot",
              "inception_cnn": "glorot", "conv2dsimple": "glorot", "conv2dsimple2": "glorot", "conv2dsimple3": "glorot",
              "qstp_cnn": "kaiming"}


def test_every_study_experiment_is_checked() -> None:
    shipped = {path.stem for path in (Path(CONF_DIR) / "experiment").glob("study_*.yaml")}
    assert shipped == set(STUDIES)


@pytest.mark.parametrize("experiment", sorted(STUDIES))
def test_study_experiment_matches_the_study(experiment: str) -> None:
    model, lr, batch, epochs, schedule, decay, max_norm, validation, augmentation = STUDIES[experiment]
    cfg = compose("train", f"experiment={experiment}")
    assert (cfg.model.name, cfg.data.batch_size, cfg.trainer.max_epochs) == (model, batch, epochs)
    assert cfg.scheduler.name == schedule
    if schedule == "plateau":  # halve on a 2-epoch stall of the validation loss (study C)
        assert (cfg.scheduler.monitor, cfg.scheduler.factory.factor, cfg.scheduler.factory.patience) == ("val/loss",
                                                                                                        0.5, 2)
    kind, size = validation
    assert (cfg.data.holdout_size if kind == "holdout" else cfg.data.num_folds) == size
    if kind == "folds":
        assert cfg.data.holdout_size is None
    assert (cfg.augmentation.flip, cfg.augmentation.translate, cfg.augmentation.erase) == augmentation
    assert cfg.regularization.max_norm == max_norm and cfg.regularization.label_smoothing == 0.0
    assert cfg.model.net.get("init", "default") == KERAS_INIT.get(model, "default")
    module = build_module(cfg)
    optimizer = module.optimizer_factory(module.parameters())
    assert isinstance(optimizer, torch.optim.Adam) and not isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == lr and optimizer.defaults["weight_decay"] == decay
    assert optimizer.defaults["amsgrad"] == (experiment == "study_d_qstp_cnn")
    assert module.max_norm == max_norm


def test_resnet_recipe() -> None:
    cfg = compose("train", "experiment=resnet_recipe")
    module = build_module(cfg)
    optimizer = module.optimizer_factory(module.parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    assert optimizer.defaults["weight_decay"] == 5e-4 and module.label_smoothing == 0.1
    assert cfg.scheduler.name in ("onecycle", "cosine") and cfg.model.name == "resnet"
    assert (cfg.augmentation.flip, cfg.augmentation.translate > 0, cfg.augmentation.erase > 0) == (True, True, True)


# MACs worked out by hand: conv_maxpool = 32*9*28*28 + 6272*10; rnn = 28 steps * 100*(28+100) + 100*10;
# lstm = 28 steps * 4*100*(28+100) + 100*10.
HAND_COUNTED_MACS = {"conv_maxpool": 288_512, "rnn": 359_400, "lstm": 1_434_600}


@pytest.mark.cli
def test_model_listing_json_lists_every_model_with_its_parameters() -> None:
    """`python -m fmnist.models --json` as a user runs it: the models command's one start in the suite."""
    done = run_cli("fmnist.models", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    listed = {entry["name"]: entry for entry in json.loads(done.stdout)}
    assert set(listed) == set(model_names())
    for name, entry in listed.items():
        assert set(entry) == {"name", "family", "input", "params", "macs"}
        assert entry["family"] in ("cnn", "sequence") and entry["input"] in ("image", "rows")
        assert entry["macs"] > entry["params"] / 2 > 0  # every weight is used at least once per image
        if name in PARAMS_FROM_MODELS_MD:
            assert entry["params"] == pytorch_params(name), name
    for name, macs in HAND_COUNTED_MACS.items():
        assert listed[name]["macs"] == macs, name


def test_model_listing_refuses_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert listing_main(["conv_maxpool", "no_such_model"]) == 2
    assert "no model config no_such_model" in capsys.readouterr().err


def test_model_listing_table_names_one_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert listing_main(["rnn"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["name", "family", "input", "params", "MACs/image"]
    assert row.split() == ["rnn", "sequence", "rows", "14,010", "359,400"]
