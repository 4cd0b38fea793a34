"""A run dir, sweep dir or report folder copied from someone else is data: a symbolic link or a FIFO planted in it
is refused before anything is written, so no file outside it changes (docs/security.md, "Links in run dirs")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from fmnist.core.output_dirs import CheckOutputDirs, UnsafeOutputDirError, check_output_dir
from fmnist.core.run_lock import hold_run_dir, release_run_dir
from fmnist.inference.images import Conversion, read_inputs
from fmnist.report.__main__ import main as report_main
from tests.conftest import TINY_RUN
from tests.helpers import TrainedRun, fmnist_lines, run_cli, run_guarded_in_process
from tests.helpers.fake_runs import write_run

SECRET = "the victim's file, which no fmnist command may change\n"
# What commands write into an existing run dir besides what the shared training run leaves (logger=none, in-process):
# Hydra's record and job logs, the loggers' folders, cv's summary and folds, eval's and the report's outputs.
WRITTEN_ELSEWHERE = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log", "cv.log",
                     "eval.log", "csv/fold_0/metrics.csv", "csv/fold_0/hparams.yaml", "tensorboard/fold_0",
                     "cv_summary.json", "fold_0/metrics.json", "fold_0", "predictions.csv", "confusion.png",
                     "report/report.md", "report/leaderboard.csv", "report/figures", "report")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim" / "important.txt"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


def plant(run_dir: Path, inside: str, victim: Path) -> Path:
    """A link at `inside` (a file, or a folder when its name has no suffix) to the victim's file or folder."""
    link = run_dir / inside
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim if Path(inside).suffix else victim.parent)
    return link


def files_a_run_writes(run_dir: Path) -> list[str]:
    found = {str(path.relative_to(run_dir)) for path in run_dir.rglob("*")}
    return sorted(found | set(WRITTEN_ELSEWHERE))


def test_a_link_at_any_file_a_run_writes_is_refused_before_writing(tiny_run: TrainedRun, tmp_path: Path,
                                                                    victim: Path, capsys) -> None:
    written = files_a_run_writes(tiny_run.run_dir)
    assert {".run.lock", "metrics.json", "history.csv", "checkpoints/last.ckpt", "test_predictions.npz",
            "resolved_config.yaml", "run_info.json"} <= set(written)
    for number, inside in enumerate(written):
        run_dir = tmp_path / f"copied_{number}"
        plant(run_dir, inside, victim)
        with pytest.raises(UnsafeOutputDirError, match=f"symbolic link to {victim.parent}.* at {inside}"):
            hold_run_dir(run_dir)  # what train and each cv fold do first
        assert not (run_dir / ".run.lock").exists() or inside == ".run.lock"
        # Hydra's callback, run before Hydra writes .hydra/ and the job log (single runs and sweeps alike)
        for hook, key in (("on_run_start", "run"), ("on_multirun_start", "sweep")):
            config = OmegaConf.create({"hydra": {key: {"dir": str(run_dir)}}})
            with pytest.raises(SystemExit) as exited:
                getattr(CheckOutputDirs(), hook)(config=config)
            assert exited.value.code == 2
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("fmnist: error:") and inside in lines[0]
    assert victim.read_text() == SECRET and sorted(victim.parent.iterdir()) == [victim]


def test_a_fifo_a_hard_linked_lock_and_a_linked_run_dir_are_refused(tmp_path: Path, victim: Path) -> None:
    fifo_dir = tmp_path / "fifo"
    (fifo_dir / "checkpoints").mkdir(parents=True)
    os.mkfifo(fifo_dir / "checkpoints" / "last.ckpt")  # a writer opening it would block forever
    with pytest.raises(UnsafeOutputDirError, match="a FIFO at checkpoints/last.ckpt"):
        check_output_dir(fifo_dir)
    hard = tmp_path / "hard"
    hard.mkdir()
    os.link(victim, hard / ".run.lock")  # truncating the lock would truncate the victim
    with pytest.raises(UnsafeOutputDirError, match="not a plain file of its own"):
        hold_run_dir(hard)
    linked = tmp_path / "linked_run"
    linked.symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(UnsafeOutputDirError, match="is a symbolic link"):
        hold_run_dir(linked)
    assert victim.read_text() == SECRET
    plain = tmp_path / "plain"
    hold_run_dir(plain)  # a new dir, or one without links, is held as before
    release_run_dir(plain)


@pytest.mark.cli
def test_train_and_resume_refuse_a_copied_run_dir_with_planted_links(tmp_path: Path, victim: Path) -> None:
    """The two holes as reported: the lock followed by train, and .hydra/*.yaml rewritten by Hydra on resume."""
    run_dir = tmp_path / "copied"
    plant(run_dir, ".run.lock", victim)
    result = run_cli("fmnist.train", *TINY_RUN, run_dir=run_dir)
    assert result.returncode == 2 and len(fmnist_lines(result.stderr)) == 1, result.output[-2000:]
    assert "symbolic link" in result.stderr and ".run.lock" in result.stderr

    resumed = tmp_path / "resumed"
    (resumed / ".hydra").mkdir(parents=True)
    (resumed / ".hydra" / "overrides.yaml").write_text("- model=conv_maxpool\n")
    for name in ("config.yaml", "hydra.yaml"):
        plant(resumed, f".hydra/{name}", victim)
    result = run_cli("fmnist.resume", str(resumed))
    assert result.returncode == 2 and len(fmnist_lines(result.stderr)) == 1, result.output[-2000:]
    assert ".hydra/" in result.stderr
    assert victim.read_text() == SECRET and not (run_dir / ".hydra").exists()


@pytest.mark.cli
def test_a_sweep_into_a_copied_sweep_dir_with_a_planted_link_writes_nothing(tmp_path: Path, victim: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    plant(sweep_dir, "1/cv.log", victim)  # the second job's log, which Hydra appends to
    result = run_cli("fmnist.cv", "-m", "seed=0,1", *TINY_RUN, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 2 and len(fmnist_lines(result.stderr)) == 1, result.output[-2000:]
    assert "1/cv.log" in result.stderr
    assert victim.read_text() == SECRET and sorted(path.name for path in sweep_dir.iterdir()) == ["1"]


@pytest.mark.parametrize("inside", ["report/leaderboard.csv", "report/figures", "report"])
def test_the_report_refuses_a_report_folder_with_a_planted_link(inside: str, tmp_path: Path, victim: Path,
                                                                 capsys) -> None:
    runs = tmp_path / "runs"
    write_run(runs / "a", "conv_maxpool", 0, 0.9, 0.89, None)
    plant(runs, inside, victim)
    assert report_main([str(runs)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "symbolic link" in lines[0] and lines[0].startswith("fmnist: error:")
    assert victim.read_text() == SECRET and sorted(victim.parent.iterdir()) == [victim]


def test_predict_skips_and_names_bad_entries_of_a_folder_and_predicts_the_rest(tiny_run: TrainedRun,
                                                                                fashion, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(fashion.test_images[index].numpy(), "L").save(folder / f"good_{index}.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")  # a link to itself: ELOOP when followed
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(folder / "pipe.png")  # opening it would block
    (folder / "sub.png").mkdir()  # a folder named like an image: not an input, not an error

    found = read_inputs(folder, Conversion())
    assert found.names == ["good_0.png", "good_1.png", "good_2.png"] and len(found.images) == 3
    assert {name for name, _ in found.skipped} == {"loop.png", "dangling.png", "pipe.png"}

    output = tmp_path / "predictions.csv"
    status, stderr = run_guarded_in_process("predict", f"ckpt_path={tiny_run.ckpt}", f"input={folder}",
                                            f"output={output}", run_dir=tmp_path / "run")
    assert status == 0, stderr
    assert [line.split(",")[0] for line in output.read_text().splitlines()[1:]] == found.names


def test_an_input_error_names_the_input_not_the_outputs(tiny_run: TrainedRun, tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    status, stderr = run_guarded_in_process("predict", f"ckpt_path={tiny_run.ckpt}", f"input={loop}",
                                            f"output={tmp_path / 'out.csv'}", run_dir=tmp_path / "run")
    assert status == 2 and len(fmnist_lines(stderr)) == 1 and "input" in stderr
    assert "outputs" not in stderr and "hydra.run.dir" not in stderr


def test_a_checkpoint_with_nothing_left_to_train_is_one_line(tiny_run: TrainedRun, tmp_path: Path) -> None:
    """tiny_run trained its one epoch: continuing its last checkpoint in a new run dir with the same max_epochs
    would test weights no file of that run holds, so it says so instead of reporting an empty best_ckpt."""
    run_dir = tmp_path / "again"
    status, stderr = run_guarded_in_process("train", *TINY_RUN, f"ckpt_path={tiny_run.last_ckpt}", run_dir=run_dir)
    assert status == 2 and len(fmnist_lines(stderr)) == 1, stderr
    assert "nothing left to train" in stderr and "trainer.max_epochs" in stderr and "fmnist.eval" in stderr
    assert not (run_dir / "metrics.json").exists()
