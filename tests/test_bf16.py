"""bf16 autocast on the CPU through Lightning's precision plugin (`trainer.precision=bf16-mixed`): every model family
trains with it, eval and predict test at the precision the run used (so they reproduce its figures), export gives
an fp32 model, and the benchmark times bf16 against fp32 and says whether the CPU computes in bf16 natively."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest

from fmnist.bench.configs import compose_run, probe_trainer
from fmnist.bench.report import bf16_note
from fmnist.bench.switches import switch_report
from tests.helpers import TrainedRun, run_guarded_in_process, run_in_process, train_in_process

BF16_RUN = ("data.train_subset=2000", "trainer.max_epochs=1", "logger=none", "++trainer.limit_val_batches=2",
            "trainer.precision=bf16-mixed", "seed=0")


@pytest.fixture(scope="module")
def bf16_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedRun]:
    """A CNN and an LSTM (the row-sequence family), one short bf16 epoch each."""
    root = tmp_path_factory.mktemp("bf16")
    return {model: train_in_process(root / model, f"model={model}", *BF16_RUN) for model in ("conv_maxpool", "lstm")}


def test_every_family_trains_and_learns_in_bf16(bf16_runs: dict[str, TrainedRun]) -> None:
    for model, run in bf16_runs.items():
        assert run.metrics["status"] == "completed" and run.ckpt.is_file(), model
        assert run.metrics["test/acc"] > 0.3, (model, run.metrics["test/acc"])  # chance is 0.1; one short epoch


def test_eval_and_predict_test_as_the_bf16_run_did(bf16_runs: dict[str, TrainedRun], tmp_path: Path) -> None:
    for model, run in bf16_runs.items():
        evaluated = run_in_process("eval", f"ckpt_path={run.ckpt}", run_dir=tmp_path / f"eval_{model}")
        assert evaluated["test/acc"] == run.metrics["test/acc"], model  # auto: bf16-mixed, as training tested
        in_fp32 = run_in_process("eval", f"ckpt_path={run.ckpt}", "precision=32-true",
                                 run_dir=tmp_path / f"eval32_{model}")
        assert abs(in_fp32["test/acc"] - run.metrics["test/acc"]) < 0.01, model  # rounding, not another model
    predicted = run_in_process("predict", f"ckpt_path={bf16_runs['lstm'].ckpt}",
                               f"output={tmp_path / 'predictions.csv'}", run_dir=tmp_path / "predict")
    assert predicted["acc"] == pytest.approx(bf16_runs["lstm"].metrics["test/acc"], abs=1e-6)


def test_export_of_a_bf16_run_is_an_fp32_model_that_agrees(bf16_runs: dict[str, TrainedRun], tmp_path: Path) -> None:
    report = run_in_process("export", f"ckpt_path={bf16_runs['conv_maxpool'].ckpt}", "format=torchscript",
                            run_dir=tmp_path / "export")
    assert Path(report["file"]).is_file() and report["argmax_agreement"] >= 0.99


def test_an_unknown_precision_for_eval_is_one_line(bf16_runs: dict[str, TrainedRun], tmp_path: Path) -> None:
    status, stderr = run_guarded_in_process("eval", f"ckpt_path={bf16_runs['lstm'].ckpt}", "precision=bf17",
                                            run_dir=tmp_path / "eval")
    assert status == 2 and stderr.count("\n") == 1 and "precision: 'bf17' is not a precision" in stderr


def test_the_bench_times_bf16_against_fp32_side_by_side(tmp_path: Path) -> None:
    probe = probe_trainer(compose_run([], tmp_path))
    L.seed_everything(0, verbose=False)
    rows = switch_report(["study_a_conv_maxpool"], ["data.train_subset=2048"], probe, tmp_path, steps=4, warmup=1,
                         repeats=1, only=["bf16 autocast"])
    assert [row["switch"] for row in rows] == ["bf16 autocast"]
    assert rows[0]["overrides"] == ["trainer.precision=bf16-mixed"]
    assert rows[0]["baseline_ms_per_step"] > 0 and rows[0]["switched_ms_per_step"] > 0


@pytest.mark.parametrize(("native", "says"), [(True, "natively"), (False, "no native bf16"), (None, "unknown")])
def test_the_bench_says_whether_the_cpu_computes_in_bf16(native: bool | None, says: str) -> None:
    report = {"machine": {"device": "cpu", "cpu_native_bf16": native}, "switches": [{"switch": "bf16 autocast"}]}
    assert says in (bf16_note(report) or "")
    assert bf16_note({**report, "switches": [{"switch": "fused Adam"}]}) is None
    assert bf16_note({**report, "machine": {"device": "cuda:0", "cpu_native_bf16": native}}) is None
