"""`python -m fmnist.models [--json] [NAME ...] [hydra.searchpath=[file://DIR]]`: every model config with its size
and cost per image, your own (`hydra.searchpath` as on a train command line, or `--searchpath DIR`) included."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from fmnist.core.cli import user_error
from fmnist.core.errors import FmnistError
from fmnist.core.limits import first_line
from fmnist.models.catalog import catalog, format_table, model_names

SEARCHPATH = "hydra.searchpath="


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist.models", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="model configs to list (default: all), and/or hydra.searchpath=[file://DIR,...]")
    parser.add_argument("--searchpath", action="append", default=[], metavar="DIR", type=Path,
                        help="a config folder holding model/<name>.yaml (same as hydra.searchpath=[file://DIR])")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, family, input, params, macs}")
    args = parser.parse_args(argv)
    searchpath = [f"file://{directory.resolve()}" for directory in args.searchpath]
    names = []
    for item in args.names:
        if item.startswith(SEARCHPATH):  # `hydra.searchpath=[a,b]` or `=a`, read by Hydra's own parser
            try:
                parsed = OverridesParser.create().parse_overrides([item])[0].value()
            except HydraException as exc:
                return user_error(f"{item}: not a Hydra override ({first_line(exc)}). Fix: write it as on "
                                  "a train command line, e.g. hydra.searchpath=[file://my_conf]")
            searchpath += [str(entry) for entry in (parsed if isinstance(parsed, list) else [parsed])]
        elif "=" in item:
            return user_error(f"{item}: only hydra.searchpath=[...] is taken as an override here. Fix: pass "
                              "model names, --searchpath DIR or hydra.searchpath=[file://DIR]")
        else:
            names.append(item)
    missing = [str(directory) for directory in args.searchpath if not (directory / "model").is_dir()]
    if missing:
        return user_error(f"no model/ folder in {', '.join(missing)}. Fix: pass the config folder that holds "
                          "model/<name>.yaml")
    try:
        known = model_names(searchpath=searchpath)
        unknown = sorted(set(names) - set(known))
        if unknown:
            return user_error(f"no model config {', '.join(unknown)}. Fix: choose from {', '.join(known)}, or "
                              "add your config folder with hydra.searchpath=[file://DIR]")
        infos = catalog(names or None, searchpath=searchpath)
    except (FmnistError, HydraException) as exc:
        return user_error(first_line(exc))
    if args.json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
    else:
        print(format_table(infos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
