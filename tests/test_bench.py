"""The speed work: the benchmark runs and reports sane figures, the fast CNN is what its config says, the
speedrun recipe learns, and the cheap per-step training metrics equal torchmetrics' definitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from fmnist.bench.configs import study_batch_size
from fmnist.models.fast_cnn import FastCNN
from fmnist.training.builders import build_module
from fmnist.training.metrics import summary_metrics
from fmnist.training.tally import EpochTally, summary_from_confusion
from tests.helpers import compose, run_cli, run_dirs_released

# conf/model/fast_cnn.yaml, by hand: 3x3 convs without bias 1->48, 48->48, 48->96, 96->96, 96->192, 192->192;
# six BatchNorms (weight + bias); linear 192*3*3 -> 10 without bias.
FAST_CNN_PARAMS = (9 * (48 + 48 * 48 + 48 * 96 + 96 * 96 + 96 * 192 + 192 * 192)
                   + 2 * 2 * (48 + 96 + 192) + 192 * 9 * 10)


def run_bench(*args: str) -> dict:
    """The bench command's job in this process: `python -m fmnist.bench <args>`'s report."""
    from fmnist.bench.__main__ import main

    with run_dirs_released():
        return main(list(args))


def positive(value: float) -> bool:
    return isinstance(value, float) and value > 0 and value == value and value != float("inf")


@pytest.mark.cli
def test_quick_bench_writes_bench_json(tmp_path: Path) -> None:
    """`python -m fmnist.bench` as a user runs it: the bench command's one start in the suite."""
    output = tmp_path / "bench.json"
    done = run_cli("fmnist.bench", "--quick", "--models", "conv_maxpool", "no_such_model", "--output", str(output),
                   timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    report = json.loads(output.read_text())
    assert {"machine", "targets", "training", "data_pipeline", "skipped"} <= set(report)
    assert report["machine"]["device"] == "cpu" and report["targets"]["ratio"] == 1.05
    assert report["skipped"] == [{"model": "no_such_model", "reason": "conf/model/no_such_model.yaml does not exist"}]
    rows = report["training"]
    assert [(row["model"], row["batch_size"], row["batch_source"]) for row in rows] == [
        ("conv_maxpool", 16, "experiment=study_a_conv_maxpool"), ("conv_maxpool", 256, "common")]
    for row in rows:
        assert (len(row["framework_ms_per_step"]) == len(row["plain_ms_per_step"])
                == len(row["bare_lightning_ms_per_step"]) == row["repeats"] == 2)
        assert row["steps"] >= 3 and row["params"] == 63_050
        for side in ("framework", "plain"):
            assert positive(row[side]["ms_per_step"]) and positive(row[side]["images_per_second"])
        assert positive(row["bare_lightning"]["ms_per_step"])
        assert len(row["grouped_ms_per_step"]) == 2 and positive(row["grouped"]["ms_per_step"])
        assert row["grouped_steps_per_execution"] == -(-1024 // row["batch_size"])  # 64 at batch 16, 4 at 256
        assert row["steps"] % row["grouped_steps_per_execution"] == 0  # whole groups, the same steps for each
        for name in ("ratio", "lightning_floor_ratio", "fmnist_over_lightning_ratio", "grouped_ratio"):
            ratio = row[name]
            assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
        assert isinstance(row["meets_target"], bool)
    inference = rows[0]["inference_images_per_second"]
    assert positive(inference["batch_1"]) and positive(inference["batch_1024"])
    assert "inference_images_per_second" not in rows[1]  # once per model
    pipeline = report["data_pipeline"]
    assert [run["augmentation"] for run in pipeline["runs"]] == ["config", "flip+translate"]
    assert all(positive(run["images_per_second"]) and positive(run["headroom"]) for run in pipeline["runs"])
    assert "Training step" in done.stdout and "conv_maxpool" in done.stdout
    assert "| conv_maxpool | 16 | " in output.with_suffix(".md").read_text()  # bench.md: the table docs quote


def test_time_to_accuracy_trains_the_named_experiment_with_overrides_of_its_own_keys(tmp_path: Path) -> None:
    """speedrun_gpu picks trainer=gpu; the overrides move it to the CPU and shrink its widths, a key the plain
    config does not have: both must reach the probe and the runs, and the short run must learn."""
    output = tmp_path / "bench.json"
    report = run_bench("--quick", "--time-to-accuracy", "0.3", "--runs", "1", "--experiment", "speedrun_gpu",
                       "--output", str(output), "trainer=cpu", "trainer.precision=32-true",
                       "model.net.widths=[16,32,64]", "data.train_subset=16384")
    result = json.loads(output.read_text())["time_to_accuracy"]
    assert report["time_to_accuracy"] == result
    assert result["experiment"] == "speedrun_gpu" and result["target"] == 0.3 and len(result["runs"]) == 1
    assert result["overrides"][-2:] == ["model.net.widths=[16,32,64]", "data.train_subset=16384"]
    run = result["runs"][0]
    assert run["test_acc"] > 0.3, run  # 32 steps of batch 512: well above chance (0.10)
    assert result["test_acc"]["mean"] == pytest.approx(run["test_acc"]) and result["reached"] is True
    assert positive(result["train_seconds"]["mean"])
    run_dir = Path(run["run_dir"])
    assert run_dir.parent == tmp_path / "speedrun_gpu" and (run_dir / "metrics.json").is_file()


def test_speedrun_gpu_recipe() -> None:
    cfg = compose("train", "experiment=speedrun_gpu")
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed" and cfg.trainer.benchmark
    assert list(cfg.model.net.widths) == [64, 128, 256] and cfg.data.batch_size == 512
    assert cfg.trainer.max_epochs == 10 and cfg.optimizer.lr == pytest.approx(1e-2)
    assert cfg.augmentation.flip is True and cfg.augmentation.translate == 2
    assert cfg.model.tta_flip is True and cfg.scheduler.name == "onecycle"  # inherited from speedrun
    net = build_module(compose("train", "experiment=speedrun_gpu", "trainer=cpu")).net
    assert sum(parameter.numel() for parameter in net.parameters()) == 1_168_192


def test_study_batch_sizes_come_from_the_recipes() -> None:
    assert study_batch_size("conv_maxpool") == (16, "study_a_conv_maxpool")
    assert study_batch_size("lstm") == (64, "study_a_lstm")
    assert study_batch_size("fast_cnn")[1] == "speedrun"
    assert study_batch_size("no_such_model") == (None, None)


def test_fast_cnn_size_and_shapes() -> None:
    cfg = compose("train", "model=fast_cnn")
    module = build_module(cfg)
    assert sum(parameter.numel() for parameter in module.net.parameters()) == FAST_CNN_PARAMS
    plain = FastCNN(widths=(48, 96, 192), extra_conv=True, head="flatten")
    assert sum(parameter.numel() for parameter in plain.parameters()) == FAST_CNN_PARAMS
    conv = next(layer for layer in module.net.modules() if isinstance(layer, nn.Conv2d) and layer.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # model.channels_last converts the backbone
    x = torch.randn(5, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    module.eval()
    assert module(x).shape == (5, 10)
    assert FastCNN(stem=8, widths=(16, 32), extra_conv=True)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_speedrun_recipe() -> None:
    cfg = compose("train", "experiment=speedrun")
    assert cfg.model.name == "fast_cnn" and cfg.model.tta_flip is True
    assert cfg.scheduler.name == "onecycle" and cfg.regularization.label_smoothing > 0
    assert cfg.augmentation.flip is True and cfg.data.batch_size >= 128


def test_tta_flip_averages_the_logits_of_the_mirror_image() -> None:
    cfg = compose("train", "model=conv_maxpool", "model.tta_flip=true")
    torch.manual_seed(0)
    module = build_module(cfg).eval()
    assert module.tta_flip is True
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = (module.net(x) + module.net(x.flip(-1))) / 2
        assert torch.allclose(module.eval_logits(x), expected)
        assert not torch.allclose(module.eval_logits(x), module.net(x))
    assert build_module(compose("train", "model=conv_maxpool")).tta_flip is False


@pytest.mark.parametrize("missing_class", [None, 3])
def test_epoch_tally_equals_torchmetrics(missing_class: int | None) -> None:
    generator = torch.Generator().manual_seed(1)
    tally, reference = EpochTally(10), summary_metrics("train")
    losses = []
    for _ in range(4):
        logits = torch.randn(50, 10, generator=generator)
        targets = torch.randint(0, 10, (50,), generator=generator)
        if missing_class is not None:  # a class neither present nor predicted: macro averages skip it
            logits[:, missing_class] = -1e9
            targets[targets == missing_class] = (missing_class + 1) % 10
        loss = torch.nn.functional.cross_entropy(logits, targets)
        losses.append(loss)
        tally.update(logits, targets, loss)
        reference.update(logits, targets)
    ours, theirs = tally.compute("train"), reference.compute()
    for name in ("acc", "precision", "recall", "f1"):
        assert ours[f"train/{name}"].item() == pytest.approx(theirs[f"train/{name}"].item(), abs=1e-6), name
    assert ours["train/loss"].item() == pytest.approx(torch.stack(losses).mean().item(), rel=1e-6)
    tally.reset()
    assert not tally


def test_summary_of_a_perfect_confusion_matrix() -> None:
    summary = summary_from_confusion(torch.diag(torch.tensor([5, 0, 7])))
    assert {name: round(value.item(), 6) for name, value in summary.items()} == {
        "acc": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
