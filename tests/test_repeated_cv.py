"""Repeated k-fold: r split seeds x k folds, paired by (split seed, fold), tested with the corrected repeated k-fold
t-test of Bouckaert and Frank (2004)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from fmnist.core.errors import ConfigError
from fmnist.cv import fold_config, selected_splits
from fmnist.report.__main__ import main as report_main
from fmnist.report.collect import collect
from fmnist.report.compare import model_stats
from fmnist.report.stats import corrected_resampled_ttest
from tests.helpers import compose, run_in_process
from tests.helpers.fake_runs import write_predicted_run


def by_hand(differences: list[float], k: int, r: int) -> tuple[float, float]:
    """t = mean(d) / sqrt((1/(k r) + n2/n1) var(d)), df = k r - 1, with n2/n1 = 1/(k - 1) for k-fold."""
    d = np.asarray(differences)
    t = d.mean() / np.sqrt((1 / (k * r) + 1 / (k - 1)) * d.var(ddof=1))
    return float(t), float(2 * scipy_stats.t.sf(abs(t), df=k * r - 1))


def test_the_repeated_kfold_statistic_matches_an_independent_computation() -> None:
    differences = [0.012, 0.004, 0.009, -0.002, 0.011, 0.007, 0.001, 0.010, 0.006, 0.003, 0.008, 0.005, 0.013,
                   -0.001, 0.009]  # 3 split seeds x 5 folds
    t, p = by_hand(differences, k=5, r=3)
    test = corrected_resampled_ttest(differences, test_train_ratio=1 / 4)
    assert test.n == 15 and test.p_value == pytest.approx(p, rel=1e-12)
    half = scipy_stats.t.ppf(0.975, df=14) * np.mean(differences) / t
    assert (test.low, test.high) == pytest.approx((np.mean(differences) - half, np.mean(differences) + half))
    # the correction matters: the plain paired t-test over the 15 correlated differences is far more confident
    assert scipy_stats.ttest_1samp(differences, 0.0).pvalue < p / 100


def write_repeated(root: Path, model: str, values: dict[tuple[int, int], float], accuracy: float) -> None:
    """A repeated CV run dir as fmnist.cv writes it: fold_<k>/ for split seed 0, split_seed_<s>/fold_<k>/ after."""
    for (split_seed, fold), val in values.items():
        directory = root / (f"fold_{fold}" if split_seed == 0 else f"split_seed_{split_seed}/fold_{fold}")
        write_predicted_run(directory, model, fold, 3, val, accuracy)
        metrics = json.loads((directory / "metrics.json").read_text())
        metrics["split_seed"] = split_seed
        (directory / "metrics.json").write_text(json.dumps(metrics))
    (root / ".hydra").mkdir()
    (root / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}", "data.num_folds=3",
                                                                    "cv.repeats=2"]))


def test_repeated_runs_pair_by_split_seed_and_fold(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    units = [(split_seed, fold) for split_seed in (0, 1) for fold in range(3)]
    first = {unit: 0.85 + 0.05 * rng.random() for unit in units}  # units far apart: any mis-pairing shows
    second = {unit: first[unit] - 0.004 - (0.006 if unit == (1, 0) else 0.001 * unit[1]) for unit in units}
    write_repeated(tmp_path / "runs" / "a", "cnn", first, 0.90)
    write_repeated(tmp_path / "runs" / "b", "mlp", second, 0.88)
    for fold in range(3):  # a plain 3-fold run on split seed 0: other partitions, not comparable
        write_predicted_run(tmp_path / "runs" / "c" / f"fold_{fold}", "rnn", fold, 3, 0.85, 0.84)
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| cnn | – | 6 (2 split seeds x 3 folds) |" in text
    assert "Bouckaert and Frank (2004)" in text
    section = text.split("### Which differences are real", 1)[1].split("\n\n")[1]
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): [cell.strip() for cell in
            line.strip("|").split("|")] for line in section.splitlines()[2:]}
    _, p = by_hand([first[unit] - second[unit] for unit in units], k=3, r=2)
    assert float(rows[("cnn", "mlp")][3]) == pytest.approx(p, abs=0.0006)  # printed to 2 significant digits
    assert rows[("cnn", "rnn")][2] == "not comparable (different split seeds: 0, 1 against 0)"
    assert "| cnn | 1/0 |" in text  # the runs table names split seed/fold
    # the model's own interval is corrected as its tests are: mean +- t(k r - 1) sqrt((1/(k r) + 1/(k - 1)) var)
    cnn = next(model_stats(group) for group in collect([tmp_path / "runs" / "a"]).groups)
    values = np.array([first[unit] for unit in units])
    half = scipy_stats.t.ppf(0.975, df=5) * np.sqrt((1 / 6 + 1 / 2) * values.var(ddof=1))
    assert (cnn.val.low, cnn.val.high) == pytest.approx((values.mean() - half, values.mean() + half))


def test_cv_repeats_run_each_split_seed_in_its_own_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "cv"
    summary = run_in_process("cv", "model=conv_maxpool", "model.net.channels=2", "data.num_folds=2", "cv.repeats=2",
                             "data.train_subset=128", "trainer.max_epochs=1", "logger=none", "trainer.accelerator=cpu",
                             "data.download=false", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
                             "cv.ensemble=false", run_dir=run_dir)
    assert summary["folds"] == [0, 1, 0, 1] and summary["split_seeds"] == [0, 0, 1, 1]
    for split_seed, folder in ((0, run_dir), (1, run_dir / "split_seed_1")):
        for fold in (0, 1):
            metrics = json.loads((folder / f"fold_{fold}" / "metrics.json").read_text())
            assert (metrics["split_seed"], metrics["fold"], metrics["status"]) == (split_seed, fold, "completed")
    assert json.loads((run_dir / "cv_summary.json").read_text())["split_seeds"] == [0, 0, 1, 1]


def test_a_repeat_gets_its_split_seed_and_folder() -> None:
    cfg = compose("cv", "data.split_seed=7", "cv.repeats=3")
    assert selected_splits(cfg) == [7, 8, 9]
    fold_cfg = fold_config(cfg, 2, Path("/runs/cv"), split_seed=8)
    assert (fold_cfg.data.split_seed, fold_cfg.data.fold) == (8, 2)
    assert fold_cfg.paths.output_dir == "/runs/cv/split_seed_8/fold_2"
    assert fold_config(cfg, 2, Path("/runs/cv")).paths.output_dir == "/runs/cv/fold_2"
    with pytest.raises(ConfigError, match=r"^cv\.repeats: 0 is not a positive number of repeats\. Fix: "):
        selected_splits(compose("cv", "cv.repeats=0"))
