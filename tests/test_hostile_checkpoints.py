"""Checkpoints, run dirs and output paths made by someone else: data only, one line, nothing outside the run touched.

Each crafted file starts from a checkpoint fmnist wrote and changes one thing, as an attacker or a broken tool
would. Marker files beside the run prove that nothing outside it was created, changed or removed.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from fmnist.core.atomic import UnsafeOutputError, write_json_atomic
from fmnist.core.checkpoints import CHECKPOINT_CONFIG_KEY, CheckpointError
from fmnist.core.cli import EXIT_USER_ERROR
from fmnist.core.limits import DEFAULT_LIMITS, Limits
from fmnist.core.run_files import CHECKPOINT_DIR, OVERRIDES_FILE
from fmnist.inference.checkpoint import load_model
from fmnist.resume import ResumeError, resume_command
from fmnist.training.checkpoint_io import AtomicCheckpointIO
from tests.helpers import REPO, TrainedRun, compose, fmnist_lines, run_cli

Change = Callable[[dict[str, Any]], None]


def run_config(overrides: list[str], run_dir: Path) -> Any:
    return compose("train", "model=conv_maxpool", "data.train_subset=256", "trainer.max_epochs=1", "logger=none",
                   "trainer.accelerator=cpu", "data.download=false", "++trainer.limit_val_batches=2",
                   "++trainer.limit_test_batches=2", *overrides, output_dir=run_dir)


@pytest.fixture(scope="module")
def made(tiny_run: TrainedRun) -> Path:
    """A checkpoint fmnist itself wrote: one epoch of conv_maxpool, the suite's shared run (conftest.py)."""
    return tiny_run.ckpt


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the run with a marker file; every test checks it is exactly as it was."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious\n")
    return folder


def untouched(folder: Path) -> bool:
    names = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    return names == ["keep.txt"] and (folder / "keep.txt").read_text() == "precious\n"


def craft(source: Path, destination: Path, change: Change) -> Path:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    change(checkpoint)
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, destination)
    return destination


def net_of(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return checkpoint[CHECKPOINT_CONFIG_KEY]["model"]["net"]


def set_net(key: str, value: Any) -> Change:
    return lambda checkpoint: net_of(checkpoint).__setitem__(key, value)


def set_model(key: str, value: Any) -> Change:
    return lambda checkpoint: checkpoint[CHECKPOINT_CONFIG_KEY]["model"].__setitem__(key, value)


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and len(message) < 700, message[:2000]
    return message


# --- the model is rebuilt from the catalog, never by a target named in the file ------------------------------------

MARKER = "MADE_BY_THE_FILE"  # a folder os.makedirs would create, were the file's target ever called

HOSTILE_CONFIGS: dict[str, tuple[Callable[[Path], Change], str]] = {
    "another target": (lambda out: lambda c: net_of(c).update(_target_="os.makedirs", name=str(out / MARKER)),
                       "is not the catalog's class for model 'conv_maxpool'"),
    "nested target": (lambda out: set_net("channels", {"_target_": "os.makedirs", "name": str(out / MARKER)}),
                      "model.net.channels is not a plain value"),
    "_args_": (lambda out: set_net("_args_", [str(out / MARKER)]), "has the key '_args_'"),
    "_partial_": (lambda out: set_net("_partial_", True), "has the key '_partial_'"),
    "_convert_": (lambda out: set_net("_convert_", "all"), "has the key '_convert_'"),
    "interpolation": (lambda out: set_net("channels", "${oc.env:HOME}"), "no interpolation"),
    "unknown key": (lambda out: set_net("colour", 3), "has the key 'colour', which fmnist.models.ConvMaxPool does"),
    "mistyped net": (lambda out: set_model("net", "conv"), "no mapping at model.net"),
    "unknown model": (lambda out: set_model("name", "no_such_model"), "its model 'no_such_model' is not in the model"),
    "path in the name": (lambda out: set_model("name", "../../evil"), "is not a model config's name"),
    "megabyte name": (lambda out: set_model("name", "x" * 2**20), "characters)' is not a model config's name"),
    "bad input kind": (lambda out: set_model("input", "video"), "model.input 'video' is not the catalog's 'image'"),
    "huge size": (lambda out: set_net("channels", 10**6), "limits.max_params"),
    "bad value": (lambda out: set_net("channels", -3), "its config cannot build model 'conv_maxpool'"),
    "flag not a bool": (lambda out: set_model("tta_flip", "yes"), "model.tta_flip is 'yes', not true or false"),
    "split not an int": (lambda out: lambda c: c[CHECKPOINT_CONFIG_KEY]["data"].__setitem__("fold", "0; rm"),
                         "its data.fold is '0; rm', not an integer"),
    "config not a mapping": (lambda out: lambda c: c.__setitem__(CHECKPOINT_CONFIG_KEY, [1]), "not written by fmnist"),
    "non-tensor entry": (lambda out: lambda c: c["state_dict"].__setitem__("net.extra", "text"),
                         "entry 'net.extra' is a str, not a tensor"),
    "extra tensor": (lambda out: lambda c: c["state_dict"].__setitem__("net.extra", torch.zeros(2)),
                     "its weights do not fit model conv_maxpool"),
    "bad Lightning version": (lambda out: lambda c: c.__setitem__("pytorch-lightning_version", "two point six"),
                              "pytorch-lightning_version 'two point six' is not a version number"),
    "epoch not an int": (lambda out: lambda c: c.__setitem__("epoch", "3"), "its 'epoch' is a str, not int"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_a_checkpoint_never_chooses_what_is_built(case: str, made: Path, tmp_path: Path, outside: Path) -> None:
    change, expected = HOSTILE_CONFIGS[case]
    path = craft(made, tmp_path / "hostile.ckpt", change(outside))
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    message = one_line(caught.value)
    assert expected in message and message.startswith(f"ckpt_path {path}"), message
    assert untouched(outside) and not (outside / MARKER).exists()


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("num_folds", 10**9, "data.num_folds: 1000000000 folds exceed the 6000 images of the smallest class"),
    ("split_seed", -1, "data.split_seed: -1 is not between 0 and 2**32 - 1"),
    ("fold", 7, "data.fold: 7 is not a fold of 5"),
])
def test_the_split_a_checkpoint_records_is_checked_like_a_users_own(key: str, value: int, expected: str, made: Path,
                                                                    tmp_path: Path) -> None:
    from fmnist.core.errors import ConfigError
    from fmnist.inference.testset import official_test_batches

    path = craft(made, tmp_path / "split.ckpt", lambda c: c[CHECKPOINT_CONFIG_KEY]["data"].__setitem__(key, value))
    data = compose("eval", "data.download=false").data
    with pytest.raises(ConfigError) as caught:
        official_test_batches(load_model(path).config, data)
    assert one_line(caught.value).startswith(expected)


def test_a_checkpoint_fmnist_wrote_loads_and_a_missing_net_takes_the_catalogs_arguments(made: Path,
                                                                                        tmp_path: Path) -> None:
    model = load_model(made)
    assert model.name == "conv_maxpool" and model.input_kind == "image"
    assert model.config.model.net == {"_target_": "fmnist.models.ConvMaxPool", "channels": 32}
    bare = load_model(craft(made, tmp_path / "bare.ckpt", lambda c: c[CHECKPOINT_CONFIG_KEY]["model"].pop("net")))
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(bare.net(x), model.net(x))


def test_a_users_own_model_needs_their_search_path_on_the_command_line(made: Path, tmp_path: Path) -> None:
    """A catalog entry on hydra.searchpath is the user's choice; a name the file makes up is not enough."""
    path = craft(made, tmp_path / "mine.ckpt", set_model("name", "my_conv"))
    with pytest.raises(CheckpointError, match="hydra.searchpath=\\[file:///path/to/your/conf\\]"):
        load_model(path)


def test_the_checkpoint_container_is_checked_before_unpickling(made: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.ckpt"
    torch.save(torch.load(made, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="not a zip-format PyTorch checkpoint"):
        load_model(legacy)
    big = tmp_path / "big.ckpt"
    big.write_bytes(b"\0" * (2 * 2**20))
    with pytest.raises(CheckpointError, match=r"2 MB, over limits.max_checkpoint_mb=1. Fix: raise it"):
        load_model(big, limits=Limits(**{**DEFAULT_LIMITS.__dict__, "max_checkpoint_mb": 1}))


def deflated_copy(source: Path, destination: Path, padding_mb: int) -> Path:
    """The same archive with its entries deflated, and an extra entry that inflates to `padding_mb` of zeros."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as packed:
        for entry in original.infolist():
            packed.writestr(entry.filename, original.read(entry.filename))
        prefix = original.infolist()[0].filename.split("/")[0]
        with packed.open(f"{prefix}/data/999", "w", force_zip64=True) as stream:
            chunk = bytes(2**20)
            for _ in range(padding_mb):
                stream.write(chunk)
    return destination


# --- bounded cost, measured in a child process with an address-space limit -----------------------------------------

ADDRESS_SPACE = 5 * 2**30  # importing torch reserves about 3.5 GB of address space; the attacks need 2-40 GB more
CHILD = """
import sys
from fmnist.core.cli import run_guarded
from fmnist.inference.checkpoint import load_model
try:
    run_guarded(lambda: load_model(sys.argv[1]))
finally:
    # this program's own peak resident memory, in KB: VmHWM restarts at exec, while ru_maxrss keeps the peak of the
    # (large) test process this child was forked from
    print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def run_capped(*arguments: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run CHILD under the address-space cap; return it and its peak resident memory in MB."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    done = subprocess.run([sys.executable, "-c", CHILD, *arguments], cwd=REPO, capture_output=True, text=True,
                          preexec_fn=cap, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return done, int(done.stdout.split()[-1]) / 1024


@pytest.mark.cli
@pytest.mark.parametrize("case", ["compressed tensor", "huge config"])
def test_a_small_file_cannot_take_gigabytes(case: str, made: Path, tmp_path: Path) -> None:
    if case == "compressed tensor":  # 1 GB of zeros in a 1 MB file
        path, expected = deflated_copy(made, tmp_path / "bomb.ckpt", 1024), "refused, it holds compressed entries"
    else:  # an LSTM 10^5 wide: 40 GB of weights, if it were built before its weights were checked
        path = craft(made, tmp_path / "huge.ckpt", lambda c: c[CHECKPOINT_CONFIG_KEY]["model"].update(
            name="lstm", input="rows", net={"cell": "lstm", "hidden_size": 100_000}))
        expected = "over 100,000,000 parameter and buffer elements (limits.max_params)"
    assert path.stat().st_size < 3 * 2**20
    done, peak_mb = run_capped(str(path))
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-2000:]
    lines = fmnist_lines(done.stderr)
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert peak_mb < 1500, peak_mb  # the import of torch and Lightning alone is about 600 MB


# --- nothing in a file chooses a path --------------------------------------------------------------------------------

def hostile_callback_states(victim: Path, dirpath: Path) -> Change:
    """ModelCheckpoint states whose recorded files are the victim folder: Lightning deletes the k-th best on save."""
    def change(checkpoint: dict[str, Any]) -> None:
        for state in checkpoint["callbacks"].values():
            if "best_model_path" in state:
                target = f"{dirpath}/../../{victim.name}"  # inside dirpath by Lightning's check, which keeps '..'
                state.update(dirpath=str(dirpath), best_model_score=torch.tensor(0.0), kth_value=torch.tensor(0.0),
                             best_model_path=target, kth_best_model_path=target, last_model_path=target,
                             best_k_models={target: torch.tensor(0.0)})
    return change


def test_callback_states_of_a_foreign_checkpoint_are_dropped(made: Path, tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "run" / CHECKPOINT_DIR
    foreign = craft(made, tmp_path / "shared" / "their.ckpt", hostile_callback_states(outside, folder))
    loaded = AtomicCheckpointIO(folder).load_checkpoint(foreign)
    assert not any("best_model_path" in state for state in loaded["callbacks"].values())
    assert any("rows" in state for state in loaded["callbacks"].values())  # the epoch history is data, kept


def test_callback_states_of_this_runs_own_checkpoint_stay_inside_its_folder(made: Path, tmp_path: Path,
                                                                           outside: Path) -> None:
    folder = tmp_path / "run" / CHECKPOINT_DIR
    own = craft(made, folder / "last.ckpt", hostile_callback_states(outside, Path("/elsewhere/checkpoints")))
    states = [state for state in AtomicCheckpointIO(folder).load_checkpoint(own)["callbacks"].values()
              if "best_model_path" in state]
    assert states
    for state in states:
        assert state["dirpath"] == str(folder)
        recorded = [state["best_model_path"], state["kth_best_model_path"], state["last_model_path"],
                    *state["best_k_models"]]
        assert all(Path(path).parent == folder.resolve() for path in recorded), recorded


def test_checkpoint_removal_touches_only_plain_files_of_the_runs_folder(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "run" / CHECKPOINT_DIR
    folder.mkdir(parents=True)
    (folder / "best-epoch000.ckpt").write_bytes(b"old")
    (folder / "link.ckpt").symlink_to(outside / "keep.txt")
    io = AtomicCheckpointIO(folder)
    for path in (outside, f"{folder}/../../{outside.name}", outside / "keep.txt", folder / "link.ckpt"):
        io.remove_checkpoint(path)
    io.remove_checkpoint(folder / "best-epoch000.ckpt")
    assert untouched(outside) and sorted(p.name for p in folder.iterdir()) == ["link.ckpt"]


def test_continuing_from_a_hostile_checkpoint_deletes_nothing_outside_the_run(made: Path, tmp_path: Path,
                                                                            outside: Path) -> None:
    """The measured attack: Lightning removed the recorded k-th best 'checkpoint', a whole folder, at epoch end."""
    from fmnist.train import fit_and_test

    run_dir = tmp_path / "run"
    hostile = craft(made, tmp_path / "downloads" / "best.ckpt",
                    hostile_callback_states(outside, run_dir / CHECKPOINT_DIR))
    metrics = fit_and_test(run_config([f"ckpt_path={hostile}", "trainer.max_epochs=2"], run_dir), run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert Path(metrics["best_ckpt"]).parent == run_dir / CHECKPOINT_DIR
    assert untouched(outside) and hostile.is_file()


def bad_history(checkpoint: dict[str, Any]) -> None:
    for state in checkpoint["callbacks"].values():
        if "rows" in state:
            state["rows"] = "not rows"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda c: c.__setitem__("optimizer_states", [{"junk": 1}]), "its training state cannot be restored (KeyError"),
    (lambda c: c.__setitem__("loops", {"fit_loop": "x"}), "its training state cannot be restored (AttributeError"),
    (bad_history, "the checkpoint's epoch history is not a list of rows of numbers"),
], ids=["optimizer", "loops", "history"])
def test_continuing_from_a_malformed_training_state_is_one_line(change: Change, expected: str, made: Path,
                                                                tmp_path: Path) -> None:
    from fmnist.core.errors import FmnistError
    from fmnist.train import fit_and_test

    path = craft(made, tmp_path / "malformed.ckpt", change)
    with pytest.raises(FmnistError) as caught:
        fit_and_test(run_config([f"ckpt_path={path}", "trainer.max_epochs=2"], tmp_path / "run"), tmp_path / "run")
    assert expected in one_line(caught.value)


def test_export_names_its_file_from_a_checked_name(made: Path, tmp_path: Path, outside: Path) -> None:
    from fmnist.export import run_export

    cfg = compose("export", f"ckpt_path={craft(made, tmp_path / 'x.ckpt', set_model('name', '../x'))}",
                  "format=torchscript")
    with pytest.raises(CheckpointError, match="is not a model config's name"):
        run_export(cfg, tmp_path / "run")
    assert untouched(outside) and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("kind", ["symlink", "device", "folder"])
def test_an_output_that_is_not_a_regular_file_is_refused(kind: str, tmp_path: Path, outside: Path) -> None:
    target = {"symlink": tmp_path / "link.json", "device": Path(os.devnull), "folder": outside}[kind]
    if kind == "symlink":
        target.symlink_to(outside / "keep.txt")
    with pytest.raises(UnsafeOutputError, match="fmnist only replaces regular files"):
        write_json_atomic(target, {"a": 1})
    assert untouched(outside) and Path(os.devnull).is_char_device()
    assert kind != "symlink" or target.is_symlink()


# --- resume replays only what the command line would accept -------------------------------------------------------

def run_dir_with(tmp_path: Path, overrides: Any, raw: str | None = None) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / OVERRIDES_FILE).parent.mkdir(parents=True)
    (run_dir / OVERRIDES_FILE).write_text(raw if raw is not None else yaml.safe_dump(overrides))
    return run_dir


def test_resume_replays_plain_overrides(tmp_path: Path) -> None:
    run_dir = run_dir_with(tmp_path, ["model=lstm", "trainer.max_epochs=3", "ckpt_path=/elsewhere.ckpt"])
    command = resume_command(run_dir, ["trainer.max_epochs=5"])
    assert command[1:] == ["-m", "fmnist.train", "model=lstm", "trainer.max_epochs=3", "trainer.max_epochs=5",
                           f"hydra.run.dir={run_dir}", "ckpt_path=last"]


@pytest.mark.parametrize("override", ["+callbacks.evil._target_=os.system", "+callbacks.x={_target_:os.system}",
                                      "model.net._partial_=true", "seed=${oc.env:HOME}",
                                      "hydra.searchpath=[file:///tmp]", "hydra/launcher=joblib"])
def test_resume_replays_what_could_choose_code_only_when_given_again(override: str, tmp_path: Path) -> None:
    run_dir = run_dir_with(tmp_path, ["model=lstm", override])
    with pytest.raises(ResumeError) as caught:
        resume_command(run_dir)
    assert "could choose code or read the environment" in one_line(caught.value)
    assert f"python -m fmnist.resume {run_dir} '{override}'" in str(caught.value)
    assert override in resume_command(run_dir, [override])


@pytest.mark.parametrize(("raw", "expected"), [
    ("- !!python/object/apply:os.system ['touch MARKER']\n", "is not safe YAML (could not determine a constr"),
    ("- [unclosed\n", "is not safe YAML (while parsing"),
    ("model: lstm\n", "must be a list of override strings"),
    ("- 3\n- model=lstm\n", "must be a list of override strings"),
    ("- 'model=[lstm'\n", "is not a command-line override"),
    ("- model=lstm,rnn\n", "is a sweep, and resume continues one run"),
])
def test_resume_refuses_a_malformed_overrides_file(raw: str, expected: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from fmnist.resume import main

    run_dir = run_dir_with(tmp_path, None, raw)
    with pytest.raises(SystemExit) as caught:
        main([str(run_dir)])
    err = capsys.readouterr().err
    assert caught.value.code == EXIT_USER_ERROR and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "MARKER").exists() and not Path("MARKER").exists()


# --- the command line: one case, for the exit code and the one line -------------------------------------------------

@pytest.mark.cli
def test_eval_of_a_hostile_checkpoint_is_one_line_and_exit_2(made: Path, tmp_path: Path, outside: Path) -> None:
    change, _ = HOSTILE_CONFIGS["another target"]
    path = craft(made, tmp_path / "hostile.ckpt", change(outside))
    done = run_cli("fmnist.eval", f"ckpt_path={path}", run_dir=tmp_path / "e", timeout=300)
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert fmnist_lines(done.stderr) == [f"fmnist: error: ckpt_path {path}: its model.net._target_ "
                                                "'os.makedirs' is not the catalog's class for model 'conv_maxpool' "
                                                "(fmnist.models.ConvMaxPool); fmnist never builds a class a file names."
                                                " Fix: pass ckpt_path=<run dir> or <run dir>/checkpoints/best-epochNNN"
                                                ".ckpt of an fmnist training run (training also takes ckpt_path=last, "
                                                "to continue its own run)."]
    assert untouched(outside) and not (outside / MARKER).exists()
    assert not (tmp_path / "e" / "metrics.json").exists()
