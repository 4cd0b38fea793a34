"""Leave a `metrics.json` with status "failed" where a job died, so sweeps and reports show it instead of a gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fmnist.core.atomic import write_json_atomic
from fmnist.core.run_files import FAILED, METRICS_FILE, RunFileError, read_run_json


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def write_failure(run_dir: Path, error: str, **fields: Any) -> None:
    """Mark a run failed; figures it had already written stay in the file."""
    path = run_dir / METRICS_FILE
    try:
        previous = read_run_json(path)
    except RunFileError:  # none yet, or not a readable JSON object: the failure is recorded afresh
        previous = {}
    write_json_atomic(path, {**previous, **{k: v for k, v in fields.items() if v is not None},
                             "status": FAILED, "error": error})


class RecordFailedJob(Callback):
    """Hydra callback: after a job raised, record it in its own output dir (the launcher keeps the others going)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        try:
            error: Any = job_return.return_value  # a failed job's property re-raises its exception
        except BaseException as exc:  # noqa: B036 - the job's own error, whatever it was, is what gets recorded
            error = exc
        run_dir = Path(str(config.hydra.runtime.output_dir))
        write_failure(
            run_dir,
            describe(error) if isinstance(error, BaseException) else str(error),
            model=OmegaConf.select(config, "model.name"),
            task=OmegaConf.select(config, "task_name"),
            overrides=list(job_return.overrides or []),
        )
