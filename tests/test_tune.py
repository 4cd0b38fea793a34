"""`python -m fmnist.tune`: an equal-budget search per model, then the best and the default configuration
cross-validated on folds the search never validated on, and a report with the tuning section; and its nested mode,
one search per outer fold inside the fold's training part, judged on the fold."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from fmnist.core.cli import run_guarded
from fmnist.core.errors import ConfigError
from fmnist.tune import check_settings, open_comparison_study, record_comparison
from tests.helpers import compose, fmnist_lines, run_cli
from tests.helpers.fake_runs import write_predicted_run

needs_optuna = pytest.mark.skipif(importlib.util.find_spec("optuna") is None,
                                  reason="the sweep extra is not installed: pip install -e '.[sweep]'")
TINY = '["data.train_subset=600","data.batch_size=100","logger=csv","++trainer.limit_val_batches=2",' \
       '"++trainer.limit_test_batches=2"]'
COMMAND = ("models=[conv_maxpool,rnn]", "budget.n_trials=2", "budget.max_epochs=1", "evaluation.folds=[0,1]",
           f"overrides={TINY}")
NESTED = ("mode=nested", *COMMAND)


def tune(run_dir: Path, *arguments: str) -> dict:
    """`python -m fmnist.tune` as a user runs it, which must succeed; its comparison.json."""
    result = run_cli("fmnist.tune", *arguments, run_dir=run_dir)
    assert result.returncode == 0, result.output[-3000:]
    return json.loads((run_dir / "comparison.json").read_text())


@pytest.mark.cli
@needs_optuna
def test_two_models_tuned_with_one_budget_and_judged_on_held_out_folds(tmp_path: Path) -> None:
    run_dir = tmp_path / "comparison"
    record = tune(run_dir, *COMMAND)
    for model in ("conv_maxpool", "rnn"):
        entry = record["models"][model]
        assert entry["trials"] == {"complete": 2, "pruned": 0, "failed": 0}
        searched = [json.loads(path.read_text())
                    for path in sorted((run_dir / model / "search").glob("*/metrics.json"))]
        assert len(searched) == 2 and {(run["split_seed"], run["fold"]) for run in searched} == {(0, 0)}
        assert entry["search_best"] == pytest.approx(max(run["val/acc"] for run in searched))  # val, never test
        for kind in ("tuned", "default"):
            folds = [json.loads((run_dir / model / kind / f"fold_{k}" / "metrics.json").read_text()) for k in (0, 1)]
            assert {(run["split_seed"], run["fold"]) for run in folds} == {(1, 0), (1, 1)}  # held out from search
        tuned = yaml.safe_load((run_dir / model / "tuned" / ".hydra" / "overrides.yaml").read_text())
        assert all(f"{key}=" in " ".join(tuned) for key in entry["best_params"])
    report = (run_dir / "report" / "report.md").read_text()
    assert "## Tuning: the same budget for every model" in report and "### Which differences are real" in report
    assert "| conv_maxpool | rnn |" in report or "| rnn | conv_maxpool |" in report  # the tuned models, paired
    rows = [line for line in report.splitlines()
            if line.startswith(("| conv_maxpool | 2 / 0 / 0", "| rnn | 2 / 0 / 0"))]
    assert len(rows) == 2  # each model's budget, tuned and default CV and gain

    # committed as a worked example: `make results` rebuilds its report from the archived small files alone
    from fmnist.report.studies import main as studies_main

    results = tmp_path / "results"
    assert studies_main([str(results), "--archive", str(tmp_path), "--tables"]) == 0
    assert not list((results / "comparison" / "rnn" / "search").rglob("test_predictions.npz"))  # trials: figures only
    rebuilt = (results / "comparison" / "report" / "report.md").read_text()
    assert studies_main([str(results), "--tables"]) == 0
    assert (results / "comparison" / "report" / "report.md").read_text() == rebuilt
    assert [line for line in rebuilt.splitlines() if line.startswith("| rnn | 2 / 0 / 0")] == \
        [line for line in report.splitlines() if line.startswith("| rnn | 2 / 0 / 0")]


@pytest.mark.slow
@needs_optuna
def test_the_same_command_again_trains_nothing_and_overwrites_nothing(tmp_path: Path) -> None:
    """Slow (two whole comparisons): the rerun finds each study at its budget and each fold done."""
    run_dir = tmp_path / "comparison"
    assert run_cli("fmnist.tune", *COMMAND, run_dir=run_dir).returncode == 0
    first = {path: path.read_bytes() for path in run_dir.rglob("metrics.json")}
    again = run_cli("fmnist.tune", *COMMAND, run_dir=run_dir)
    assert again.returncode == 0, again.output[-3000:]
    assert sorted(path.name for path in (run_dir / "rnn" / "search").iterdir() if path.name.isdigit()) == ["0", "1"]
    assert {path: path.read_bytes() for path in run_dir.rglob("metrics.json")} == first
    assert json.loads((run_dir / "comparison.json").read_text())["models"]["rnn"]["trials"]["complete"] == 2


def test_a_model_without_a_search_space_is_one_line(tmp_path: Path, capsys) -> None:
    cfg = compose("tune", "models=[conv_maxpool,resnet]", output_dir=tmp_path)
    with pytest.raises(SystemExit) as exited:
        run_guarded(lambda: check_settings(cfg))
    assert exited.value.code == 2
    lines = fmnist_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "resnet has no search space (conf/search_space/resnet.yaml)" in lines[0]


@pytest.mark.parametrize(("override", "says"), [("budget.n_trials=0", "budget.n_trials: 0 is not a positive"),
                                                ("budget.pruner=sometimes", "not a pruner option"),
                                                ("evaluation.split_seed=0", "the search's split seed"),
                                                ("mode=sometimes", "mode: 'sometimes' is not a mode"),
                                                ("evaluation.folds=[0,5]", r"evaluation.folds: 5 is not a fold of 5"),
                                                ("evaluation.folds=[1,1]", "not a list of distinct folds"),
                                                ("search.fold=5", r"search.fold: 5 is not a fold.*0..4"),
                                                ("evaluation.num_folds=1", "evaluation.num_folds: 1 is not")])
def test_bad_settings_are_refused(override: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=says):
        check_settings(compose("tune", override, output_dir=tmp_path))


def test_another_budget_in_the_same_comparison_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    settings = check_settings(compose("tune", output_dir=tmp_path))
    record_comparison(tmp_path, settings, ["conv_maxpool"])
    before = (tmp_path / "comparison.json").read_text()
    other = check_settings(compose("tune", "budget.n_trials=4", output_dir=tmp_path))
    with pytest.raises(ConfigError, match="holds a comparison with other settings"):
        record_comparison(tmp_path, other, ["lstm"])
    assert (tmp_path / "comparison.json").read_text() == before
    record_comparison(tmp_path, settings, ["lstm"])  # the same budget: a model may join
    assert sorted(json.loads((tmp_path / "comparison.json").read_text())["models"]) == ["conv_maxpool", "lstm"]


@needs_optuna
def test_a_study_of_another_comparison_is_refused(tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    open_comparison_study(storage, "tune_lstm", "comparison A")
    with pytest.raises(ConfigError, match="belongs to comparison A"):
        open_comparison_study(storage, "tune_lstm", "comparison B")
    by_hand = optuna.create_study(study_name="tune_rnn", storage=storage, direction="maximize")
    by_hand.add_trial(optuna.trial.create_trial(value=0.5))
    with pytest.raises(ConfigError, match="belongs to another search"):
        open_comparison_study(storage, "tune_rnn", "comparison A")
    assert len(optuna.load_study(study_name="tune_rnn", storage=storage).trials) == 1


def test_a_copied_comparison_cannot_choose_folders_or_overrides(tmp_path: Path) -> None:
    """comparison.json and the study are data: the folders come from the model name, and a best trial's key or
    value outside the model's own search space (conf/search_space) never becomes an override."""
    from fmnist.core.errors import FmnistError
    from fmnist.tune import checked_params

    settings = check_settings(compose("tune", output_dir=tmp_path))
    (tmp_path / "comparison.json").write_text(json.dumps({"settings": settings, "models": {
        "lstm": {"tuned_dir": "../../elsewhere", "default_dir": "/etc"}}}))
    record = record_comparison(tmp_path, settings, ["lstm"])
    assert (record["models"]["lstm"]["tuned_dir"], record["models"]["lstm"]["default_dir"]) == ("lstm/tuned",
                                                                                              "lstm/default")
    assert checked_params("lstm", {"optimizer.lr": 1e-3, "model.net.hidden_size": 64}) == {
        "optimizer.lr": 1e-3, "model.net.hidden_size": 64}
    for hostile in ({"+callbacks.x._target_": "os.system"}, {"model.net.hidden_size": 100_000},
                    {"optimizer.lr": "1e-3"}):
        with pytest.raises(FmnistError, match="outside conf/search_space/lstm.yaml"):
            checked_params("lstm", hostile)


@pytest.mark.slow
@pytest.mark.cli
@needs_optuna
def test_nested_searches_never_see_their_outer_fold_and_a_rerun_trains_nothing(tmp_path: Path) -> None:
    """Slow (two models x two outer folds x (two trials + one fold), then the same command again)."""
    run_dir = tmp_path / "nested"
    record = tune(run_dir, *NESTED)
    assert record["settings"]["mode"] == "nested" and "split_seed" not in record["settings"]["search"]
    for model in ("conv_maxpool", "rnn"):
        for fold in (0, 1):
            outer = record["models"][model]["outer"][str(fold)]
            assert outer["trials"] == {"complete": 2, "pruned": 0, "failed": 0}
            trials = sorted((run_dir / model / f"outer_{fold}" / "search").glob("*/metrics.json"))
            assert len(trials) == 2 and outer["search_best"] == pytest.approx(
                max(json.loads(path.read_text())["val/acc"] for path in trials))
            for path in trials:  # the outer fold's partition, split again: inner fold 0 of 5 validates
                overrides = yaml.safe_load((path.parent / ".hydra" / "overrides.yaml").read_text())
                assert {f"data.fold={fold}", "data.split_seed=1", "data.inner_folds=5", "data.inner_fold=0"} <= \
                    set(overrides)
            judged = json.loads((run_dir / model / f"outer_{fold}" / "tuned" / f"fold_{fold}" / "metrics.json")
                                .read_text())
            assert (judged["split_seed"], judged["fold"]) == (1, fold)
    report = (run_dir / "report" / "report.md").read_text()
    assert "## Nested tuning: the selection bias, measured" in report and "### Per outer fold" in report
    assert "| conv_maxpool | rnn |" in report or "| rnn | conv_maxpool |" in report  # paired on the outer folds
    assert len([line for line in report.splitlines() if line.startswith("| rnn | 2 | 4 / 0 / 0 |")]) == 1

    first = {path: path.read_bytes() for path in run_dir.rglob("metrics.json")}
    again = run_cli("fmnist.tune", *NESTED, run_dir=run_dir)
    assert again.returncode == 0, again.output[-3000:]
    assert {path: path.read_bytes() for path in run_dir.rglob("metrics.json")} == first


def test_nested_settings_and_record(tmp_path: Path) -> None:
    """Nested mode may share the split seeds (its searches split each outer training part), records its mode and
    no search split seed, and is refused in a run dir that holds a held-out comparison."""
    settings = check_settings(compose("tune", "mode=nested", "evaluation.split_seed=0", output_dir=tmp_path))
    assert settings["mode"] == "nested" and settings["search"] == {"num_folds": 5, "fold": 0}
    record = record_comparison(tmp_path, settings, ["lstm"])
    assert record["models"]["lstm"] == {"model": "lstm"}  # its folders are per outer fold
    with pytest.raises(ConfigError, match="holds a comparison with other settings"):
        record_comparison(tmp_path, check_settings(compose("tune", output_dir=tmp_path)), ["lstm"])
    assert "mode" not in check_settings(compose("tune", output_dir=tmp_path))  # held-out settings as before


def _nested_comparison(root: Path) -> None:
    """A finished nested comparison as fmnist.tune leaves it (its runs written by hand): each outer fold of each
    model selected its own configuration, recorded in its fold's .hydra/overrides.yaml."""
    settings = check_settings(compose("tune", "mode=nested", "evaluation.folds=[0,1,2]", output_dir=root))
    chosen = {"conv_maxpool": [0.001, 0.003, 0.002], "lstm": [0.001, 0.001, 0.001]}
    figures = {"conv_maxpool": [(0.93, 0.91), (0.92, 0.915), (0.94, 0.92)],  # (inner best, outer val)
               "lstm": [(0.90, 0.89), (0.91, 0.895), (0.90, 0.90)]}
    models = {}
    for model, lrs in chosen.items():
        outer = {}
        for fold, (lr, (best, val)) in enumerate(zip(lrs, figures[model], strict=True)):
            tuned = root / model / f"outer_{fold}" / "tuned"
            write_predicted_run(tuned / f"fold_{fold}", model, fold, 5, val, val - 0.01)
            (tuned / ".hydra").mkdir()
            (tuned / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
                [f"model={model}", f"optimizer.lr={lr}", "data.num_folds=5", f"cv.folds=[{fold}]"]))
            outer[str(fold)] = {"trials": {"complete": 2, "pruned": 1, "failed": 0}, "search_best": best,
                                "best_params": {"optimizer.lr": lr, "data.batch_size": 64}, "cpu_seconds": 360.0}
        models[model] = {"model": model, "outer": outer, "cpu_seconds": 1080.0}
    (root / "comparison.json").write_text(json.dumps({"settings": settings, "models": models}))


def test_the_nested_report_measures_the_bias_of_each_outer_fold(tmp_path: Path) -> None:
    from fmnist.report.tuning import comparison_report

    _nested_comparison(tmp_path)
    collection = comparison_report(tmp_path)
    assert [(group.label, len(group.runs)) for group in collection.groups] == [("conv_maxpool", 3), ("lstm", 3)]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Nested tuning: the selection bias, measured" in report and "| conv_maxpool | lstm |" in report
    rows = [line for line in report.splitlines() if line.startswith(("| conv_maxpool |", "| lstm |"))]
    summary = next(row for row in rows if row.startswith("| conv_maxpool | 3 | 6 / 3 / 0 | 0.30 | 91.50 ["))
    assert "| 93.00 | +1.50 [" in summary  # mean inner best, mean bias (2.0, 0.5, 2.0 pp)
    assert "`data.batch_size=64 optimizer.lr=0.001..0.003`" in summary  # the selection moved between folds
    assert any(row.startswith("| lstm | 3 |") and "`data.batch_size=64 optimizer.lr=0.001`" in row for row in rows)
    assert "| conv_maxpool | 1 | 2 / 1 / 0 | 92.00 | 91.50 | +0.50 | 90.50 | " in report  # one outer fold's row
