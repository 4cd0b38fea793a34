"""Range checks Hydra cannot express, run before any data is read or model built."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from fmnist.core.errors import ConfigError
from fmnist.core.numbers import is_int, is_real
from fmnist.data.folds import check_fold
from fmnist.models.catalog import check_model_config


def require_int(key: str, value: Any, minimum: int, fix: str) -> None:
    if not is_int(value) or value < minimum:
        raise ConfigError(key, f"{value!r} is not an integer >= {minimum}", fix)


def require_number(key: str, value: Any, low: float, high: float | None, fix: str,
                   low_inclusive: bool = True) -> None:
    above_low = value >= low if low_inclusive else value > low
    if not is_real(value) or not above_low or (high is not None and value >= high):
        bound = f"{'[' if low_inclusive else '('}{low}, {high if high is not None else 'inf'})"
        raise ConfigError(key, f"{value!r} is outside {bound}", fix)


def _dropouts(node: Any, path: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, DictConfig):
        for key, value in node.items():
            child = f"{path}.{key}"
            if "dropout" in str(key) and not isinstance(value, DictConfig):
                found.append((child, value))
            found.extend(_dropouts(value, child))
    return found


def check_train_config(cfg: DictConfig) -> None:
    """Fail fast with the key, the bad value and the fix."""
    data = cfg.data
    require_int("data.batch_size", data.batch_size, 1, "use a batch size of 1 or more, e.g. data.batch_size=64")
    require_int("data.eval_batch_size", data.eval_batch_size, 1, "use 1 or more, e.g. data.eval_batch_size=1024")
    if data.holdout_size is None:
        check_fold(data.num_folds, data.fold)
    if data.train_subset is not None:
        require_int("data.train_subset", data.train_subset, 1, "use a positive number of images, or null for all")
    check_model_config(cfg.model)
    require_number("optimizer.lr", cfg.optimizer.lr, 0.0, None, "use a positive learning rate, e.g. 1e-3",
                   low_inclusive=False)
    require_int("trainer.max_epochs", cfg.trainer.max_epochs, 1, "train for at least one epoch")
    require_number("regularization.weight_decay", cfg.regularization.weight_decay, 0.0, None,
                   "use 0 for none or a small positive value such as 1e-4")
    require_number("regularization.label_smoothing", cfg.regularization.label_smoothing, 0.0, 1.0,
                   "use a value in [0, 1), e.g. 0.1")
    if cfg.regularization.max_norm is not None:
        require_number("regularization.max_norm", cfg.regularization.max_norm, 0.0, None,
                       "use a positive norm such as 4, or null", low_inclusive=False)
    for key, value in _dropouts(cfg.model, "model"):
        require_number(key, value, 0.0, 1.0, "dropout is a probability in [0, 1)")
    if cfg.seed is not None:
        require_int("seed", cfg.seed, 0, "use a non-negative integer seed")
