"""The `hydra/sweeper=optuna` plugin class (conf/hydra/sweeper/optuna.yaml): a thin Hydra Sweeper over
fmnist.search.sweeper.OptunaSearch, here because Hydra instantiates plugins from `hydra_plugins.*` only."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """hydra-optuna-sweeper's keys (direction, study_name, storage, n_trials, n_jobs, max_failure_rate, sampler,
    params) plus pruner; see fmnist.search.sweeper."""

    def __init__(self, **settings: Any) -> None:
        # imported here, not at the top: Hydra's plugin scan imports this module in every Hydra app, fmnist or not
        from fmnist.search.sweeper import OptunaSearch

        self.search = OptunaSearch(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
