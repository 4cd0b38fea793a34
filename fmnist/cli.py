"""Turn user mistakes into one clear line and a non-zero exit instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from fmnist.errors import FmnistError

T = TypeVar("T")
EXIT_USER_ERROR = 2
log = logging.getLogger("fmnist")


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_guarded(task: Callable[[], T]) -> T:
    """Run a task; a user error ends a single run with exit 2. In a sweep it fails only that job."""
    try:
        return task()
    except FmnistError as exc:
        log.error("%s", exc)
        if _in_multirun():
            raise
        print(f"fmnist: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
