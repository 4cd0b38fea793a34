"""`python -m fmnist.report <dir> [<dir> ...] [--out DIR]`: report.md, leaderboard.csv and figures of the runs, in
`<last dir>/report/`: put your own runs last, after read-only baselines such as docs/results/study_a."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fmnist.core.cli import user_error
from fmnist.core.errors import FmnistError
from fmnist.report.build import build_report, nothing_valid
from fmnist.report.collect import collect


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist.report", description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories (searched recursively)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <last dir>/report; give your own runs last)")
    args = parser.parse_args(argv)
    missing = [str(directory) for directory in args.dirs if not directory.is_dir()]
    if missing:
        return user_error(f"not a directory: {', '.join(missing)}. Fix: pass run or sweep dirs, e.g. "
                          "multirun/<date>/<time>")
    out = args.out or args.dirs[-1] / "report"
    collection = collect(args.dirs)
    message = nothing_valid(collection, args.dirs)
    if message:
        return user_error(message)
    try:
        build_report(args.dirs, out, collection, protocols=True)
    except FmnistError as exc:
        return user_error(str(exc))
    print(f"report: {out / 'report.md'} ({len(collection.groups)} models, {len(collection.failures)} failed runs, "
          f"{len(collection.broken)} of them with broken files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
