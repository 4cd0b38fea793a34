"""Leave a `metrics.json` with status "failed" where a job died, so sweeps and reports show it instead of a gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fmnist.core.metrics_file import write_failure


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class RecordFailedJob(Callback):
    """Hydra callback: after a job raised, record it in its own output dir (the launcher keeps the others going)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        try:
            job_return.return_value  # noqa: B018 - a failed job's property re-raises its exception
        except BaseException as exc:  # noqa: B036 - the job's own error, whatever it was, is what gets recorded
            error = describe(exc)
        write_failure(Path(str(config.hydra.runtime.output_dir)), error, model=OmegaConf.select(config, "model.name"),
                      task=OmegaConf.select(config, "task_name"), overrides=list(job_return.overrides or []))
