"""fmnist's Optuna sweeper: hydra-optuna-sweeper's config on current Optuna, with pruning and a budget (`n_trials` is
the study's total, so a rerun continues it); a job tells the study its own result, the sweeper what a job could not."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fmnist.core.atomic import write_text_atomic
from fmnist.core.cli import user_error
from fmnist.core.errors import ConfigError, FmnistError
from fmnist.core.limits import clip, first_line
from fmnist.core.numbers import is_int, is_real
from fmnist.core.run_files import TRIAL_CALLBACK, TRIAL_KEY
from fmnist.search.space import PARAMS_KEY, SearchSpace, build_search_space, grid_of, override_value
from fmnist.search.storage import absolute_storage, open_storage
from fmnist.search.trial import tell_job

log = logging.getLogger("fmnist.search")

SPACE_ATTR = "fmnist:search_space"  # the study's user attribute: the space it was created with, to refuse another
RESULTS_FILE = "optimization_results.yaml"  # in the sweep dir, as hydra-optuna-sweeper wrote it
SAMPLERS = "hydra/sweeper/sampler=tpe, random, cmaes, nsgaii, grid, qmc or gp, or an optuna.samplers class by _target_"
PRUNERS = "hydra/sweeper/pruner=median, successive_halving or hyperband, or an optuna.pruners class by _target_"


def _directions(direction: Any) -> list[str]:
    wanted = [direction] if isinstance(direction, str) else list(direction or [])
    names = [str(item).lower().removeprefix("studydirection.") for item in wanted]
    if not names or any(name not in ("maximize", "minimize") for name in names):
        raise ConfigError("hydra.sweeper.direction", f"{clip(direction, 80)} is not maximize, minimize or a list "
                          "of them", "use direction=maximize (val/acc), or [maximize,minimize] for two objectives")
    return names


def _build(spec: Any, key: str, base: type, choices: str, **extra: Any) -> Any:
    """Instantiate a sampler or pruner from its config; ConfigError naming it if that fails or gives another kind."""
    target = OmegaConf.select(spec, "_target_") if isinstance(spec, DictConfig) else None
    if not target:
        raise ConfigError(key, f"{clip(spec, 80)} has no _target_", f"pick {choices}")
    try:
        built = instantiate(spec, **extra)
    except Exception as exc:  # Hydra wraps the import or constructor error; its first line names it
        raise ConfigError(key, f"{target} cannot be built ({first_line(exc, 200, type(exc).__name__)})",
                          f"pick {choices}") from None
    if not isinstance(built, base):
        raise ConfigError(key, f"{target} is not an {base.__module__}.{base.__name__}", f"pick {choices}")
    return built


def next_job_number(sweep_dir: Path) -> int:
    """One past the highest numbered run dir in the sweep dir, so a rerun never overwrites an earlier trial's."""
    numbers = [int(path.name) for path in sweep_dir.glob("*") if path.name.isdigit() and path.is_dir()]
    return max(numbers, default=-1) + 1


class OptunaSearch:
    """What the `hydra/sweeper=optuna` plugin does; the plugin class (hydra_plugins.fmnist_optuna_sweeper) holds one."""

    def __init__(self, direction: Any = "maximize", study_name: str | None = None, storage: Any = None,
                 n_trials: int = 20, n_jobs: int = 1, max_failure_rate: float = 0.0, sampler: Any = None,
                 pruner: Any = None, params: Any = None) -> None:
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.sampler, self.pruner, self.params = sampler, pruner, params
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        """Run the search; a user mistake ends it with one line and exit 2 before any trial starts."""
        try:
            return self._sweep(arguments)
        except FmnistError as exc:
            raise SystemExit(user_error(str(exc))) from None

    def _check_numbers(self) -> None:
        for key, value in (("n_trials", self.n_trials), ("n_jobs", self.n_jobs)):
            if not is_int(value) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}", f"{value!r} is not a positive integer",
                                  f"use e.g. hydra.sweeper.{key}={2 if key == 'n_jobs' else 20}")
        rate = self.max_failure_rate
        if not is_real(rate) or not 0.0 <= rate <= 1.0:
            raise ConfigError("hydra.sweeper.max_failure_rate", f"{rate!r} is not a share in [0, 1]",
                              "use e.g. hydra.sweeper.max_failure_rate=0.5")
        if not isinstance(self.study_name, str) or not self.study_name:
            raise ConfigError("hydra.sweeper.study_name", f"{self.study_name!r} is not a name",
                              "use e.g. hydra.sweeper.study_name=conv_maxpool_train")

    def open_study(self, space: SearchSpace, directions: list[str], storage_url: str) -> tuple[Any, int]:
        """Create the study, or load it and check it is the same search; return it and the grid's size (or 0)."""
        import optuna
        from optuna.distributions import distribution_to_json, json_to_distribution

        extra: dict[str, Any] = {}
        if isinstance(self.sampler, DictConfig) and str(self.sampler.get("_target_", "")).endswith("GridSampler") \
                and self.sampler.get("search_space") is None:
            extra["search_space"] = grid_of(space)
        sampler = _build(self.sampler, "hydra.sweeper.sampler", optuna.samplers.BaseSampler, SAMPLERS, **extra)
        grid = math.prod(len(values) for values in extra["search_space"].values()) if extra else 0
        if self.pruner is not None:
            _build(self.pruner, "hydra.sweeper.pruner", optuna.pruners.BasePruner, PRUNERS)
        storage = open_storage(storage_url)
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=sampler,
                                    directions=directions, load_if_exists=True)
        found = [direction.name.lower() for direction in study.directions]
        fix_name = "or start another study with hydra.sweeper.study_name=<new name>"
        if found != directions:
            raise ConfigError("hydra.sweeper.direction", f"study {self.study_name} in {storage_url} was created to "
                              f"{','.join(found)}, not {','.join(directions)}",
                              f"use direction={found[0] if len(found) == 1 else found}, {fix_name}")
        wanted = space.distributions
        if SPACE_ATTR in study.user_attrs:
            stored = {name: json_to_distribution(text) for name, text in study.user_attrs[SPACE_ATTR].items()}
        else:  # a study fmnist did not create (or a new one): its trials' distributions are the space
            stored = {name: distribution for trial in study.get_trials(deepcopy=False)
                      for name, distribution in trial.distributions.items()}
        changed = sorted(name for name in stored.keys() | wanted.keys() if stored.get(name) != wanted.get(name))
        if stored and changed:
            raise ConfigError(PARAMS_KEY, f"study {self.study_name} in {storage_url} searched another space "
                              f"({', '.join(changed)} differ)", f"search the study's space again, {fix_name}")
        if SPACE_ATTR not in study.user_attrs:
            study.set_user_attr(SPACE_ATTR, {name: distribution_to_json(item) for name, item in wanted.items()})
        return study, grid

    def _sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        import optuna
        from optuna.trial import TrialState

        self._check_numbers()
        directions = _directions(self.direction)
        space = build_search_space(self.params, arguments)
        storage_url = absolute_storage(self.storage)
        study, grid = self.open_study(space, directions, storage_url)
        budget = min(self.n_trials, grid) if grid else self.n_trials

        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for trial in stale:  # left by a search that was killed; its job is gone
            study.tell(trial.number, state=TrialState.FAIL)
        if stale:
            log.warning("trials %s were left RUNNING by a search that stopped; recorded FAIL",
                        ", ".join(str(trial.number) for trial in stale))

        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        pruner = OmegaConf.to_container(self.pruner, resolve=True) if self.pruner is not None else None
        spec = {"study": self.study_name, "storage": storage_url, "number": None, "pruner": pruner}
        reporter = (f"++callbacks.{TRIAL_CALLBACK}="
                    "{_target_:fmnist.search.trial.ReportToTrial,trial:${" + TRIAL_KEY + "},_recursive_:false}")
        returns: list[Sequence[JobReturn]] = []
        while True:
            done = len(study.get_trials(deepcopy=False, states=finished))
            if done >= budget:
                break
            trials = [study.ask(space.distributions) for _ in range(min(self.n_jobs, budget - done))]
            overrides = [[*space.overrides(trial.params),
                          f"++{TRIAL_KEY}={override_value({**spec, 'number': trial.number})}", reporter]
                         for trial in trials]
            first = next_job_number(sweep_dir)
            log.info("trials %s of study %s (%d of %d finished): jobs %d-%d in %s",
                     ", ".join(str(trial.number) for trial in trials), self.study_name, done, budget, first,
                     first + len(trials) - 1, sweep_dir)
            batch = self.launcher.launch(overrides, initial_job_idx=first)
            returns.append(batch)
            for trial, job in zip(trials, batch, strict=True):
                tell_job(study, trial.number, job)
            failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
            if failed > self.max_failure_rate * budget:
                raise SystemExit(user_error(
                    f"{failed} of study {self.study_name}'s {budget} trials failed, more than max_failure_rate="
                    f"{self.max_failure_rate}. Fix: read the failed jobs' metrics.json (error) in {sweep_dir}, or "
                    "raise hydra.sweeper.max_failure_rate", 1))
        self._write_results(study, sweep_dir, optuna)
        return returns

    def _write_results(self, study: Any, sweep_dir: Path, optuna: Any) -> None:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            log.warning("study %s has no completed trial yet", self.study_name)
            return
        if len(study.directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value,
                       "best_trial": best.number}
        else:
            results = {"name": "optuna", "solutions": [{"params": trial.params, "values": trial.values,
                                                        "trial": trial.number} for trial in study.best_trials]}
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(results)))
        log.info("best of study %s: %s", self.study_name, results.get("best_value", results.get("solutions")))

