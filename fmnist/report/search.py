"""The report's search section: for each Optuna study whose trials ran below the report's directories, the counts of
complete, pruned and failed trials, the optimisation history and parameter importances (Optuna's matplotlib
figures), and the best trial as the command that reproduces it, with a warning that its figure is optimistic.

A study is found from its jobs' `search.trial` override (.hydra/overrides.yaml, read as data). Run dirs may come
from anyone (docs/security.md), so only a storage that is an existing local file (SQLite or journal) in or beside
the reported folders, or in the working directory, is opened, and read-only; a database URL a run dir names is
never connected to. Without the `sweep` extra the section is left out.
"""

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
from fmnist.core.run_files import OVERRIDES_FILE, RunFileError, read_run_yaml
from fmnist.report.tables import run_link

log = logging.getLogger(__name__)
TRIAL_OVERRIDE = "++search.trial="
DROPPED = ("++search.trial=", "++callbacks.search_trial=", "hparams_search=")  # not part of a trial's own command


def _trial_jobs(directories: Sequence[Path]) -> dict[tuple[str, str], dict[int, tuple[Path, list[str]]]]:
    """(study, storage) -> trial number -> (its run dir, its overrides), from the jobs' .hydra/overrides.yaml."""
    parser = OverridesParser.create()
    studies: dict[tuple[str, str], dict[int, tuple[Path, list[str]]]] = {}
    for directory in directories:
        for path in sorted(directory.rglob(OVERRIDES_FILE)):
            try:
                overrides = read_run_yaml(path)
            except RunFileError:
                continue
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
    """The storage, opened read-only, if it is a regular local file (SQLite or journal) inside one of `roots` (the
    report's directories, the folders they are in, and the working directory); else None. A run dir from elsewhere
    names its storage as data: a file outside those folders is never opened, and SQLite is opened with mode=ro, so
    reading a study never writes Optuna's tables or version row into it."""
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


def reproduce_command(run_dir: Path, overrides: list[str], model: str | None) -> str:
    """The command that trains the trial's configuration alone: its task (train or cv) and overrides, without the
    search (hparams_search would start the search again; the model it picked is given instead)."""
    task = "train"
    try:
        config = read_run_yaml(run_dir / ".hydra" / "config.yaml")
        if isinstance(config, dict) and config.get("task_name") in ("train", "cv"):
            task = config["task_name"]
    except RunFileError:
        pass
    kept = [item for item in overrides if not item.startswith(DROPPED)]
    if model and not any(item.startswith("model=") for item in kept):
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
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.tight_layout()
    return save_figure(figure, path)


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
            from fmnist.core.run_files import METRICS_FILE, read_run_json
            try:
                model = read_run_json(run_dir / METRICS_FILE).get("model")
            except RunFileError:
                model = None
            lines += ["", f"Its run: {run_link(run_dir, out)}; to train it again:", "", "```bash",
                      reproduce_command(run_dir, overrides, model if isinstance(model, str) else None), "```"]
        lines += ["", f"This best validation figure was selected among {counts[TrialState.COMPLETE]} completed trials "
                  f"({len(trials)} in all), so it is optimistic: the maximum of many noisy estimates. Judge the "
                  "chosen configuration on folds it was not selected on (python -m fmnist.cv with the command's "
                  "overrides), and on the test set once, at the end.", ""]
        for title, plot, file in (("optimisation history", plots.plot_optimization_history, "history"),
                                  ("parameter importances", plots.plot_param_importances, "importances")):
            path = _figure(plot, study, figure_dir / f"search_{slug}_{file}.png")
            if path is not None:
                lines += [f"![{name} {title}]({path.relative_to(out).as_posix()})", ""]
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
    for (name, storage), jobs in sorted(studies.items()):
        try:
            # the reported folders, the folders they are in (a sweep dir's multirun/ holds its optuna.db), and the
            # working directory
            opened = _local_storage(storage, [*directories, *(directory.resolve().parent for directory in directories),
                                              Path.cwd()])
            if opened is None:
                lines += [f"### Study {name}", "", f"Its storage `{clip(storage)}` is not a local file in or beside "
                          "the reported folders or in the working directory, so it is not opened; browse it with "
                          "optuna-dashboard if you trust it.", ""]
                continue
            lines += study_lines(name, storage, opened, jobs, out, figure_dir)
        except Exception as exc:  # a study that cannot be read leaves the rest of the report intact
            lines += [f"### Study {name}", "", f"Cannot be read ({clip(exc)}).", ""]
    return lines
