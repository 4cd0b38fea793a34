"""Scaling out on existing engines: Lightning DDP (gloo on the CPU) and Hydra's submitit launcher."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fmnist.core.config_dir import CONF_DIR
from fmnist.training.builders import build_datamodule, build_module
from fmnist.training.devices import job_gpu
from tests.helpers import run_cli

QUICK = ["data.train_subset=2000", "trainer.max_epochs=1", "logger=none", "data.eval_batch_size=1000",
         "++trainer.limit_val_batches=2"]


# ddp_spawn starts its processes three times (fit, validate, test), each importing torch anew: over a minute here
@pytest.mark.cli
@pytest.mark.parametrize("strategy", ["ddp", pytest.param("ddp_spawn", marks=pytest.mark.slow)])
def test_ddp_two_cpu_processes_match_a_single_process_evaluation(strategy: str, tmp_path: Path) -> None:
    run_dir = tmp_path / strategy
    result = run_cli("fmnist.train", f"trainer={strategy}", "trainer.accelerator=cpu", "trainer.devices=2", *QUICK,
                        run_dir=run_dir)
    assert result.returncode == 0, result.output[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sum(map(sum, metrics["test/confusion"])) == 10_000  # each test image counted once, no padding
    assert metrics["test/acc"] > 0.6
    # ddp_spawn: the launching process ran no epoch itself; these come from rank 0's history.csv
    assert metrics["epochs"] == 1 and metrics["train/acc"] is not None and metrics["ms_per_step"] is not None
    assert not (run_dir / "test_predictions.npz").exists()  # rank 0 saw half the test set: no partial file

    cfg = OmegaConf.load(run_dir / "resolved_config.yaml")
    datamodule, module = build_datamodule(cfg), build_module(cfg)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    single = trainer.test(module, datamodule=datamodule, ckpt_path=metrics["best_ckpt"], verbose=False)[0]
    for key in ("test/acc", "test/precision", "test/recall", "test/f1", "test/loss"):
        assert single[key] == pytest.approx(metrics[key], abs=1e-6), key


@pytest.mark.cli
def test_submitit_local_sweep_runs_every_job(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra")
    sweep_dir = tmp_path / "sweep"
    result = run_cli("fmnist.train", "-m", "hydra/launcher=local", *QUICK, "++trainer.limit_test_batches=2", "seed=1,2",
                        f"hydra.sweep.dir={sweep_dir}", run_dir=tmp_path / "unused")
    assert result.returncode == 0, result.output[-3000:]
    seeds = sorted(json.loads((sweep_dir / str(job) / "metrics.json").read_text())["seed"] for job in (0, 1))
    assert seeds == [1, 2]


def test_slurm_launcher_config_carries_the_usual_knobs() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert {"gpus_per_node", "timeout_min", "mem_gb", "cpus_per_task", "nodes"} <= set(launcher)


def test_each_parallel_job_gets_its_own_gpu() -> None:
    assert [job_gpu(job, gpu_count=4)[0] for job in range(6)] == [0, 1, 2, 3, 0, 1]
    assert job_gpu(3, gpu_count=0) == [0]


def test_gpu_per_job_picks_the_gpu_when_the_trainer_is_built() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["trainer=gpu_per_job"])
    arguments = OmegaConf.to_container(cfg.trainer, resolve=True)  # no custom resolver needed
    # build_trainer instantiates the resolved trainer config; a partial runs that step without a Trainer.
    assert instantiate(arguments, _partial_=True).keywords["devices"] == job_gpu()
