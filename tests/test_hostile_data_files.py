"""Files are data: hostile images, IDX files and run dirs end in one line (or are listed as broken), never in a
traceback, a decoder's gigabytes, or a file written outside the run."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fmnist.core.errors import DataError
from fmnist.core.limits import DEFAULT_LIMITS
from fmnist.core.predictions import read_predictions, write_predictions
from fmnist.data.idx import IMAGES_MAGIC, LABELS_MAGIC, IdxSpec, load_checked
from fmnist.inference.images import Conversion, ImageTooLarge, read_inputs
from fmnist.report.__main__ import main as report_main
from fmnist.report.collect import collect
from fmnist.report.studies import archive
from tests.helpers import REPO
from tests.helpers.fake_runs import leaderboard, write_predicted_run, write_run

PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS  # 89,478,485: Pillow warns above it, refuses above twice it


# --- crafting --------------------------------------------------------------------------------------------------

def bomb_png(width: int, height: int) -> bytes:
    """A grey PNG of zeros: ~1 KB per MB of pixels, so 89M pixels take 87 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\x00" * (width + 1)  # filter byte + pixels
    rows_per_block = max(1, (4 << 20) // len(row))
    idat = b"".join(packer.compress(row * min(rows_per_block, height - top))
                    for top in range(0, height, rows_per_block)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def idx_header(magic: int, *dims: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(dim.to_bytes(4, "big") for dim in dims)


def long_gzip_idx(count: int, extra_mb: int) -> bytes:
    """A gzip IDX whose header says `count` images but whose content goes on for `extra_mb` MB of zeros (gzip
    members concatenate into one stream: 64 MB of zeros packs into 64 KB, repeated)."""
    zeros = gzip.compress(bytes(64 << 20), 9)
    return gzip.compress(idx_header(IMAGES_MAGIC, count, 28, 28) + bytes(count * 784)) + zeros * (extra_mb // 64)


def npy(array: np.ndarray | None = None, header: dict | None = None, data: bytes = b"") -> bytes:
    """An .npy member: a real array, or a bare header (any shape and dtype it claims) followed by `data`."""
    buffer = io.BytesIO()
    if array is not None:
        np.save(buffer, array, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(data)
    return buffer.getvalue()


def write_npz(path: Path, **members: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive_file:
        for name, content in members.items():
            archive_file.writestr(f"{name}.npy", content)


def good_members(count: int = 10) -> dict[str, bytes]:
    labels = np.arange(count, dtype=np.uint8) % 10
    return {"labels": npy(labels), "predicted": npy(labels), "probabilities": npy(np.eye(10, dtype=np.float32)[labels])}


@pytest.fixture
def no_stray_files(tmp_path: Path):
    """Nothing may be created next to the test's tmp_path or in the working directory (the repository)."""
    def listing() -> set[str]:
        return {str(path) for folder in (tmp_path.parent, Path.cwd(), REPO) for path in folder.iterdir()}

    before = listing()
    yield
    assert listing() - before == set()


def one_line(message: str) -> None:
    assert "\n" not in message and len(message) < 600 and "Traceback" not in message


# --- images ----------------------------------------------------------------------------------------------------

def test_an_image_over_the_pixel_cap_is_refused_before_decoding(tmp_path: Path, no_stray_files) -> None:
    (tmp_path / "big.png").write_bytes(bomb_png(300, 200))
    limits = dataclasses.replace(DEFAULT_LIMITS, max_image_pixels=50_000)
    with pytest.raises(ImageTooLarge) as caught:
        read_inputs(tmp_path / "big.png", Conversion(), limits)
    one_line(str(caught.value))
    assert "300x200 = 60,000 pixels" in str(caught.value) and "limits.max_image_pixels=N" in str(caught.value)
    # in a folder it ends the run too: a partial CSV would hide the missing image
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.new("L", (28, 28)).save(folder / "small.png")
    (folder / "big.png").write_bytes(bomb_png(300, 200))
    with pytest.raises(ImageTooLarge, match="limits.max_image_pixels"):
        read_inputs(folder, Conversion(), limits)
    assert read_inputs(folder, Conversion()).names == ["big.png", "small.png"]  # the default cap lets it through


def test_a_folder_over_the_image_cap_is_refused_before_reading(tmp_path: Path, no_stray_files) -> None:
    for index in range(4):
        (tmp_path / f"{index}.png").write_bytes(b"never opened")
    with pytest.raises(DataError) as caught:
        read_inputs(tmp_path, Conversion(), dataclasses.replace(DEFAULT_LIMITS, max_images=3))
    one_line(str(caught.value))
    assert "more than 3 image files" in str(caught.value) and "limits.max_images=N" in str(caught.value)


def test_a_postscript_file_named_png_is_never_handed_to_ghostscript(tmp_path: Path, no_stray_files) -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 0 0 moveto 28 28 lineto stroke\n%%EOF\n"
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "shirt.png").write_bytes(eps)
    Image.new("L", (28, 28), 200).save(folder / "real.png")
    assert Image.open(folder / "shirt.png").format == "EPS"  # what Pillow alone would make of it
    found = read_inputs(folder, Conversion())
    assert found.names == ["real.png"] and [name for name, _ in found.skipped] == ["shirt.png"]
    one_line(found.skipped[0][1])
    assert "cannot be read as an image" in found.skipped[0][1]


# --- IDX -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("content", "message"),
    [
        (idx_header(IMAGES_MAGIC, 2_000_000, 28, 28), "declares 2,000,000 items, more than the cap limits.max_images"),
        (idx_header(IMAGES_MAGIC + 1, 1, 28, 28, 1) + bytes(784), "magic number 2052, expected 2051"),
        (idx_header(LABELS_MAGIC, 5) + bytes(5), "magic number 2049, expected 2051"),
        (idx_header(IMAGES_MAGIC, 1, 64, 64) + bytes(64 * 64), r"images are \(64, 64\), expected 28x28"),
        (idx_header(IMAGES_MAGIC, 2, 28, 28) + bytes(784), "truncated"),
        (idx_header(IMAGES_MAGIC, 1, 28, 28) + bytes(785), "holds more data than its header"),
        (idx_header(IMAGES_MAGIC, 1, 28)[:10], "header truncated"),
    ],
)
def test_a_bad_idx_input_is_one_line(tmp_path: Path, content: bytes, message: str, no_stray_files) -> None:
    for path, data in ((tmp_path / "x-idx3-ubyte", content), (tmp_path / "x-idx3-ubyte.gz", gzip.compress(content))):
        path.write_bytes(data)
        with pytest.raises(DataError, match=message) as caught:
            read_inputs(path, Conversion())
        one_line(str(caught.value))
        assert str(path) in str(caught.value) and "Fix:" in str(caught.value)


def test_an_official_file_is_checked_against_its_spec_before_its_data(tmp_path: Path, no_stray_files) -> None:
    spec = IdxSpec("small", LABELS_MAGIC, 4, md5="0" * 32)
    cases = {"count": (idx_header(LABELS_MAGIC, 4_000_000_000), "holds 4,000,000,000 items, expected 4"),
             "longer": (idx_header(LABELS_MAGIC, 4) + bytes(4 + 1_000_000), "holds more data than its header")}
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.gz"
        path.write_bytes(gzip.compress(content))
        with pytest.raises(DataError, match=message) as caught:
            load_checked(path, spec, verify_checksum=False)
        one_line(str(caught.value))
        assert "fetch the data again" in str(caught.value)


CAPPED_CHILD = """
import json, resource, sys
from pathlib import Path
from fmnist.inference.images import Conversion, read_inputs

def status_kb(field):  # this program's own figures: VmHWM restarts at exec (ru_maxrss keeps the forking parent's)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))

limit = status_kb("VmSize") * 1024 + int(sys.argv[1])  # what the imports (torch: ~3.2 GB) hold, plus a budget
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = {}
for name in sys.argv[2:]:
    before = status_kb("VmHWM")
    try:
        read_inputs(Path(name), Conversion())
        outcome = "accepted"
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    results[name] = {"outcome": outcome, "peak_mb": status_kb("VmHWM") / 1024,
                     "grew_mb": (status_kb("VmHWM") - before) / 1024}
print(json.dumps(results))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.cli
def test_small_files_that_inflate_to_gigabytes_cost_almost_nothing(tmp_path: Path, no_stray_files) -> None:
    """Before the caps, each of these took 4.6 GB (peak RSS); the child may add only 512 MB of address space."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(9459, 9459))  # 89,472,681 pixels, just under Pillow's own limit
    assert 9459 * 9459 < PILLOW_LIMIT and bomb.stat().st_size < 100_000
    long_idx = tmp_path / "long-idx3-ubyte.gz"
    long_idx.write_bytes(long_gzip_idx(10, 2048))  # header: 10 images (7,840 bytes); content: 2 GB more
    assert long_idx.stat().st_size < 2_500_000
    done = subprocess.run([sys.executable, "-c", CAPPED_CHILD, str(512 << 20), str(bomb), str(long_idx)],
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    print(json.dumps(results, indent=1))  # -s shows the measured peaks
    assert results[str(bomb)]["outcome"].startswith("ImageTooLarge: ")
    assert "9459x9459 = 89,472,681 pixels, more than the cap limits.max_image_pixels" in results[str(bomb)]["outcome"]
    assert results[str(long_idx)]["outcome"].startswith("DataError: ")
    assert "holds more data than its header's shape (10, 28, 28)" in results[str(long_idx)]["outcome"]
    for found in results.values():
        one_line(found["outcome"])
        assert found["grew_mb"] < 64, found


# --- run dirs for the report -----------------------------------------------------------------------------------

def _metrics(directory: Path) -> dict:
    return json.loads((directory / "metrics.json").read_text())


def _set_metrics(directory: Path, **changes: object) -> None:
    (directory / "metrics.json").write_text(json.dumps({**_metrics(directory), **changes}))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two good folds of `lstm` (val 0.80 and 0.84); every test adds hostile runs beside them."""
    for fold, val in enumerate((0.80, 0.84)):
        write_run(tmp_path / "runs" / f"good{fold}", "lstm", fold, val, 0.9, ["model=lstm", f"data.fold={fold}"])
    return tmp_path / "runs"


def _report(sweep: Path) -> tuple[str, list[dict[str, str]]]:
    assert report_main([str(sweep), "--out", str(sweep.parent / "out")]) == 0
    return (sweep.parent / "out" / "report.md").read_text(), leaderboard(sweep.parent / "out")


def _failure_rows(report: str) -> list[str]:
    return [line for line in report.split("## Failed runs", 1)[1].splitlines() if line.startswith("| [")]


BROKEN_METRICS = {
    "a list": ([1, 2], "holds a JSON list, expected an object"),
    "not json": ("{'val/acc': 0.9", "is not valid JSON"),
    "a string val/acc": ({"val/acc": "0.99"}, "val/acc is '0.99', expected a finite number"),
    "a list val/acc": ({"val/acc": [0.99]}, "val/acc is [0.99], expected a finite number"),
    "NaN val/acc": ({"val/acc": float("nan")}, "val/acc is nan, expected a finite number"),
    "inf test/acc": ({"test/acc": float("inf")}, "test/acc is inf, expected a finite number"),
    "a share above 1": ({"val/acc": 99.0}, "val/acc is 99.0, expected a share in [0, 1]"),
    "a string fold": ({"fold": "zero"}, "fold is 'zero', expected an integer"),
    "one fold": ({"num_folds": 1}, "num_folds is 1, expected an integer >= 2"),
    "a ragged confusion": ({"test/confusion": [[1, 2], [3]]}, "test/confusion is not a 10x10 list of lists"),
    "a megabyte model name": ({"model": "m" * 1_000_000}, "(1,000,000 characters)' is not a model config's name"),
}


BAD_OVERRIDES = {
    "a python tag": ("!!python/object/apply:os.system ['touch PWNED']\n",
                     "is not safe YAML (could not determine a constructor for the tag"),
    "bad yaml": ("- model=lstm\n- [unclosed\n", "is not safe YAML (while parsing"),
    "a mapping": ("model: lstm\n", "holds a dict, expected a list of overrides"),
    "a number": ("- model=lstm\n- 3\n", "holds 3, expected only strings"),
    "a nested mapping": ("- {a: 1}\n", "holds {'a': 1}, expected only strings"),
}


def test_broken_run_files_are_listed_and_kept_out_of_every_mean(sweep: Path, no_stray_files) -> None:
    """One report over every kind of broken metrics.json and .hydra/overrides.yaml beside two good folds."""
    for index, (change, _) in enumerate(BROKEN_METRICS.values()):
        bad = sweep / f"metrics{index}"
        write_run(bad, "lstm", 2, 0.5, 0.5, ["model=lstm", "data.fold=2"])
        if isinstance(change, dict):
            _set_metrics(bad, **change)
        else:
            (bad / "metrics.json").write_text(change if isinstance(change, str) else json.dumps(change))
    pwned = sweep.parent / "pwned"
    for index, (content, _) in enumerate(BAD_OVERRIDES.values()):
        write_run(sweep / f"overrides{index}", "lstm", 2, 0.5, 0.5, [])
        (sweep / f"overrides{index}" / ".hydra" / "overrides.yaml").write_text(content.replace("PWNED", str(pwned)))
    report, rows = _report(sweep)
    assert [(row["model"], row["runs"], float(row["val_acc_mean"])) for row in rows] == [
        ("lstm", "2", pytest.approx(0.82))]  # the two good folds alone
    failures = {row.split("](", 1)[0].removeprefix("| ["): row for row in _failure_rows(report)}
    assert len(failures) == len(BROKEN_METRICS) + len(BAD_OVERRIDES)
    for index, (kind, (_, reason)) in enumerate(BROKEN_METRICS.items()):
        assert "| broken metrics.json: " in failures[f"metrics{index}"] and reason in failures[f"metrics{index}"], kind
    for index, (kind, (_, reason)) in enumerate(BAD_OVERRIDES.items()):
        assert f"| broken .hydra/overrides.yaml: {reason}" in failures[f"overrides{index}"], kind
    assert f"{len(failures)} run(s) with broken files" in report
    assert len(report) < 100_000 and not pwned.exists()  # the megabyte name is clipped; no code ran


def test_overrides_above_the_given_directory_are_not_read(tmp_path: Path, no_stray_files) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("!!python/name:os.system\n")  # planted above the runs
    write_run(tmp_path / "runs" / "0", "lstm", 0, 0.8, 0.8, None)
    assert [group.overrides for group in collect([tmp_path / "runs"]).groups] == [()]


def test_unusable_history_and_predictions_are_ignored_with_the_reason(sweep: Path, no_stray_files) -> None:
    for fold in range(2):
        write_predicted_run(sweep / f"p{fold}", "cnn", fold, 5, 0.9, 0.9)
    (sweep / "p0" / "history.csv").write_text("epoch,val/acc\n0,high\n")
    (sweep / "good0" / "history.csv").write_text(",".join(["a"] * 200_000) + "\n")  # pandas: minutes
    (sweep / "good1" / "history.csv").write_text("epoch,val/acc\n0,inf\n")
    write_npz(sweep / "p1" / "test_predictions.npz", **{**good_members(), "labels": npy(np.arange(11) % 10)})
    report, rows = _report(sweep)
    assert {row["model"]: row["runs"] for row in rows} == {"cnn": "2", "lstm": "2"}  # every run still counts
    failures = "\n".join(_failure_rows(report))
    assert "ignored history.csv: is not a CSV of numbers (could not convert string to float: 'high')" in failures
    assert "ignored history.csv: row 2 has 1 fields, the header 200000" not in failures  # no data row: no curve
    assert "ignored history.csv: is not a CSV of numbers (inf is infinite)" in failures
    assert "ignored test_predictions.npz: labels, predicted and probabilities differ in length (10, 11)" in failures


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ({**good_members(), "labels": npy(np.arange(11) % 10)}, r"differ in length \(10, 11\)"),
        ({**good_members(), "probabilities": npy(np.zeros((10, 3), np.float32))},
         r"shape \(10, 3\), expected \(N, 10\)"),
        ({**good_members(), "predicted": npy(np.zeros(10, np.float32))}, "dtype float32, expected integers"),
        ({**good_members(), "labels": npy(np.array([{"run": "code"}] * 10, dtype=object))}, "holds Python objects"),
        ({**good_members(), "probabilities": npy(header={"descr": "<f8", "fortran_order": False,
                                                         "shape": (10 ** 9, 10)}, data=b"\x00" * 80)},
         "holds 1,000,000,000 images, expected 1 to 10,000"),
        ({**good_members(), "extra": npy(np.zeros(1))}, "expected exactly labels, predicted and probabilities"),
        ({**good_members(), "labels": npy(np.full(10, 12, np.uint8))}, "labels holds a class outside 0-9"),
        ({**good_members(), "probabilities": npy(np.full((10, 10), np.nan, np.float32))}, "NaN or infinity"),
        (None, "cannot be read"),
    ],
)
def test_bad_predictions_are_one_line(tmp_path: Path, members: dict | None, reason: str, no_stray_files) -> None:
    path = tmp_path / "test_predictions.npz"
    if members is None:
        path.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        write_npz(path, **members)
    with pytest.raises(DataError, match=reason) as caught:
        read_predictions(path)
    one_line(str(caught.value))
    assert str(caught.value).startswith(f"{path}: ") and "Fix:" in str(caught.value)


def test_predictions_as_written_still_read_back(tmp_path: Path) -> None:
    probabilities = np.random.default_rng(0).dirichlet(np.ones(10), 10_000).astype(np.float32)
    write_predictions(tmp_path / "p.npz", probabilities, np.arange(10_000) % 10)
    found = read_predictions(tmp_path / "p.npz")
    assert found.labels.dtype == np.int64 and np.array_equal(found.probabilities, probabilities)
    assert np.array_equal(found.predicted, probabilities.argmax(axis=1))


def test_links_and_fifos_in_a_run_dir_are_refused_unread(sweep: Path, tmp_path: Path, no_stray_files) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"model": "secret_model", "status": "failed", "error": "the secret"}))
    (sweep / "linked").mkdir()
    (sweep / "linked" / "metrics.json").symlink_to(secret)
    (sweep / "fifo").mkdir()
    os.mkfifo(sweep / "fifo" / "metrics.json")  # reading it would wait forever
    report, _ = _report(sweep)
    rows = _failure_rows(report)
    assert "the secret" not in report and "secret_model" not in report
    assert any("(../runs/linked)" in row and "broken metrics.json: is a symbolic link" in row for row in rows)
    assert any("(../runs/fifo)" in row and "broken metrics.json: is not a regular file" in row for row in rows)
    copied = tmp_path / "archive"
    archive(sweep, copied)
    assert not (copied / "linked").exists() and (copied / "good0" / "metrics.json").is_file()


def test_a_report_with_nothing_valid_exits_2_with_one_line(tmp_path: Path, capsys, no_stray_files) -> None:
    write_run(tmp_path / "runs" / "0", "lstm", 0, 0.8, 0.8, None)
    _set_metrics(tmp_path / "runs" / "0", **{"val/acc": float("nan")})
    write_run(tmp_path / "runs" / "1", "lstm", 1, 0.8, 0.8, None)
    (tmp_path / "runs" / "1" / ".hydra").mkdir()
    (tmp_path / "runs" / "1" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump({"not": "a list"}))
    assert report_main([str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err.strip()
    one_line(error)
    assert error.startswith("fmnist: error: no valid run below ") and "2 run(s) with broken files" in error
    assert "val/acc is nan" in error and "Fix:" in error
    assert not (tmp_path / "runs" / "report").exists()
