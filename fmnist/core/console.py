"""What a command does around its job (the lightning-hydra-template's `extras`, conf/train.yaml); no Lightning
here, so the report stays light."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

# (message regex, category) of the Python warnings our runs show and nobody can act on.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # torch deprecated LeafSpec; Lightning's utilities/_pytree.py still builds one, once per fit, validate and test
    (r".*isinstance\(treespec, LeafSpec\)", FutureWarning),
    # PossibleUserWarning: fmnist's batches are tensors already on the device, not worker processes
    (r".*does not have many workers", UserWarning),
)
# Lightning's info lines to drop: its "💡 Tip" adverts, and the two lines that the post-fit validate and test print
# for the checkpoint they load ("Restored all states", a resumed fit, stays).
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
KNOWN_LOG_LINES = ("💡 Tip:", "Restoring states from the checkpoint path at",
                   "Loaded model weights from the checkpoint at")
# The tree's first branches, in this order; the other top-level keys follow in the config's order.
TREE_ORDER = ("model", "data", "augmentation", "optimizer", "scheduler", "regularization", "module", "trainer",
              "logger", "callbacks", "seed", "tags", "ckpt_path", "paths", "extras")


def keeps_line(record: logging.LogRecord) -> bool:
    """The log filter of the Lightning loggers: False for the KNOWN_LOG_LINES."""
    return not str(record.msg).startswith(KNOWN_LOG_LINES)


def ignore_known_warnings() -> None:
    """Hide the KNOWN_WARNINGS and KNOWN_LOG_LINES; every other warning and log line shows as before."""
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).addFilter(keeps_line)  # added once, however often this runs


def is_terminal() -> bool:
    return sys.stdout.isatty()


def wants(setting: bool | None) -> bool:
    """An extras switch: true or false as set, null: when stdout is a terminal."""
    return is_terminal() if setting is None else bool(setting)


def _yaml(value: Any) -> Syntax:
    return Syntax(OmegaConf.to_yaml(value).rstrip(), "yaml", theme="ansi_dark", background_color="default")


def print_config_tree(cfg: DictConfig, console: Console | None = None) -> None:
    """The composed config, resolved: one branch per top-level group (its YAML), one leaf per top-level value."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an unresolvable value: show it as written; the command reports the error itself
        plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    tree = Tree("config", style="bold", guide_style="dim")
    for key in [key for key in TREE_ORDER if key in plain] + [key for key in plain if key not in TREE_ORDER]:
        value = plain[key]
        if isinstance(value, dict) and value:
            tree.add(f"[bold]{key}[/bold]").add(_yaml(value))
        else:
            tree.add(_yaml({key: value}))
    (console or Console()).print(tree)


def apply_extras(cfg: DictConfig, rank_zero: bool = True) -> None:
    """At a command's start: the warning filters (every process), the config tree (the first process only)."""
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings", True):
        ignore_known_warnings()
    if rank_zero and wants(extras.get("print_config")):
        print_config_tree(cfg)


def print_summary(cfg: DictConfig, title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
                  notes: Sequence[str]) -> None:
    """A results table, then one line per note (paths stay whole: they are not wrapped into the table)."""
    extras = cfg.get("extras") or {}
    if not extras.get("print_summary", True):
        return
    table = Table(title=title, title_justify="left")
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True, highlight=False, markup=False)
