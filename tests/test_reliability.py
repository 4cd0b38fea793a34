"""Bad input, crashes and reruns: clear errors, nothing lost, the same answer twice."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException

from fmnist.core.errors import ConfigError
from fmnist.training.config_checks import check_train_config
from tests.helpers import (
    REPO,
    TrainedRun,
    cli_command,
    cli_env,
    compose,
    fmnist_lines,
    read_metrics,
    run_cli,
    run_guarded_in_process,
    train_in_process,
)

QUICK = ["data.train_subset=1500", "trainer.max_epochs=1", "logger=none", "data.eval_batch_size=2000"]
DETERMINISTIC = ["model=conv_maxpool", "data.train_subset=1200", "data.batch_size=100", "trainer.max_epochs=3",
                 "trainer.deterministic=true", "logger=none", "seed=0"]
COMPARED = ["val/acc", "val/loss", "test/acc", "test/loss", "test/f1", "train/acc"]


def assert_clear_error(result, *expected: str) -> None:
    assert result.returncode != 0, result.output[-2000:]
    for text in expected:
        assert text in result.output, result.output[-2000:]
    assert "Traceback" not in result.output


def assert_one_line(status: int, err: str, *expected: str) -> None:
    """The train command's guard ended the job with exit 2 and one line holding every `expected` text."""
    assert status == 2, err[-2000:]
    lines = fmnist_lines(err)
    assert len(lines) == 1 and lines[0].startswith("fmnist: error: ") and "Traceback" not in err, err[-2000:]
    for text in expected:
        assert text in lines[0], err[-2000:]


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
        check_train_config(compose("train", *override.split()))
    assert str(refused.value).startswith(expected) and ". Fix: " in str(refused.value)


def test_a_subset_larger_than_the_training_fold_is_refused_at_set_up(tmp_path: Path) -> None:
    """Checked when the folds exist (the fold's size depends on data.num_folds), still one line from the command."""
    assert_one_line(*run_guarded_in_process("train", "data.train_subset=48001", run_dir=tmp_path / "run"),
                    "data.train_subset: 48001 is outside 1..48000")


@pytest.mark.parametrize(("override", "expected"), [("optimizer=adamax", "Could not find 'optimizer/adamax'"),
                                                    ("scheduler=warmup", "Could not find 'scheduler/warmup'")])
def test_a_missing_config_option_is_named(override: str, expected: str) -> None:
    with pytest.raises(MissingConfigException, match=re.escape(expected)):
        compose("train", override)


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape"])
def test_damaged_data_dir_names_the_file(fashion, tmp_path: Path, damage: str) -> None:
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
        target.write_bytes(gzip.compress(bytes(raw[: 16 + 60_000 * 28 * 27]), compresslevel=1))  # level 9: 20 s
    assert_one_line(*run_guarded_in_process("train", f"data.data_dir={folder}", *QUICK, run_dir=tmp_path / "run"),
                    str(target))


@pytest.mark.cli
def test_unwritable_output_dir(tmp_path: Path) -> None:
    """Checked by the command before Hydra starts (fmnist.core.command.exit_unless_output_writable)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_cli("fmnist.train", *QUICK, run_dir=blocker / "run")
    assert_clear_error(result, "cannot write the output directory")
    assert blocker.read_text() == "not a folder"


def test_bad_checkpoints_are_refused_and_nothing_is_damaged(tiny_run: TrainedRun, tmp_path: Path, capfd) -> None:
    metrics_before = (tiny_run.run_dir / "metrics.json").read_bytes()
    last = tiny_run.last_ckpt
    last_before = last.read_bytes()
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
        assert_one_line(*run_guarded_in_process("train", *QUICK, *override.split(), run_dir=tmp_path / f"case{index}"),
                        expected)
        assert not (tmp_path / f"case{index}" / "metrics.json").exists()
    assert "pwned" not in capfd.readouterr().out  # os.system would write to the process's own stdout
    assert (tiny_run.run_dir / "metrics.json").read_bytes() == metrics_before and last.read_bytes() == last_before


def test_same_seed_same_metrics_other_seed_other_metrics(tmp_path: Path) -> None:
    """Three short deterministic runs in this process (validated and tested on a few batches)."""
    limited = [*DETERMINISTIC, "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2"]
    first, again = (train_in_process(tmp_path / name, *limited).metrics for name in ("first", "again"))
    other = train_in_process(tmp_path / "other", *limited, "seed=1").metrics
    assert {key: again[key] for key in COMPARED} == {key: first[key] for key in COMPARED}
    assert other["val/loss"] != first["val/loss"]
    assert first["seed"] == 0
    info = json.loads((tmp_path / "first" / "run_info.json").read_text())
    assert {"torch", "lightning", "hydra-core", "torchmetrics"} <= set(info["versions"])
    assert (tmp_path / "first" / "resolved_config.yaml").is_file()


@pytest.mark.cli
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """The command killed after its first epoch, then `python -m fmnist.resume`: the figures of the same run done
    without a break in this process (same seed, deterministic, the same torch threads)."""
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(cli_command("fmnist.train", *DETERMINISTIC, run_dir=run_dir), cwd=REPO,
                               env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    resumed = run_cli("fmnist.resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = train_in_process(tmp_path / "uninterrupted", *DETERMINISTIC).metrics
    got = read_metrics(run_dir)
    assert {key: got[key] for key in COMPARED} == {key: expected[key] for key in COMPARED}


def test_nan_loss_stops_with_a_clear_message(tmp_path: Path) -> None:
    # Adam's normalised steps keep even lr=1e6 finite for a while; plain SGD diverges within a few steps.
    run_dir = tmp_path / "run"
    assert_one_line(*run_guarded_in_process("train", "optimizer=sgd", "optimizer.lr=1e6", *QUICK, run_dir=run_dir),
                    "the training loss became NaN or infinite", "no checkpoint had been saved yet",
                    "lower optimizer.lr")
    assert not (run_dir / "metrics.json").exists()
