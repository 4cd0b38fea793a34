"""`python -m fmnist.models [--json] [NAME ...]`: list every model config with its size and cost per image."""

from __future__ import annotations

import argparse
import json
import sys

from fmnist.models.catalog import catalog, format_table, model_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist.models", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="model configs to list (default: all)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, family, input, params, macs}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(model_names()))
    if unknown:
        print(f"fmnist: error: no model config {', '.join(unknown)}. Fix: choose from {', '.join(model_names())}",
              file=sys.stderr)
        return 2
    infos = catalog(args.names or None)
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
    else:
        print(format_table(infos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
