"""`python -m fmnist.data [--data-dir DIR] [--no-download]`: make sure the data is there and valid.
Exit 0 when it is, 3 when it is missing (`make data` then installs the Debian package), 1 when it is corrupt."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmnist.core.cli import user_error
from fmnist.core.errors import DataError
from fmnist.data.sources import SYSTEM_DATA_DIR, candidate_folders, find_complete_folder, load_fashion_mnist

EXIT_MISSING = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist.data", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", type=Path)
    parser.add_argument("--no-download", action="store_true", help="only look for local files")
    args = parser.parse_args(argv)
    if args.no_download and find_complete_folder(candidate_folders(args.data_dir)) is None:
        print(f"fmnist: Fashion-MNIST not found in {args.data_dir} nor {SYSTEM_DATA_DIR}", file=sys.stderr)
        return EXIT_MISSING
    try:
        data = load_fashion_mnist(args.data_dir, download=not args.no_download)
    except DataError as exc:
        return user_error(str(exc), 1)
    print(f"fmnist: Fashion-MNIST OK in {data.source} "
          f"({len(data.train_labels)} train, {len(data.test_labels)} test, checksums verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
