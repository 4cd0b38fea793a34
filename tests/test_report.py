"""`python -m fmnist.report` on run directories laid out as train, multirun and cv write them (no training)."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from pathlib import Path

import pytest
import yaml

from fmnist.report.__main__ import main as report_main
from tests.helpers.fake_runs import leaderboard, write_failed, write_predicted_run, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A `train -m data.fold=0,1,2` sweep of the LSTM with one failed job, and a 2-fold CV run of a CNN."""
    sweep = tmp_path / "sweep"
    lstm_val = [0.80, 0.82, 0.84]
    for fold, val in enumerate(lstm_val):
        write_run(sweep / str(fold), "lstm", fold, val, 0.95 - fold / 100, [f"data.fold={fold}", "model=lstm"])
    write_failed(sweep / "3", "lstm", "ConfigError: optimizer.lr: -1 is outside (0.0, inf)")
    cv = tmp_path / "cv"
    (cv / ".hydra").mkdir(parents=True)
    (cv / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=cnn", "data.num_folds=2"]))
    for fold in range(2):
        write_run(cv / f"fold_{fold}", "cnn", fold, 0.90 + fold / 100, 0.89, None, params=5000)
    ensemble = {"members": 2, "test/acc": 0.9, "test/f1": 0.895,
                "test/confusion": [[900 if i == j else 11 for j in range(10)] for i in range(10)]}
    (cv / "cv_summary.json").write_text(json.dumps({"model": "cnn", "ensemble": ensemble}))
    return tmp_path


def test_folds_group_into_one_row_ranked_by_validation(runs: Path) -> None:
    assert report_main([str(runs / "sweep"), str(runs / "cv")]) == 0
    assert not (runs / "sweep" / "report").exists()  # the report goes beside the runs given last
    rows = leaderboard(runs / "cv" / "report")
    assert [row["model"] for row in rows] == ["cnn", "lstm"]  # lstm tests better but validates worse
    cnn, lstm = rows
    assert (cnn["runs"], lstm["runs"]) == ("2", "3") and lstm["folds"] == "0 1 2"
    assert float(lstm["val_acc_mean"]) == pytest.approx(0.82)
    assert float(lstm["val_acc_std"]) == pytest.approx(statistics.stdev([0.80, 0.82, 0.84]))
    assert float(lstm["gap_mean"]) == pytest.approx(0.05)
    assert float(cnn["ensemble_test_acc"]) == pytest.approx(0.9) and lstm["ensemble_test_acc"] == ""
    assert float(cnn["params_mean"]) == 5000 and float(cnn["train_seconds_mean"]) == pytest.approx(10.5)


def test_report_has_every_table_figure_and_failure(runs: Path) -> None:
    assert report_main([str(runs)]) == 0
    out = runs / "report"
    report = (out / "report.md").read_text()
    assert "| cnn | 2 | 90.50 ± 0.71 |" in report and "| lstm | 3 | 82.00 ± 2.00 |" in report
    assert report.count("| class | precision % | recall % | F1 % |") == 2
    assert "| Shirt |" in report and "ConfigError: optimizer.lr: -1 is outside" in report
    for name in ("accuracy_vs_params", "accuracy_vs_train_time", "per_class_f1", "curves_lstm", "curves_cnn",
                 "confusion_lstm", "confusion_cnn"):
        figure = out / "figures" / f"{name}.png"
        assert figure.read_bytes().startswith(PNG_MAGIC), name
        assert f"(figures/{name}.png)" in report
    # run dirs are linked relative to the report, never by this machine's absolute path
    assert str(runs.resolve()) not in report
    links = re.findall(r"^Runs: (.*)$", report, flags=re.MULTILINE)
    targets = [target for line in links for target in re.findall(r"\]\(([^)]+)\)", line)]
    assert len(targets) == 5 and all((out / target / "metrics.json").is_file() for target in targets)


def test_one_model_with_different_overrides_gets_distinct_rows(tmp_path: Path) -> None:
    for job, lr in enumerate(("0.001", "0.01")):
        write_run(tmp_path / str(job), "lstm", 0, 0.8 + job / 10, 0.8, ["model=lstm", f"optimizer.lr={lr}"])
    assert report_main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert [row["model"] for row in leaderboard(tmp_path / "out")] == ["lstm (optimizer.lr=0.01)",
                                                                         "lstm (optimizer.lr=0.001)"]


def test_bad_input_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert report_main([str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_models_on_different_folds_are_not_comparable(tmp_path: Path) -> None:
    for fold in range(3):
        write_predicted_run(tmp_path / "a" / f"fold_{fold}", "cnn", fold, 3, 0.90 + fold / 100, 0.90)
        write_predicted_run(tmp_path / "b" / f"fold_{fold}", "lstm", fold, 3, 0.85 + fold / 100, 0.86)
    for fold in range(5):
        write_predicted_run(tmp_path / "c" / f"fold_{fold}", "rnn", fold, 5, 0.80, 0.81)
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), "--out", str(out)]) == 0
    section = (out / "report.md").read_text().split("### Which differences are real", 1)[1]
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line
            for line in section.splitlines() if line.startswith("| ") and "---" not in line}
    assert "not comparable (different splits)" in rows[("cnn", "rnn")]
    assert "not comparable (different splits)" in rows[("lstm", "rnn")]
    cnn_lstm = [cell.strip() for cell in rows[("cnn", "lstm")].strip("|").split("|")]
    assert cnn_lstm[2].startswith("+5.00 [")  # paired by fold: every fold differs by exactly 5 pp
    assert cnn_lstm[3] == "<1e-4"  # zero variance of the difference: p = 0
    # McNemar on the (one-hot) ensembles: its counts are the images only one of the two gets right
    assert int(cnn_lstm[5]) > int(cnn_lstm[6])


def test_seeds_of_one_configuration_form_one_group(tmp_path: Path) -> None:
    for seed in range(2):
        for fold in range(3):
            write_predicted_run(tmp_path / f"seed{seed}" / f"fold_{fold}", "cnn", fold, 3,
                                0.90 + fold / 100 + seed / 200, 0.90, seed=seed)
            (tmp_path / f"seed{seed}" / ".hydra").mkdir(exist_ok=True)
            (tmp_path / f"seed{seed}" / ".hydra" / "overrides.yaml").write_text(
                yaml.safe_dump([f"seed={seed}", "model=cnn"]))
    out = tmp_path / "report"
    assert report_main([str(tmp_path), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    spread = text.split("### Seed variance and fold variance", 1)[1].split("\n\n")[1]
    row = [cell.strip() for cell in spread.splitlines()[2].strip("|").split("|")]
    assert row[:3] == ["cnn", "2", "3"]
    assert float(row[3]) == pytest.approx(100 * statistics.stdev([0.90, 0.905]), abs=0.01)
    assert float(row[4]) == pytest.approx(1.0, abs=0.01)  # folds 1 pp apart


def test_seeds_on_one_holdout_pair_by_seed_with_the_plain_paired_ttest(tmp_path: Path) -> None:
    from scipy.stats import ttest_rel

    vals = {"lstm": [0.900, 0.905, 0.897], "cnn": [0.910, 0.911, 0.912]}
    for model, values in vals.items():
        for seed, val in enumerate(values):
            directory = tmp_path / model / str(seed)
            write_predicted_run(directory, model, 0, 5, val, val - 0.01, seed=seed)
            metrics = json.loads((directory / "metrics.json").read_text())
            metrics["holdout_size"] = 5000  # study B: the first 5,000 train images, the same for every seed
            (directory / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "report"
    assert report_main([str(tmp_path), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| cnn | – | 3 (3 seeds) |" in text
    row = next(line for line in text.split("### Which differences are real", 1)[1].splitlines()
               if line.startswith("| cnn | lstm |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert float(cells[3]) == pytest.approx(ttest_rel(vals["cnn"], vals["lstm"]).pvalue, rel=0.02)


def test_studies_command_archives_runs_and_regenerates_reports_and_tables(tmp_path: Path) -> None:
    from fmnist.report.studies import BEGIN, END
    from fmnist.report.studies import main as studies_main

    runs = tmp_path / "multirun" / "study_a"
    for fold in range(3):
        write_predicted_run(runs / "conv_maxpool" / f"fold_{fold}", "conv_maxpool", fold, 3, 0.91, 0.905)
        write_predicted_run(runs / "rnn" / f"fold_{fold}", "rnn", fold, 3, 0.82 + fold / 1000, 0.83)
    (runs / "rnn" / "fold_0" / "checkpoints").mkdir()
    (runs / "rnn" / "fold_0" / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    training = runs / "lstm" / "fold_0"  # a run still training: no metrics.json yet
    (training / ".hydra").mkdir(parents=True)
    for name in ("history.csv", "resolved_config.yaml", ".hydra/overrides.yaml"):
        (training / name).write_text("partial\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    untouched = tmp_path / "other.md"
    untouched.write_text("no markers\n")
    results = tmp_path / "docs" / "results"
    assert studies_main([str(results), "--archive", str(tmp_path / "multirun"),
                         "--tables", str(readme), str(untouched)]) == 0
    kept = sorted(path.name for path in (results / "study_a" / "rnn" / "fold_0").iterdir())
    assert kept == ["history.csv", "metrics.json", "test_predictions.npz"]  # no checkpoint
    assert not (results / "study_a" / "lstm").exists()
    assert (results / "study_a" / "report" / "report.md").is_file()
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{END}\nafter\n") and "old table" not in text
    rows = [line for line in text.splitlines() if line.startswith("| conv_maxpool") or line.startswith("| rnn")]
    assert [row.split("|")[1].strip() for row in rows] == ["conv_maxpool", "rnn"]  # study order, then by val
    assert "| 91.00 ± 0.00 [91.00, 91.00] |" in rows[0] and "-0.20" in rows[0]  # ours − study's 91.20
    assert untouched.read_text() == "no markers\n"
    # regenerated from the committed files alone, without the run dirs
    shutil.rmtree(tmp_path / "multirun")
    assert studies_main([str(results), "--tables", str(readme)]) == 0
    assert readme.read_text() == text


def test_a_comparison_folder_is_paired_with_the_study_runs_it_names(tmp_path: Path) -> None:
    """docs/results/bf16_vs_fp32 holds study A's small_conv in bf16 only; its report pairs it by fold with the
    fp32 runs committed in study_a (named in fmnist.report.studies, not by a file in the folder)."""
    from fmnist.report.studies import main as studies_main

    results = tmp_path / "results"
    for fold in range(3):
        write_predicted_run(results / "study_a" / "small_conv" / f"fold_{fold}", "small_conv", fold, 5, 0.90, 0.89)
        write_predicted_run(results / "bf16_vs_fp32" / "small_conv" / f"fold_{fold}", "small_conv", fold, 5,
                            0.89 + fold / 1000, 0.88)
    for folder, overrides in (("study_a", []), ("bf16_vs_fp32", ["trainer.precision=bf16-mixed"])):
        (results / folder / "small_conv" / ".hydra").mkdir()
        (results / folder / "small_conv" / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump(["experiment=study_a_small_conv", *overrides]))
    assert studies_main([str(results), "--tables"]) == 0
    report = (results / "bf16_vs_fp32" / "report" / "report.md").read_text()
    assert report.startswith("# bf16 autocast against fp32")
    assert "| small_conv | small_conv (trainer.precision=bf16-mixed) | +0.90 [" in report  # paired by fold
    study_a = (results / "study_a" / "report" / "report.md").read_text()
    assert "bf16" not in study_a  # the study's own report is unchanged by the comparison


def test_a_model_with_some_folds_missing_is_not_paired_and_names_the_folds(tmp_path: Path) -> None:
    for fold in range(3):
        write_predicted_run(tmp_path / "a" / f"fold_{fold}", "cnn", fold, 5, 0.90 + fold / 100, 0.90)
    write_predicted_run(tmp_path / "b" / "fold_0", "lstm", 0, 5, 0.85, 0.86)
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "not comparable (different folds: 0, 1, 2 against 0)" in report
    assert "| 1 (1 fold) |" in report and "| 3 (3 folds) |" in report


def test_a_difference_of_exactly_half_a_point_counts_as_reproduced(tmp_path: Path) -> None:
    # study C published test 93.61 for conv2dsimple2; 9,311 of 10,000 right is -0.50 pp, not -0.5000000000000004
    write_predicted_run(tmp_path / "runs" / "fold_0", "conv2dsimple2", 0, 5, 0.93, 0.9311)
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    row = next(line for line in (out / "report.md").read_text().splitlines()
               if line.startswith("| conv2dsimple2 | C |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[10:13] == ["-0.50", "-0.50", "yes"]
