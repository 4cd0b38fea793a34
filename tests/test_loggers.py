"""logger=many (TensorBoard, CSV, MLflow) and logger=wandb on tiny real trainings, offline: each writes the settings,
the per-epoch and final figures and the test confusion figure into the run dir; a missing package ends in one line
naming the extra."""

from __future__ import annotations

import json
import logging
import struct
import sys
from pathlib import Path

import pytest

from fmnist.core.cli import run_guarded
from fmnist.core.errors import ConfigError
from fmnist.cv import fold_config
from fmnist.training.loggers import build_loggers, logger_nodes
from tests.helpers import compose, read_metrics, run_cli, run_in_process

EXTRA = "optional extra: pip install -e '.[loggers]'"
TINY = ("data.train_subset=500", "data.batch_size=50", "trainer.max_epochs=2", "data.eval_batch_size=1000",
        "trainer.limit_test_batches=2", "data.verify_checksums=false")


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, nothing written to the home directory: the run commands inherit this environment."""
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": tmp_path / "wandb-config",
                        "WANDB_CACHE_DIR": tmp_path / "wandb-cache", "WANDB_DATA_DIR": tmp_path / "wandb-data"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_logger_many_writes_tensorboard_csv_and_mlflow(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """logger=many holds conf/logger/mlflow.yaml as it is, so this is logger=mlflow's test too (in-process)."""
    mlflow = pytest.importorskip("mlflow", reason=EXTRA)
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="fmnist"):
        metrics = run_in_process("train", "logger=many", *TINY, run_dir=run_dir)
    assert metrics == read_metrics(run_dir)
    assert list((run_dir / "tensorboard" / "fold_0").glob("events.out.tfevents.*"))
    assert "val/acc" in (run_dir / "csv" / "fold_0" / "metrics.csv").read_text().splitlines()[0]
    uri = f"sqlite:///{run_dir}/mlflow.db"
    assert f"mlflow ui --backend-store-uri {uri}" in caplog.text
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fmnist").experiment_id])
    assert run.info.run_name == "conv_maxpool-fold_0"
    assert run.data.params["model/name"] == "conv_maxpool" and run.data.params["trainer/max_epochs"] == "2"
    steps = [point.step for point in client.get_metric_history(run.info.run_id, "train/loss")]
    assert len(steps) == 3 and steps[0] < steps[1] <= steps[2]  # one point per epoch, then metrics.json's figure
    for key in ("test/acc", "val/acc", "test/f1", "val/class_f1/Shirt"):
        assert run.data.metrics[key] == pytest.approx(metrics[key])  # the latest value: metrics.json's figure
    assert run.data.metrics["params"] == metrics["params"]
    assert [artifact.path for artifact in client.list_artifacts(run.info.run_id)] == ["test_confusion.png"]
    assert (run_dir / "test_confusion.png").read_bytes()[:4] == b"\x89PNG"


def wandb_records(path: Path) -> list:
    """The records of W&B's offline run file: LevelDB's log format (32 KiB blocks of crc, length, type, data)."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending, records = path.read_bytes(), 7, b"", []  # after the ':W&B' header
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if left < 7 or (kind == 0 and length == 0):  # block padding
            position += left
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record or its last part
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.cli
def test_logger_wandb_runs_offline_into_the_run_dir(tmp_path: Path) -> None:
    """Through the command: W&B starts a service process of its own, which the run must leave behind cleanly."""
    pytest.importorskip("wandb", reason=EXTRA)
    result = run_cli("fmnist.train", "logger=wandb", *TINY, run_dir=tmp_path / "run")
    assert result.returncode == 0, result.output[-3000:]
    (offline_run,) = (result.run_dir / "wandb").glob("offline-run-*")
    assert f"wandb sync {offline_run}" in result.output
    config, history, summary = {}, [], {}
    for record in wandb_records(next(offline_run.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        items = {"config": record.config.update, "summary": record.summary.update,
                 "history": record.history.item}.get(kind, [])
        values = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}
        {"config": config, "summary": summary}.get(kind, {}).update(values)
        if kind == "history":
            history.append(values)
    metrics = result.metrics()
    assert config["model"]["name"] == "conv_maxpool" and config["trainer"]["max_epochs"] == 2
    assert len([row for row in history if "val/acc" in row]) >= 2  # per epoch, then the final figure
    assert summary["test/acc"] == pytest.approx(metrics["test/acc"])
    assert summary["val/acc"] == pytest.approx(metrics["val/acc"])
    assert list((offline_run / "files" / "media" / "images" / "test").glob("confusion_matrix*.png"))


def test_many_is_a_list_and_folds_share_each_store(tmp_path: Path) -> None:
    cfg = compose("train", "logger=many", "logger.mlflow=null", output_dir=tmp_path)
    assert [type(logger).__name__ for logger in build_loggers(cfg.logger)] == ["TensorBoardLogger", "CSVLogger"]
    assert build_loggers(compose("train", "logger=none").logger) is False
    fold_cfg = fold_config(compose("cv", "logger=many"), 1, tmp_path)
    tensorboard, csv, mlflow_node = logger_nodes(fold_cfg.logger)
    assert tensorboard.save_dir == csv.save_dir == str(tmp_path) and tensorboard.version == "fold_1"
    assert mlflow_node.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert mlflow_node.artifact_location == f"{tmp_path}/mlartifacts"


def test_missing_wandb_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now fails, as where it is not installed
    cfg = compose("train", "logger=wandb", output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"WandbLogger needs the wandb package.*pip install -e '\.\[loggers\]'"):
        build_loggers(cfg.logger)
    with pytest.raises(SystemExit) as exited:  # what the commands print: one line, exit 2
        run_guarded(lambda: build_loggers(cfg.logger))
    assert exited.value.code == 2
    assert capsys.readouterr().err == ("fmnist: error: logger: WandbLogger needs the wandb package, which is not "
                                       "installed. Fix: pip install -e '.[loggers]' (installs mlflow and wandb), "
                                       "or use logger=tensorboard\n")
