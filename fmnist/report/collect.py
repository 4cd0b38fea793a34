"""Find every run below some directories and group the runs that are folds of one model configuration.

A group is a model plus the overrides its runs were started with, fold left out. So the folds of one
`fmnist.cv` run, and `fmnist.train -m data.fold=0,1,2,3,4` jobs, each form one group; trials of a sweep
that change hyperparameters form one group each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fmnist.core.run_files import COMPLETED, HISTORY_FILE, METRICS_FILE, PREDICTIONS_FILE, SUMMARY_FILE

log = logging.getLogger(__name__)

OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
# Overrides that do not change what is trained: where output goes, which fold, how to resume; and the seed, so
# that repeats over seeds form one group (the report separates seed from fold variance).
IGNORED_OVERRIDE_PREFIXES = ("data.fold=", "seed=", "hydra.", "hydra/", "ckpt_path=", "logger=", "cv.folds=",
                             "paths.", "data.data_dir=", "data.system_dir=", "hparams_search=")


@dataclass
class Run:
    """One finished training run (a fold of a CV run, or a train job)."""

    path: Path
    metrics: dict[str, Any]
    history: pd.DataFrame | None
    predictions: Path | None = None  # its test_predictions.npz, if it wrote one


@dataclass
class Failure:
    path: Path
    model: str
    error: str


@dataclass
class Group:
    """Runs of one model configuration (its folds), and the test metrics of their ensembles, if any."""

    model: str
    overrides: tuple[str, ...]
    runs: list[Run] = field(default_factory=list)
    ensembles: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""


@dataclass
class Collection:
    groups: list[Group]
    failures: list[Failure]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    return payload if isinstance(payload, dict) else None


def run_root(directory: Path) -> Path | None:
    """The nearest enclosing Hydra job dir (the CV run for a fold, the job itself for a train run)."""
    for candidate in (directory, *directory.parents):
        if (candidate / OVERRIDES_FILE).is_file():
            return candidate
    return None


def group_overrides(directory: Path) -> tuple[str, ...]:
    """The job's overrides that define what is trained, model left to the group's model name."""
    root = run_root(directory)
    if root is None:
        return ()
    try:
        overrides = yaml.safe_load((root / OVERRIDES_FILE).read_text()) or []
    except (OSError, yaml.YAMLError):
        return ()
    keep = (str(item) for item in overrides if not str(item).startswith(("model=", *IGNORED_OVERRIDE_PREFIXES)))
    return tuple(sorted(keep))


def _history(directory: Path) -> pd.DataFrame | None:
    path = directory / HISTORY_FILE
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None


def _below(directories: Sequence[Path], name: str) -> list[Path]:
    found: dict[Path, None] = {}
    for directory in directories:
        for path in sorted(directory.rglob(name)):
            found.setdefault(path.resolve(), None)
    return list(found)


def _label(groups: list[Group]) -> None:
    """The model name, plus the overrides that tell its groups apart when one model has several."""
    by_model: dict[str, list[Group]] = {}
    for group in groups:
        by_model.setdefault(group.model, []).append(group)
    for members in by_model.values():
        if len(members) == 1:
            members[0].label = members[0].model
            continue
        shared = set.intersection(*(set(group.overrides) for group in members))
        for group in members:
            distinct = [item for item in group.overrides if item not in shared]
            group.label = f"{group.model} ({' '.join(distinct)})" if distinct else group.model
    seen: dict[str, int] = {}
    for group in groups:  # the same configuration found twice (say two sweep dirs): keep labels unique
        seen[group.label] = seen.get(group.label, 0) + 1
        if seen[group.label] > 1:
            group.label = f"{group.label} #{seen[group.label]}"


def collect(directories: Iterable[str | Path]) -> Collection:
    directories = [Path(directory) for directory in directories]
    groups: dict[tuple[str, tuple[str, ...]], Group] = {}
    failures: list[Failure] = []
    for path in _below(directories, METRICS_FILE):
        metrics = _read_json(path)
        if metrics is None:
            continue
        model = str(metrics.get("model", "?"))
        if metrics.get("status") != COMPLETED:
            failures.append(Failure(path.parent, model, str(metrics.get("error", metrics.get("status", "?")))))
            continue
        key = (model, group_overrides(path.parent))
        group = groups.setdefault(key, Group(model=model, overrides=key[1]))
        predictions = path.parent / PREDICTIONS_FILE
        group.runs.append(Run(path.parent, metrics, _history(path.parent),
                              predictions if predictions.is_file() else None))
    for path in _below(directories, SUMMARY_FILE):
        summary = _read_json(path)
        if summary is None or "ensemble" not in summary:
            continue
        key = (str(summary.get("model", "?")), group_overrides(path.parent))
        if key in groups:
            groups[key].ensembles.append(summary["ensemble"])
    ordered = sorted(groups.values(), key=lambda group: (group.model, group.overrides))
    _label(ordered)
    return Collection(ordered, sorted(failures, key=lambda failure: str(failure.path)))
