"""The report's search section: each Optuna study whose trials ran below the reported folders, with its best trial
as a command. Only a local storage file in or beside those folders is opened, read-only (docs/security.md)."""

from __future__ import annotations

import logging
import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from fmnist.core.figures import save_figure
from fmnist.core.limits import clip
from fmnist.core.numbers import markdown_table
from fmnist.core.run_files import METRICS_FILE, OVERRIDES_FILE, read_run_json, read_run_yaml
from fmnist.report.collect import SEARCH_OVERRIDES, TRIAL_OVERRIDE, read_or_none
from fmnist.report.tables import image, run_link

log = logging.getLogger(__name__)


def _trial_jobs(directories: Sequence[Path]) -> dict[tuple[str, str], dict[int, tuple[Path, list[str]]]]:
    """(study, storage) -> trial number -> (its run dir, its overrides), from the jobs' .hydra/overrides.yaml."""
    parser = OverridesParser.create()
    studies: dict[tuple[str, str], dict[int, tuple[Path, list[str]]]] = {}
    for directory in directories:
        for path in sorted(directory.rglob(OVERRIDES_FILE)):
            overrides = read_or_none(read_run_yaml, path)
            if not isinstance(overrides, list):
                continue
            line = next((item for item in overrides if isinstance(item, str) and item.startswith(TRIAL_OVERRIDE)), None)
            if line is None:
                continue
            try:
                spec = parser.parse_override(line).value()
                key, number = (str(spec["study"]), str(spec["storage"])), int(spec["number"])
            except (HydraException, KeyError, TypeError, ValueError):
                continue
            studies.setdefault(key, {})[number] = (path.parent.parent, [str(item) for item in overrides])
    return studies


def _local_storage(storage: str, roots: Sequence[Path]) -> Any:
    """The storage opened read-only (SQLite mode=ro: reading never writes Optuna's tables into it) if it is a regular
    local file inside one of `roots`, else None: a run dir names its storage as data."""
    import optuna

    from fmnist.search.storage import SQLITE

    path = Path(storage[len(SQLITE):]) if storage.startswith(SQLITE) else None if "://" in storage else Path(storage)
    if path is None or path.is_symlink() or not path.is_file():
        return None
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        return None
    if storage.startswith(SQLITE):
        return optuna.storages.RDBStorage(f"{SQLITE}file:{resolved}?mode=ro&uri=true")
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(resolved)))


def reproduce_command(run_dir: Path, overrides: list[str]) -> str:
    """The command that trains the trial's configuration alone: without hparams_search, which would start the search
    again, and with the model it picked."""
    config = read_or_none(read_run_yaml, run_dir / ".hydra" / "config.yaml")
    model = (read_or_none(read_run_json, run_dir / METRICS_FILE) or {}).get("model")
    task = config["task_name"] if isinstance(config, dict) and config.get("task_name") in ("train", "cv") else "train"
    kept = [item for item in overrides if not item.startswith(SEARCH_OVERRIDES)]
    if isinstance(model, str) and not any(item.startswith("model=") for item in kept):
        kept.insert(0, f"model={model}")
    return " ".join(["python", "-m", f"fmnist.{task}", *(shlex.quote(item) for item in kept)])


def _figure(plot: Any, study: Any, path: Path) -> Path | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            axes = plot(study)
    except (ValueError, RuntimeError) as exc:  # e.g. importances need two completed trials
        log.info("%s skipped: %s", path.name, exc)
        return None
    axes.figure.tight_layout()  # single objective: one Axes
    return save_figure(axes.figure, path)


def study_lines(name: str, storage: str, opened: Any, jobs: dict[int, tuple[Path, list[str]]], out: Path,
                figure_dir: Path) -> list[str]:
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    lines = [f"### Study {name}", "", f"Storage: `{clip(storage)}` (`optuna-dashboard {shlex.quote(storage)}` "
             "browses it).", ""]
    study = optuna.load_study(study_name=name, storage=opened)
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(trial.state == state for trial in trials) for state in TrialState}
    lines += [markdown_table(("complete", "pruned", "failed", "running", "total"),
                             [[counts[TrialState.COMPLETE], counts[TrialState.PRUNED], counts[TrialState.FAIL],
                               counts[TrialState.RUNNING], len(trials)]]), ""]
    slug = "".join(char if char.isalnum() else "_" for char in name)
    if len(study.directions) == 1 and counts[TrialState.COMPLETE]:
        best = study.best_trial
        direction = study.direction.name.lower()
        lines += [f"Best trial: {best.number}, objective {best.value:.4f} ({direction}d), params "
                  + ", ".join(f"`{key}={value}`" for key, value in best.params.items()) + "."]
        if best.number in jobs:
            run_dir, overrides = jobs[best.number]
            lines += ["", f"Its run: {run_link(run_dir, out)}; to train it again:", "", "```bash",
                      reproduce_command(run_dir, overrides), "```"]
        lines += ["", f"This best validation figure was selected among {counts[TrialState.COMPLETE]} completed trials "
                  f"({len(trials)} in all), so it is optimistic: the maximum of many noisy estimates. Judge the "
                  "chosen configuration on folds it was not selected on (python -m fmnist.cv with the command's "
                  "overrides), and on the test set once, at the end.", ""]
        for title, plot, file in (("optimisation history", plots.plot_optimization_history, "history"),
                                  ("parameter importances", plots.plot_param_importances, "importances")):
            lines += image(f"{name} {title}", _figure(plot, study, figure_dir / f"search_{slug}_{file}.png"), out)
    elif len(study.directions) > 1:
        lines += [f"Pareto front: trials {', '.join(str(trial.number) for trial in study.best_trials)}.", ""]
    return lines


def search_section(directories: Sequence[Path], out: Path, figure_dir: Path) -> list[str]:
    """The report's "## Search" lines, or none when no run below `directories` was a search trial."""
    studies = _trial_jobs(directories)
    if not studies:
        return []
    try:
        import optuna  # noqa: F401 - the sweep extra
    except ImportError:
        return ["## Search", "", "Trials of an Optuna search are below; install the sweep extra "
                "(pip install -e '.[sweep]') to see the study here.", ""]
    lines = ["## Search", ""]
    # the reported folders, their parents (a sweep's multirun/ holds its optuna.db) and the working directory
    roots = [*directories, *(directory.resolve().parent for directory in directories), Path.cwd()]
    for (name, storage), jobs in sorted(studies.items()):
        try:
            opened = _local_storage(storage, roots)
            if opened is None:
                lines += [f"### Study {name}", "", f"Its storage `{clip(storage)}` is not a local file in or beside "
                          "the reported folders or in the working directory, so it is not opened; browse it with "
                          "optuna-dashboard if you trust it.", ""]
                continue
            lines += study_lines(name, storage, opened, jobs, out, figure_dir)
        except Exception as exc:  # a study that cannot be read leaves the rest of the report intact
            lines += [f"### Study {name}", "", f"Cannot be read ({clip(exc)}).", ""]
    return lines
