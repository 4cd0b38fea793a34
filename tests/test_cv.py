"""`python -m fmnist.cv` for real on a small train subset: distinct folds, a correct summary, a sane ensemble."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fmnist.cv import fold_config
from fmnist.training.builders import build_datamodule
from tests.helpers import compose, run_cli, run_guarded_in_process, run_in_process

FOLDS = 3
# Validated on two batches of each fold's 20,000 images; tested on the whole test set (the ensemble's confusion
# matrix and each fold's saved predictions cover all 10,000 images).
CV_OVERRIDES = ("model=conv_maxpool", f"data.num_folds={FOLDS}", "data.train_subset=2000", "trainer.max_epochs=1",
                "data.batch_size=128", "logger=tensorboard", "++trainer.limit_val_batches=2")


@dataclass(frozen=True)
class CvRun:
    run_dir: Path
    summary: dict


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> CvRun:
    """A real 3-fold CV, in-process (fmnist.cv's cross_validate on the composed cv config)."""
    run_dir = tmp_path_factory.mktemp("cv") / "run"
    return CvRun(run_dir, run_in_process("cv", *CV_OVERRIDES, run_dir=run_dir))


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "cv_summary.json").read_text())


def _fold_metrics(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / f"fold_{k}" / "metrics.json").read_text()) for k in range(FOLDS)]


def test_each_fold_is_its_own_run(cv_run: CvRun) -> None:
    folds = _fold_metrics(cv_run.run_dir)
    assert [fold["fold"] for fold in folds] == list(range(FOLDS))
    assert all(fold["status"] == "completed" for fold in folds)
    assert len({fold["best_ckpt"] for fold in folds}) == FOLDS  # fresh trainer and checkpoint dir per fold
    assert len({fold["val/acc"] for fold in folds}) == FOLDS  # validated on different images
    for k in range(FOLDS):
        assert (cv_run.run_dir / f"fold_{k}" / "history.csv").is_file()
        assert (cv_run.run_dir / "tensorboard" / f"fold_{k}").is_dir()


def test_fold_configs_validate_on_disjoint_parts_of_the_train_set(fashion, tmp_path: Path) -> None:
    cfg = compose("cv", f"data.num_folds={FOLDS}", "data.download=false")
    val_sets = []
    for fold in range(FOLDS):
        fold_cfg = fold_config(cfg, fold, tmp_path)
        assert fold_cfg.paths.output_dir == str(tmp_path / f"fold_{fold}") and fold_cfg.data.fold == fold
        assert fold_cfg.logger.save_dir == str(tmp_path)  # TensorBoard versions fold_<k> side by side
        datamodule = build_datamodule(fold_cfg)
        datamodule.setup("fit")
        val_sets.append(set(datamodule.val_index.tolist()))
        assert not val_sets[-1] & set(datamodule.train_index.tolist())
    assert all(not a & b for i, a in enumerate(val_sets) for b in val_sets[i + 1:])
    assert sum(map(len, val_sets)) == len(fashion.train_labels)


def test_summary_statistics_match_the_fold_files(cv_run: CvRun) -> None:
    summary, folds = _summary(cv_run.run_dir), _fold_metrics(cv_run.run_dir)
    assert summary == cv_run.summary  # what the job returned is what it wrote
    assert summary["status"] == "completed" and summary["folds"] == list(range(FOLDS))
    val_keys = [key for key, value in folds[0].items() if key.startswith("val/") and isinstance(value, float)]
    assert {"val/acc", "val/f1", "val/loss", "val/class_f1/Shirt"} <= set(val_keys)
    for key in val_keys:
        values = [fold[key] for fold in folds]
        assert summary["per_fold"][key] == values
        assert summary["mean"][key] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert summary["std"][key] == pytest.approx(statistics.stdev(values), abs=1e-12)
    assert [entry["test/acc"] for entry in summary["fold_test"]] == [fold["test/acc"] for fold in folds]


def test_ensemble_of_fold_models_is_sane(cv_run: CvRun) -> None:
    summary, folds = _summary(cv_run.run_dir), _fold_metrics(cv_run.run_dir)
    ensemble = summary["ensemble"]
    assert ensemble["members"] == FOLDS
    confusion = np.asarray(ensemble["test/confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10_000
    assert ensemble["test/acc"] == pytest.approx(np.trace(confusion) / 10_000, abs=1e-6)
    fold_acc = [fold["test/acc"] for fold in folds]
    assert ensemble["test/acc"] > 0.6  # chance is 0.10
    assert min(fold_acc) - 0.02 <= ensemble["test/acc"] <= max(fold_acc) + 0.05
    assert 0.0 <= ensemble["test/class_f1/Shirt"] <= 1.0 and ensemble["test/nll"] > 0


def test_tensorboard_has_hparams_and_pr_curves_per_fold(cv_run: CvRun) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for k in range(FOLDS):
        accumulator = EventAccumulator(str(cv_run.run_dir / "tensorboard" / f"fold_{k}"),
                                       size_guidance={"tensors": 0})
        accumulator.Reload()
        plugins = accumulator.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in plugins
        pr_tags = accumulator.PluginTagToContent("pr_curves")
        assert {"test/pr_curve/Shirt", "test/pr_curve/Trouser"} <= set(pr_tags) and len(pr_tags) == 10


@pytest.mark.cli
def test_rerun_skips_completed_folds(cv_run: CvRun) -> None:
    """`python -m fmnist.cv` as a user runs it, again in a finished CV's dir: the cv command's one start in the
    suite (it trains nothing, so it is cheap)."""
    before = _summary(cv_run.run_dir)
    mtimes = {k: (cv_run.run_dir / f"fold_{k}" / "metrics.json").stat().st_mtime_ns for k in range(FOLDS)}
    again = run_cli("fmnist.cv", *CV_OVERRIDES, run_dir=cv_run.run_dir)
    assert again.returncode == 0, again.output[-3000:]
    assert again.output.count("already completed") == FOLDS
    assert {k: (cv_run.run_dir / f"fold_{k}" / "metrics.json").stat().st_mtime_ns for k in range(FOLDS)} == mtimes
    after = _summary(cv_run.run_dir)
    assert after["per_fold"] == before["per_fold"]
    assert after["ensemble"]["test/acc"] == pytest.approx(before["ensemble"]["test/acc"])


def test_bad_fold_selection_is_one_clear_error(tmp_path: Path) -> None:
    """What the cv command's guard makes of it (the train command's exit 2 and line are checked through the CLI)."""
    status, err = run_guarded_in_process("cv", "data.num_folds=3", "cv.folds=[0,3]", run_dir=tmp_path / "run")
    lines = [line for line in err.splitlines() if line.startswith("fmnist:")]
    assert status == 2 and len(lines) == 1 and "cv.folds" in lines[0] and "Traceback" not in err


def test_each_fold_keeps_test_predictions_that_reproduce_its_metrics(cv_run: CvRun) -> None:
    from fmnist.core.predictions import read_predictions
    from fmnist.core.run_files import PREDICTIONS_FILE

    for fold in _fold_metrics(cv_run.run_dir):
        predictions = read_predictions(cv_run.run_dir / f"fold_{fold['fold']}" / PREDICTIONS_FILE)
        assert predictions.probabilities.shape == (10_000, 10) and predictions.labels.shape == (10_000,)
        assert np.allclose(predictions.probabilities.sum(axis=1), 1.0, atol=1e-4)
        assert predictions.accuracy == pytest.approx(fold["test/acc"], abs=1e-6)
        assert np.trace(np.asarray(fold["test/confusion"])) == predictions.correct.sum()


def test_two_models_on_the_same_folds_get_a_pairwise_table_and_figures(cv_run: CvRun, tmp_path: Path) -> None:
    from fmnist.report.__main__ import main as report_main

    run_in_process("cv", *CV_OVERRIDES, "model=rnn", run_dir=tmp_path / "rnn")
    out = tmp_path / "report"
    assert report_main([str(cv_run.run_dir), str(tmp_path / "rnn"), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    section = text.split("### Which differences are real", 1)[1]
    pair_rows = [line for line in section.splitlines() if line.startswith("| conv_maxpool | rnn |")
                 or line.startswith("| rnn | conv_maxpool |")]
    assert len(pair_rows) == 1 and "not comparable" not in pair_rows[0]
    cells = [cell.strip() for cell in pair_rows[0].strip("|").split("|")]
    def p_value(cell: str) -> float:
        return 0.0 if cell == "<1e-4" else float(cell)

    assert "[" in cells[2] and 0.0 <= p_value(cells[3]) <= p_value(cells[4]) <= 1.0  # interval, p <= Holm's p
    assert 0.0 <= p_value(cells[7]) <= 1.0  # McNemar
    assert int(cells[5]) + int(cells[6]) > 0  # two different models disagree on some test images
    assert "Nadeau and Bengio" in text and "Holm" in text
    for figure in ("forest.png", "differences.png"):
        assert (out / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
