"""Find the runs below some directories and group the folds of each model configuration. Run dirs are untrusted
(docs/security.md): a malformed metrics.json or overrides.yaml lists its run as broken, kept out of every mean."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fmnist.core.errors import DataError
from fmnist.core.limits import MAX_NAME_CHARS, clip
from fmnist.core.metrics_file import COMPLETED, PRUNED, metrics_problem, read_metrics, value_problem
from fmnist.core.numbers import is_int
from fmnist.core.predictions import Predictions, read_predictions
from fmnist.core.run_files import (
    HISTORY_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    PREDICTIONS_FILE,
    SUMMARY_FILE,
    TRIAL_CALLBACK,
    TRIAL_KEY,
    RunFileError,
    read_history_columns,
    read_run_json,
    read_run_yaml,
)

log = logging.getLogger(__name__)

TRIAL_OVERRIDE = f"++{TRIAL_KEY}="
SEARCH_OVERRIDES = ("hparams_search=", TRIAL_OVERRIDE, f"++callbacks.{TRIAL_CALLBACK}=")  # a search's, not a trial's
# Overrides that do not change what is trained; the seed too, so that repeats over seeds form one group.
IGNORED_OVERRIDE_PREFIXES = ("data.fold=", "seed=", "hydra.", "hydra/", "ckpt_path=", "logger=", "cv.folds=",
                             "paths.", "data.data_dir=", "data.system_dir=", *SEARCH_OVERRIDES)
HISTORY_COLUMNS = ("epoch", "train/acc", "val/acc", "train/loss", "val/loss")  # what figures and compare use


@dataclass
class Run:
    """One finished training run (a fold of a CV run, or a train job)."""

    path: Path
    metrics: dict[str, Any]
    history: pd.DataFrame | None
    predictions: Predictions | None = None  # its test_predictions.npz, if it wrote a valid one


@dataclass
class Failure:
    path: Path
    model: str
    error: str
    broken: bool = False  # a file that is not what fmnist writes (else: a run that recorded its own failure)


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
    ignored: list[tuple[Path, str]] = field(default_factory=list)  # optional files left out, and why
    pruned: list[Failure] = field(default_factory=list)  # stopped early by a search's pruner: not failures

    @property
    def broken(self) -> list[Failure]:
        return [failure for failure in self.failures if failure.broken]


def read_or_none(read: Callable[[Path], Any], path: Path) -> Any:
    """An optional run file's content, or None where it is missing or not what fmnist writes."""
    try:
        return read(path)
    except RunFileError:
        return None


def _shown(value: Any) -> str:
    return clip(repr(value), 60)


def _ensemble_problem(summary: dict[str, Any]) -> str | None:
    ensemble = summary.get("ensemble")
    if not isinstance(ensemble, dict):
        return f"ensemble is {_shown(ensemble)}, expected an object"
    members = ensemble.get("members")
    if not is_int(members) or members < 1:
        return f"ensemble members is {_shown(members)}, expected a positive integer"
    for key in ("test/acc", "test/f1", "test/confusion"):
        problem = value_problem(key, ensemble[key]) if key in ensemble else None
        if problem is not None:
            return f"ensemble {problem}"
    return None


def run_root(directory: Path, top: Path) -> Path | None:
    """The nearest enclosing Hydra job dir (a fold's CV run), searched no higher than `top`, the directory the report
    was given: a file above it is not part of the runs."""
    for candidate in (directory, *directory.parents):
        if os.path.lexists(candidate / OVERRIDES_FILE):
            return candidate
        if candidate == top:
            break
    return None


def group_overrides(directory: Path, top: Path) -> tuple[str, ...]:
    """The job's overrides that define what is trained, model left to the group's model name. RunFileError if
    .hydra/overrides.yaml is not a list of strings in safe YAML (no Python tags)."""
    root = run_root(directory, top)
    if root is None:
        return ()
    overrides = read_run_yaml(root / OVERRIDES_FILE)
    if overrides is None:
        return ()
    if not isinstance(overrides, list):
        raise RunFileError(f"holds a {type(overrides).__name__}, expected a list of overrides")
    for item in overrides:
        if not isinstance(item, str):
            raise RunFileError(f"holds {_shown(item)}, expected only strings (key=value overrides)")
    keep = (item for item in overrides if not item.startswith(("model=", *IGNORED_OVERRIDE_PREFIXES)))
    return tuple(sorted(keep))


def _optional(directory: Path, name: str, read: Callable[[Path], Any], ignored: list[tuple[Path, str]]) -> Any:
    """An extra file (history.csv, predictions): a malformed one is ignored with a warning and the run still counts."""
    path = directory / name
    if not os.path.lexists(path):
        return None
    try:
        return read(path)
    except (RunFileError, DataError) as exc:
        _ignore(path, clip(str(exc).removeprefix(f"{path}: ")), ignored)
        return None


def _read_history(path: Path) -> pd.DataFrame:
    """The columns of history.csv the report draws (HISTORY_COLUMNS), numbers or NaN for blanks."""
    return pd.DataFrame(read_history_columns(path, HISTORY_COLUMNS), dtype=float)


def _ignore(path: Path, reason: str, ignored: list[tuple[Path, str]]) -> None:
    log.warning("ignoring %s: %s", path, reason)
    ignored.append((path, reason))


def _below(directories: Sequence[Path], name: str) -> list[tuple[Path, Path]]:
    """(file, the given directory it was found below); the file's own name is never resolved, so a link stays a
    link (and is refused when read) instead of becoming the path it names."""
    found: dict[Path, Path] = {}
    for directory in directories:
        top = directory.resolve()
        for path in sorted(directory.rglob(name)):
            found.setdefault(path.parent.resolve() / path.name, top)
    return list(found.items())


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
            group.label = clip(f"{group.model} ({' '.join(distinct)})" if distinct else group.model)
    seen: dict[str, int] = {}
    for group in groups:  # labels clipped alike: keep them unique, they key the report's tables
        seen[group.label] = seen.get(group.label, 0) + 1
        if seen[group.label] > 1:
            group.label = f"{group.label} #{seen[group.label]}"


def _model(metrics: Any) -> str:
    """The model a run's metrics.json names, as the failures table shows it: clipped, or '?'."""
    model = metrics.get("model") if isinstance(metrics, dict) else None
    return clip(model, MAX_NAME_CHARS) if isinstance(model, str) else "?"


def _broken(path: Path, name: str | Path, reason: str, metrics: Any = None) -> Failure:
    return Failure(path, _model(metrics), f"broken {Path(name).as_posix()}: {reason}", broken=True)


def collect(directories: Iterable[str | Path]) -> Collection:
    directories = [Path(directory) for directory in directories]
    groups: dict[tuple[str, tuple[str, ...]], Group] = {}
    failures: list[Failure] = []
    pruned: list[Failure] = []
    ignored: list[tuple[Path, str]] = []
    for path, top in _below(directories, METRICS_FILE):
        run_dir, metrics = path.parent, None
        try:
            metrics = read_metrics(run_dir)
            if metrics.get("status") != COMPLETED:
                ended = Failure(run_dir, _model(metrics), clip(metrics.get("error", metrics.get("status", "?"))))
                (pruned if metrics.get("status") == PRUNED else failures).append(ended)
                continue
            problem = metrics_problem(metrics)
            if problem is not None:
                raise RunFileError(problem)
        except RunFileError as exc:
            failures.append(_broken(run_dir, METRICS_FILE, str(exc), metrics))
            continue
        try:
            overrides = group_overrides(run_dir, top)
        except RunFileError as exc:
            root = run_root(run_dir, top) or run_dir
            failures.append(_broken(run_dir, os.path.relpath(root / OVERRIDES_FILE, run_dir), str(exc), metrics))
            continue
        key = (metrics["model"], overrides)
        group = groups.setdefault(key, Group(model=key[0], overrides=overrides))
        group.runs.append(Run(run_dir, metrics, _optional(run_dir, HISTORY_FILE, _read_history, ignored),
                              _optional(run_dir, PREDICTIONS_FILE, read_predictions, ignored)))
    for path, top in _below(directories, SUMMARY_FILE):
        try:
            summary = read_run_json(path)
            if "ensemble" not in summary:
                continue
            problem = _ensemble_problem(summary)
            if problem is not None:
                raise RunFileError(problem)
            key = (summary.get("model"), group_overrides(path.parent, top))
        except RunFileError as exc:
            _ignore(path, str(exc), ignored)
            continue
        if key in groups:
            groups[key].ensembles.append(summary["ensemble"])
    ordered = sorted(groups.values(), key=lambda group: (group.model, group.overrides))
    _label(ordered)
    return Collection(ordered, sorted(failures, key=lambda failure: str(failure.path)), ignored,
                      sorted(pruned, key=lambda run: str(run.path)))
