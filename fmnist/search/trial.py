"""The job's side of a search: its trial (`search.trial`, set by the sweeper), reported to every epoch and told the
job's result as it ends; Optuna is imported inside functions, since fmnist.train imports RunPruned without it."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf

from fmnist.core.metrics_file import PRUNED, write_stopped
from fmnist.core.run_files import TRIAL_KEY

log = logging.getLogger("fmnist.search")


class RunPruned(Exception):
    """The study's pruner stopped this run at `step` (an epoch, or a fold under fmnist.cv) with `value` reported."""

    def __init__(self, number: int, step: int, value: float) -> None:
        super().__init__(f"trial {number} pruned at step {step} (reported {value:.4f})")
        self.number, self.step, self.value = number, step, value

    def __reduce__(self) -> tuple[type, tuple[int, int, float]]:
        return type(self), (self.number, self.step, self.value)


def trial_spec(cfg: DictConfig) -> DictConfig | None:
    """The job's `search.trial` node, or None outside a search."""
    spec = OmegaConf.select(cfg, TRIAL_KEY, default=None)
    return spec if spec else None


class JobTrial:
    """One trial of a study, reopened in the job from its spec (study, storage, number, pruner)."""

    def __init__(self, spec: Mapping[str, Any] | DictConfig) -> None:
        import optuna

        from fmnist.search.storage import open_storage

        spec = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec)
        self.number = int(spec["number"])
        storage = open_storage(str(spec["storage"]))
        pruner = instantiate(spec["pruner"]) if spec.get("pruner") else optuna.pruners.NopPruner()
        self.study = optuna.load_study(study_name=str(spec["study"]), storage=storage, pruner=pruner)
        study_id = storage.get_study_id_from_name(str(spec["study"]))
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
        self.trial = optuna.trial.Trial(self.study, trial_id)

    def report(self, value: float, step: int) -> None:
        """Report `value` at `step`; if the pruner says so, record the trial PRUNED and raise RunPruned (Optuna
        cannot prune several objectives, so such a trial runs to its end)."""
        import optuna

        if len(self.study.directions) > 1 or not math.isfinite(value):
            return
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.study.tell(self.number, state=optuna.trial.TrialState.PRUNED)
            log.info("trial %d pruned at step %d: val/acc %.4f", self.number, step, value)
            raise RunPruned(self.number, step, value)


class ReportToTrial(L.Callback):
    """Report the monitored validation metric (val/acc) to the job's trial after each validation, and stop the run
    when the study's pruner says so (fmnist.train catches RunPruned: status "pruned", exit 0)."""

    def __init__(self, trial: Mapping[str, Any] | DictConfig) -> None:
        self.spec = trial
        self._trial: JobTrial | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # fit's validations only: not the sanity check, nor the validate pass fmnist runs on the best checkpoint
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or not trainer.is_global_zero:
            return
        if self._trial is None:
            self._trial = JobTrial(self.spec)
        value = trainer.callback_metrics.get("val/acc")
        if value is not None:
            self._trial.report(float(value), trainer.current_epoch)


def tell_job(study: Any, number: int, job: JobReturn) -> None:
    """Tell the study a job's value (one number, or one per objective), or FAIL if it raised or gave no finite number;
    nothing where the trial already finished (pruned, or told by the job itself)."""
    from optuna.trial import TrialState

    if study.get_trials(deepcopy=False)[number].state.is_finished():
        return
    result = job.return_value if job.status == JobStatus.COMPLETED else None
    values = list(result) if isinstance(result, (list, tuple)) else [result]
    numbers = [float(value) for value in values if isinstance(value, (int, float)) and math.isfinite(value)]
    if len(numbers) == len(values) == len(study.directions):
        study.tell(number, numbers)
    else:
        study.tell(number, state=TrialState.FAIL)


class TellTrialAtJobEnd(Callback):
    """Hydra callback (conf/hydra/sweeper/optuna.yaml): in the job's own process, tell the study the job's value,
    or FAIL if it raised, as soon as it ends, so a search that is killed loses no finished trial."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        spec = trial_spec(config)
        if spec is None:
            return
        try:
            trial = JobTrial(spec)
            tell_job(trial.study, trial.number, job_return)
        except Exception as exc:  # the sweeper tells what is still running when the batch returns
            log.warning("could not record trial %s's result in its study (%s); the sweeper records it",
                        spec.get("number"), exc)


def record_pruned(cfg: DictConfig, run_dir: Path, pruned: RunPruned, unit: str = "epoch") -> dict[str, Any]:
    """metrics.json of a run the pruner stopped: status "pruned", its last reported val/acc and epochs; returned, so
    the command ends normally (exit 0) and reports list it apart from completed and failed runs."""
    return write_stopped(cfg, run_dir, PRUNED,
                         f"pruned by the search's pruner after {unit} {pruned.step} (val/acc {pruned.value:.4f})",
                         epochs=pruned.step + 1, trial=pruned.number, **{"val/acc": pruned.value})
