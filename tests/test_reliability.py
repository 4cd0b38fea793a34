"""Bad input, crashes and reruns: clear errors, nothing lost, the same answer twice."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException

from fmnist.core.errors import ConfigError
from fmnist.training.config_checks import check_train_config
from tests.conftest import DATA_DIR, REPO, compose_config, run_module

QUICK = ["data.train_subset=1500", "trainer.max_epochs=1", "logger=none", "data.eval_batch_size=2000"]
DETERMINISTIC = ["model=conv_maxpool", "data.train_subset=1200", "data.batch_size=100", "trainer.max_epochs=3",
                 "trainer.deterministic=true", "logger=none", "seed=0"]
COMPARED = ["val/acc", "val/loss", "test/acc", "test/loss", "test/f1", "train/acc"]


def assert_clear_error(result, *expected: str) -> None:
    assert result.returncode != 0, result.output[-2000:]
    for text in expected:
        assert text in result.output, result.output[-2000:]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.fold=5", "data.fold: 5 is not a fold of 5"),
        ("data.num_folds=1", "data.num_folds: 1 is not an integer >= 2"),
        ("optimizer.lr=-0.1", "optimizer.lr: -0.1 is outside"),
        ("trainer.max_epochs=0", "trainer.max_epochs: 0 is not an integer >= 1"),
        ("data.batch_size=abc", "data.batch_size: 'abc' is not an integer >= 1"),
        ("data.train_subset=0", "data.train_subset: 0 is not an integer >= 1"),
        ("model=lstm +model.net.dropout=1.5", "model.net.dropout: 1.5 is outside [0.0, 1.0)"),
        ("regularization.label_smoothing=1", "regularization.label_smoothing: 1 is outside"),
        ("seed=-3", "seed: -3 is not an integer >= 0"),
    ],
)
def test_bad_values_are_refused_with_the_key_and_a_fix(override: str, expected: str) -> None:
    """What the train command checks before it builds anything (in-process: each CLI start costs seconds)."""
    with pytest.raises(ConfigError) as refused:
        check_train_config(compose_config("train", *override.split()))
    assert str(refused.value).startswith(expected) and ". Fix: " in str(refused.value)


def test_a_subset_larger_than_the_training_fold_is_refused_at_set_up(train_cli) -> None:
    """Checked when the folds exist (the fold's size depends on data.num_folds), still one line through the CLI."""
    assert_clear_error(train_cli("data.train_subset=48001"), "data.train_subset: 48001 is outside 1..48000")


@pytest.mark.parametrize(("override", "expected"), [("optimizer=adamax", "Could not find 'optimizer/adamax'"),
                                                    ("scheduler=warmup", "Could not find 'scheduler/warmup'")])
def test_a_missing_config_option_is_named(override: str, expected: str) -> None:
    with pytest.raises(MissingConfigException, match=re.escape(expected)):
        compose_config("train", override)


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape"])
def test_damaged_data_dir_names_the_file(train_cli, fashion, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for source in fashion.source.glob("*.gz"):
        (folder / source.name).write_bytes(source.read_bytes())
    target = folder / "train-images-idx3-ubyte.gz"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:100_000])
    else:  # a valid IDX header that promises 60000 images of 28x27
        raw = bytearray(gzip.decompress(target.read_bytes()))
        raw[12:16] = (27).to_bytes(4, "big")
        target.write_bytes(gzip.compress(bytes(raw[: 16 + 60_000 * 28 * 27])))
    result = train_cli(f"data.data_dir={folder}", *QUICK)
    assert_clear_error(result, str(target))


def test_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_module("fmnist.train", *QUICK, run_dir=blocker / "run")
    assert_clear_error(result, "cannot write the output directory")
    assert blocker.read_text() == "not a folder"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = run_module("fmnist.train", *DETERMINISTIC, run_dir=run_dir)
    assert result.returncode == 0, result.output[-3000:]
    return run_dir


def test_bad_checkpoints_are_refused_and_nothing_is_damaged(finished_run: Path, tmp_path: Path) -> None:
    metrics_before = (finished_run / "metrics.json").read_bytes()
    last = finished_run / "checkpoints" / "last.ckpt"
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("hello")

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    malicious = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, malicious)
    cases = [
        (f"ckpt_path={tmp_path}/missing.ckpt", "does not exist"),
        (f"ckpt_path={not_a_checkpoint}", "not a zip-format PyTorch checkpoint"),
        (f"ckpt_path={malicious}", "refused, it cannot be loaded safely with weights_only=True"),
        (f"ckpt_path={last} model=lstm", "belongs to model 'conv_maxpool'"),
        (f"ckpt_path={last} model.net.channels=16", "has net.features.0.weight of shape"),
    ]
    for index, (override, expected) in enumerate(cases):
        result = run_module("fmnist.train", *QUICK, *override.split(), run_dir=tmp_path / f"case{index}")
        assert_clear_error(result, expected)
        assert "pwned" not in result.output
    assert (finished_run / "metrics.json").read_bytes() == metrics_before
    assert torch.load(last, weights_only=True)["epoch"] == 2


def test_same_seed_same_metrics_other_seed_other_metrics(finished_run: Path, tmp_path: Path) -> None:
    first = json.loads((finished_run / "metrics.json").read_text())
    again = run_module("fmnist.train", *DETERMINISTIC, run_dir=tmp_path / "again")
    other = run_module("fmnist.train", *DETERMINISTIC, "seed=1", run_dir=tmp_path / "other")
    assert again.returncode == 0 and other.returncode == 0
    assert {key: again.metrics()[key] for key in COMPARED} == {key: first[key] for key in COMPARED}
    assert other.metrics()["val/loss"] != first["val/loss"]
    assert first["seed"] == 0
    info = json.loads((finished_run / "run_info.json").read_text())
    assert {"torch", "lightning", "hydra-core", "torchmetrics"} <= set(info["versions"])
    assert (finished_run / "resolved_config.yaml").is_file()


def test_sigkill_then_resume_equals_uninterrupted(finished_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    env = {**os.environ, "FMNIST_DATA_DIR": str(DATA_DIR)}
    command = [sys.executable, "-m", "fmnist.train", *DETERMINISTIC, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 0:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.is_file() and not (run_dir / "metrics.json").exists()
    assert not list(run_dir.rglob("*.tmp"))  # no half-written files left behind under their real names
    resumed = subprocess.run([sys.executable, "-m", "fmnist.resume", str(run_dir)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((finished_run / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    assert {key: got[key] for key in COMPARED} == {key: expected[key] for key in COMPARED}


def test_nan_loss_stops_with_a_clear_message(train_cli) -> None:
    # Adam's normalised steps keep even lr=1e6 finite for a while; plain SGD diverges within a few steps.
    result = train_cli("optimizer=sgd", "optimizer.lr=1e6", *QUICK)
    assert_clear_error(result, "the training loss became NaN or infinite", "no checkpoint had been saved yet",
                       "lower optimizer.lr")
    assert result.returncode == 2 and not (result.run_dir / "metrics.json").exists()
