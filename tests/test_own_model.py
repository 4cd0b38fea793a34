"""A user's own model, defined outside fmnist: listed, checked, cross-validated, reloaded from its checkpoint by its
registration, and reported beside committed-style baselines on the same folds (docs/own_model.md)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from fmnist.core.config_dir import CONF_DIR
from fmnist.core.errors import ConfigError
from fmnist.models.__main__ import main as models_main
from fmnist.models.catalog import model_names
from fmnist.report.__main__ import main as report_main
from tests.helpers import REPO, compose, fmnist_lines, run_guarded_in_process, run_in_process

BASELINES = REPO / "docs" / "results" / "study_a"
SUBSET = 512  # training images per fold: the baselines below are relabelled as runs of this subset

NET_SOURCE = '''
from torch import nn


class TinyUserNet(nn.Module):
    """A linear classifier over the pixels: the smallest model that trains."""

    def __init__(self, hidden: int = 0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        return self.net(x)
'''
MODEL_CONFIG = {"name": "tiny_user_net", "family": "cnn", "input": "image", "compile": False,
                "channels_last": False, "tta_flip": False, "net": {"_target_": "tiny_user_nets.TinyUserNet"}}


def write_user_model(root: Path, **changes: object) -> tuple[Path, Path]:
    """(config folder, code folder) of a model that lives outside fmnist, as a user's repository holds it."""
    code, conf = root / "code", root / "conf"
    code.mkdir(parents=True, exist_ok=True)
    (code / "tiny_user_nets.py").write_text(NET_SOURCE)
    (conf / "model").mkdir(parents=True, exist_ok=True)
    config = {**MODEL_CONFIG, **changes}
    (conf / "model" / f"{config.get('name', 'tiny_user_net')}.yaml").write_text(yaml.safe_dump(config))
    return conf, code


def user_cv_overrides(conf: Path) -> list[str]:
    return ["model=tiny_user_net", f"hydra.searchpath=[file://{conf}]", "data.num_folds=2",
            f"data.train_subset={SUBSET}", "trainer.max_epochs=1", "logger=none", "trainer.accelerator=cpu",
            "data.download=false", "+trainer.limit_val_batches=2"]


@pytest.fixture(scope="module")
def user_cv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The user's model cross-validated in-process on 2 folds of a subset: (run dir, config folder, code folder)."""
    root = tmp_path_factory.mktemp("own_model")
    conf, code = write_user_model(root)
    sys.path.insert(0, str(code))
    run_dir = root / "runs" / "tiny_user_net"
    overrides = user_cv_overrides(conf)
    run_in_process("cv", *overrides, run_dir=run_dir)
    (run_dir / ".hydra").mkdir()  # what Hydra records for the command line (the report groups runs by it)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    yield run_dir, conf, code
    sys.path.remove(str(code))


def committed_style(source: Path, destination: Path, model: str, num_folds: int, folds: list[int]) -> Path:
    """Baseline runs as docs/results holds them (metrics.json, test_predictions.npz, resolved_config.yaml,
    .hydra/overrides.yaml), copied from study A's committed small_conv and relabelled as runs on our folds."""
    for fold in folds:
        target = destination / f"fold_{fold}"
        target.mkdir(parents=True)
        for name in ("metrics.json", "test_predictions.npz", "resolved_config.yaml", "history.csv"):
            shutil.copyfile(source / f"fold_{fold}" / name, target / name)
        metrics = json.loads((target / "metrics.json").read_text())
        metrics.update(model=model, num_folds=num_folds, train_subset=SUBSET, fold=fold, split_seed=0)
        (target / "metrics.json").write_text(json.dumps(metrics))
    (destination / ".hydra").mkdir()
    (destination / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"experiment=study_a_{model}", f"data.num_folds={num_folds}"]))
    return destination


def pair_rows(report: str) -> dict[tuple[str, str], list[str]]:
    section = report.split("### Which differences are real", 1)[1].split("\n\n")[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()[2:]]
    return {(row[0], row[1]): row for row in rows}


def test_the_users_model_is_listed_beside_the_built_in_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    conf, code = write_user_model(tmp_path)
    monkeypatch.syspath_prepend(str(code))
    assert models_main(["tiny_user_net", "small_conv", f"hydra.searchpath=[file://{conf}]"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["tiny_user_net", "cnn", "image", "7,850", "7,840"]
    assert lines[2].split()[0] == "small_conv"
    assert models_main(["--json", "conv_maxpool", "tiny_user_net", "--searchpath", str(conf)]) == 0
    assert [info["name"] for info in json.loads(capsys.readouterr().out)] == ["conv_maxpool", "tiny_user_net"]
    assert "tiny_user_net" in model_names(searchpath=[f"file://{conf}"]) and "tiny_user_net" not in model_names()
    assert models_main(["tiny_user_net", f"hydra.searchpath=[file://{conf}"]) == 2  # Hydra's parser refuses it
    assert capsys.readouterr().err.startswith(f"fmnist: error: hydra.searchpath=[file://{conf}: not a Hydra override")


@pytest.mark.parametrize(("change", "expected"), [
    ({"family": "transformer"}, "fmnist: error: model.family: model config 'tiny_user_net': 'transformer' is not a "
                                "model family. Fix: use one of cnn, sequence"),
    ({"input": "pixels"}, "fmnist: error: model.input: model config 'tiny_user_net': 'pixels' is not an input kind"),
    ({"tta_flips": True}, "fmnist: error: model.tta_flips: model config 'tiny_user_net' has the unknown key(s) "
                          "tta_flips. Fix:"),
    ({"name": "other"}, "fmnist: error: model.name: model/tiny_user_net.yaml says name: other. Fix: use name: "
                        "tiny_user_net"),
])
def test_a_bad_user_model_config_is_one_line_in_the_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            change: dict, expected: str) -> None:
    conf, _ = write_user_model(tmp_path, **change)
    name = "tiny_user_net"
    if "name" in change:  # model/tiny_user_net.yaml saying name: other
        (conf / "model" / "other.yaml").rename(conf / "model" / "tiny_user_net.yaml")
    assert models_main([name, "--searchpath", str(conf)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected) and " Fix: " in err[0]


def test_a_missing_key_or_unimportable_class_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = {"_target_": "not_on_the_path.TinyUserNet"}  # a package nobody installed
    conf, _ = write_user_model(tmp_path, net=missing)
    assert models_main(["tiny_user_net", "--searchpath", str(conf)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fmnist: error: model 'tiny_user_net': cannot build not_on_the_path.TinyUserNet")
    assert "Fix: make its package importable" in err and "\n" not in err
    config = {key: value for key, value in MODEL_CONFIG.items() if key != "family"}
    (conf / "model" / "tiny_user_net.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"^model: model config 'tiny_user_net' lacks family\. Fix: "):
        from fmnist.training.config_checks import check_train_config

        check_train_config(compose("cv", "model=tiny_user_net", f"hydra.searchpath=[file://{conf}]"))


def test_training_a_bad_user_model_config_exits_2_with_one_line(tmp_path: Path) -> None:
    conf, _ = write_user_model(tmp_path, family="mlp")
    status, err = run_guarded_in_process("cv", "model=tiny_user_net", f"hydra.searchpath=[file://{conf}]",
                                         "logger=none", run_dir=tmp_path / "run")
    assert status == 2
    assert fmnist_lines(err) == [
        "fmnist: error: model.family: model config 'tiny_user_net': 'mlp' is not a model family. Fix: use one of "
        "cnn, sequence"]


def test_the_users_checkpoint_is_rebuilt_through_the_same_registration(user_cv: tuple[Path, Path, Path]) -> None:
    from fmnist.core.checkpoints import CheckpointError
    from fmnist.inference.checkpoint import load_model

    run_dir, conf, _ = user_cv
    checkpoint = next((run_dir / "fold_0" / "checkpoints").glob("best-*.ckpt"))
    with pytest.raises(CheckpointError, match=r"its model 'tiny_user_net' is not in the model catalog.*"
                                              r"hydra\.searchpath=\[file:///path/to/your/conf\]"):
        load_model(checkpoint)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose("eval", overrides=[f"ckpt_path={checkpoint}", f"hydra.searchpath=[file://{conf}]"],
                            return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # what hydra.main does for `python -m fmnist.eval ... hydra.searchpath=`
    try:
        loaded = load_model(checkpoint)
    finally:
        HydraConfig.instance().cfg = None
    assert loaded.name == "tiny_user_net" and type(loaded.net).__name__ == "TinyUserNet"
    assert str(loaded.config.model.net._target_) == "tiny_user_nets.TinyUserNet"


def test_the_users_model_is_ranked_among_baselines_on_the_same_folds(user_cv: tuple[Path, Path, Path],
                                                                    tmp_path: Path) -> None:
    run_dir, _, _ = user_cv
    summary = json.loads((run_dir / "cv_summary.json").read_text())
    assert summary["folds"] == [0, 1] and summary["ensemble"]["members"] == 2 and "split_seeds" not in summary
    baselines = tmp_path / "baselines"
    committed_style(BASELINES / "small_conv", baselines / "small_conv", "small_conv", 2, [0, 1])
    other = committed_style(BASELINES / "rnn", tmp_path / "other_folds" / "rnn", "rnn", 3, [0, 1, 2])
    before = sorted(path.relative_to(tmp_path) for path in baselines.rglob("*"))
    assert report_main([str(baselines), str(other.parent), str(run_dir)]) == 0
    assert sorted(path.relative_to(tmp_path) for path in baselines.rglob("*")) == before  # only read
    report = (run_dir / "report" / "report.md").read_text()  # the default: beside the runs given last
    rows = pair_rows(report)
    pairs = {frozenset(key): row for key, row in rows.items()}
    for baseline in ("small_conv",):
        row = pairs[frozenset({"tiny_user_net", baseline})]
        assert row[2].startswith(("+", "-")) and "[" in row[2]  # a paired difference with its interval
        assert row[4] != "–" and int(row[5]) + int(row[6]) > 0 and row[8] != "–"  # Holm-adjusted, McNemar
    assert pairs[frozenset({"tiny_user_net", "rnn"})][2] == "not comparable (different splits)"
    assert "## Training protocols" in report
    protocol = next(line for line in report.splitlines() if line.startswith("| tiny_user_net | 1 |"))
    assert "| Adam lr 0.001 |" in protocol
    assert "The protocols differ in: epochs" in report
    with (run_dir / "report" / "leaderboard.csv").open() as stream:
        assert {"tiny_user_net", "small_conv", "rnn"} == {row["model"] for row in csv.DictReader(stream)}
    assert (run_dir / "report" / "figures" / "forest.png").is_file()
    assert (run_dir / "report" / "figures" / "differences.png").is_file()
