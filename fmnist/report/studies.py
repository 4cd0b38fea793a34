"""`python -m fmnist.report.studies docs/results`: every study's report, and the table of all of them.

The study runs are committed under `docs/results/<study>/<model>/` (archived there from the run dirs with
`--archive <run root>`, which copies each finished run's metrics, history, predictions and configs, never checkpoints
or TensorBoard files; only regular files of a run file's size, and predictions that read back: a link in a run dir
never brings the file it names into docs/). This command rebuilds `docs/results/<study>/report/` from those files
alone, writes `docs/results/summary.md`, and puts the all-studies table between the results markers of README.md
and docs/models.md. Run files are read as data, as `python -m fmnist.report` reads them (fmnist.report.collect).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fmnist.core.atomic import write_text_atomic
from fmnist.core.cli import user_error
from fmnist.core.errors import DataError
from fmnist.core.limits import clip
from fmnist.core.predictions import predictions_from_bytes
from fmnist.core.run_files import (
    COMPARISON_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    PREDICTIONS_FILE,
    RESOLVED_CONFIG_FILE,
    SUMMARY_FILE,
    RunFileError,
    read_run_bytes,
)
from fmnist.report.build import build_report, nothing_valid
from fmnist.report.collect import Collection, collect
from fmnist.report.compare import model_stats
from fmnist.report.tables import summary_table as compact_table
from fmnist.report.tuning import comparison_report

KEPT_FILES = (METRICS_FILE, HISTORY_FILE, PREDICTIONS_FILE, SUMMARY_FILE, RESOLVED_CONFIG_FILE, OVERRIDES_FILE,
              COMPARISON_FILE)
BEGIN, END = "<!-- study results: begin (python -m fmnist.report.studies) -->", "<!-- study results: end -->"
COMMAND = "make results"
# A comparison folder whose report also reads runs committed in a study (named here, never by a file in the folder):
# folder -> (its title, the study runs it is paired with). The bf16 runs are study A's small_conv in bf16.
COMPARISONS = {"bf16_vs_fp32": ("bf16 autocast against fp32 (study A's small_conv, paired by fold)",
                                ("study_a/small_conv",))}


def finished(run_dir: Path) -> bool:
    """A run that wrote its metrics, a CV run dir that wrote its summary, or a tuned comparison's folder; a run still
    training has none of them."""
    return any((run_dir / name).is_file() for name in (METRICS_FILE, SUMMARY_FILE, COMPARISON_FILE))


def archive(source: Path, destination: Path) -> int:
    """Copy the kept files of every finished run below `source` into the same layout below `destination`
    (a run still training is left out, so archiving beside a running job copies no half run)."""
    copied = 0
    for name in KEPT_FILES:
        for path in sorted(source.rglob(Path(name).name)):
            relative = path.relative_to(source)
            if name.startswith(".hydra") and path.parent.name != ".hydra":
                continue
            if "report" in relative.parts:
                continue
            if name == PREDICTIONS_FILE and "search" in relative.parts:
                continue  # a tuned comparison's search trials: their figures are in metrics.json, 0.4 MB each saved
            if not finished(path.parent.parent if name.startswith(".hydra") else path.parent):
                continue
            try:
                data = read_run_bytes(path)
                if name == PREDICTIONS_FILE:
                    predictions_from_bytes(data, path)
            except (RunFileError, DataError) as exc:
                print(f"skipped {clip(path)}: {clip(exc)}", file=sys.stderr)
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            copied += 1
    return copied


def study_title(name: str) -> str:
    """'study_a' -> 'Study A'; any other folder name as it is."""
    prefix, _, letter = name.partition("_")
    return f"Study {letter.upper()}" if prefix == "study" and len(letter) == 1 else name


def study_dirs(results: Path) -> list[Path]:
    return sorted(path for path in results.iterdir() if path.is_dir() and any(path.rglob(METRICS_FILE)))


def summary_table(results: Path, collections: dict[Path, Collection] | None = None) -> str:
    """One row per model of every study (folders named study_*; others, such as evidence runs, get their own
    report only), ordered by study and then by CV accuracy."""
    models = []
    for directory in study_dirs(results):
        if not directory.name.startswith("study_"):
            continue
        collection = (collections or {}).get(directory) or collect([directory])
        found = [model_stats(group) for group in collection.groups]
        models += sorted(found, key=lambda model: -model.val.estimate)
    return compact_table(models)


def replace_block(path: Path, block: str) -> bool:
    """Swap the text between the markers; False (file untouched) where the markers are missing."""
    if not path.is_file():
        return False
    text = path.read_text()
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    write_text_atomic(path, f"{head}{BEGIN}\n{block}\n{END}{tail}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist.report.studies", description=__doc__)
    parser.add_argument("results", type=Path, help="the committed results folder, e.g. docs/results")
    parser.add_argument("--archive", type=Path, default=None, metavar="RUN_ROOT",
                        help="first copy the kept files of the runs below RUN_ROOT (e.g. multirun/studies)")
    parser.add_argument("--tables", nargs="*", type=Path, default=[Path("README.md"), Path("docs/models.md")],
                        help="files whose results block receives the all-studies table")
    args = parser.parse_args(argv)
    if args.archive is not None:
        if not args.archive.is_dir():
            return user_error(f"not a directory: {args.archive}. Fix: pass the run root, e.g. multirun/studies")
        print(f"archived {archive(args.archive, args.results)} files from {args.archive} to {args.results}")
    if not args.results.is_dir() or not study_dirs(args.results):
        return user_error(f"no study runs below {args.results}. Fix: run the studies (docs/results/README.md "
                          "gives the commands) and archive them with --archive multirun/studies")
    collections = {directory: collect([directory]) for directory in study_dirs(args.results)}
    message = nothing_valid(Collection([group for found in collections.values() for group in found.groups],
                                       [failure for found in collections.values() for failure in found.failures]),
                            [args.results])
    if message:
        return user_error(message)
    for directory, collection in collections.items():
        if (directory / COMPARISON_FILE).is_file():  # an equal-budget tuned comparison (python -m fmnist.tune)
            comparison_report(directory, intro=f"Generated by `{COMMAND}` from {COMPARISON_FILE} and the runs in "
                              "this folder; how they were made: [docs/results/README.md](../../README.md).")
            print(f"report: {directory / 'report' / 'report.md'}")
            continue
        title, paired = COMPARISONS.get(directory.name, (f"{study_title(directory.name)} at its own budget", ()))
        sources = [*(args.results / name for name in paired), directory]
        build_report(sources, directory / "report", collect(sources) if paired else collection, title=title,
                     protocols=True,
                     intro=f"Generated by `{COMMAND}` from the runs in this folder"
                           + "".join(f" and in docs/results/{name}" for name in paired)
                           + "; how they were made: [docs/results/README.md](../../README.md).")
        print(f"report: {directory / 'report' / 'report.md'}")
    table = summary_table(args.results, collections)
    block = (f"Generated by `{COMMAND}` (`python -m fmnist.report.studies docs/results`) from the runs committed "
             f"under docs/results/; each study's report (pairwise tests, figures) is in "
             f"docs/results/<study>/report/report.md.\n\n{table}")
    write_text_atomic(args.results / "summary.md", f"# Every study at its own budget\n\n{block}\n")
    for path in args.tables:
        print(f"{path}: {'table updated' if replace_block(path, block) else 'no results markers, left as is'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
