"""Hydra's sweep grammar to Optuna distributions, as hydra-optuna-sweeper reads it so its configs carry over
(docs/search.md), and trial values back to overrides a job (or a user) can run."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException

from fmnist.core.errors import ConfigError
from fmnist.core.limits import clip, first_line

PARAMS_KEY = "hydra.sweeper.params"
_BARE = re.compile(r"[A-Za-z_/][\w./\-]*")  # a string the override grammar reads back unquoted
_RESERVED = {"null", "true", "false", "nan", "inf", "-inf"}


@dataclass
class SearchSpace:
    """The distributions to sample, each name's override prefix (`+`/`++`), and the overrides every trial gets."""

    distributions: dict[str, Any] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The trial's command-line overrides: the fixed ones, then each sampled value."""
        return [*self.fixed, *(f"{self.prefixes.get(name, '')}{name}={override_value(value)}"
                               for name, value in params.items())]


def override_value(value: Any) -> str:
    """A Python value written in Hydra's override grammar (strings quoted unless plainly safe)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # nan, inf and -inf as the grammar spells them
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key}:{override_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    text = str(value)
    if _BARE.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _distribution(override: Override, source: str) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key = override.get_key_element()
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        choices = list(override.sweep_iterator())
        bad = [choice for choice in choices if not (choice is None or isinstance(choice, (bool, int, float, str)))]
        if bad:
            raise ConfigError(source, f"{key}'s choice {clip(bad[0], 60)} is not a number, string, bool or null",
                              "choose among plain values, e.g. choice(16, 32, 64)")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(source, f"{key}'s range({value.start}, {value.stop}, {value.step}) is empty",
                              "give a stop beyond start, e.g. range(1, 4)")
        if all(isinstance(item, int) for item in values):
            step = values[1] - values[0] if len(values) > 1 else 1
            return IntDistribution(min(values), max(values), step=abs(step))
        return CategoricalDistribution(values)
    if isinstance(value, IntervalSweep):
        if value.start is None or value.end is None or not value.start < value.end:
            raise ConfigError(source, f"{key}'s interval({value.start}, {value.end}) is empty",
                              "give low < high, e.g. interval(1e-4, 1e-2)")
        if log and value.start <= 0:
            raise ConfigError(source, f"{key}'s log-scale interval starts at {value.start}",
                              "give a positive low bound, e.g. tag(log, interval(1e-4, 1e-2))")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ConfigError(source, f"{key}={clip(override.input_line, 80)} is a sweep Optuna cannot sample",
                      "use choice(...), range(...), interval(...), int(interval(...)) or tag(log, ...)")


def build_search_space(params: Mapping[str, Any] | None, arguments: Iterable[str]) -> SearchSpace:
    """The space of hydra.sweeper.params and of the command line's sweeps (`a,b`, `interval(...)`); the command line
    wins for a key given in both. ConfigError if nothing is left to search or an expression cannot be sampled."""
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(PARAMS_KEY, f"{clip(params, 80)} is not a mapping of key: sweep expression",
                          "write params as e.g. {optimizer.lr: 'tag(log, interval(1e-4, 1e-2))'}")
    lines = [(f"{key}={value}", PARAMS_KEY) for key, value in (params or {}).items()]
    lines += [(argument, "the command line") for argument in arguments]
    parser = OverridesParser.create()
    by_key: dict[str, tuple[Override, str]] = {}
    for line, source in lines:
        try:
            override = parser.parse_override(line)
        except HydraException as exc:
            raise ConfigError(source, f"{clip(line, 120)} is not in Hydra's sweep grammar "
                              f"({first_line(exc, 160, type(exc).__name__)})",
                              "write e.g. 'optimizer.lr: tag(log, interval(1e-4, 1e-2))' or "
                              "'data.batch_size: choice(32, 64)'") from None
        by_key[override.get_key_element().lstrip("+")] = (override, source)  # later (the command line) wins
    space = SearchSpace()
    for key, (override, source) in by_key.items():
        if override.is_sweep_override():
            space.distributions[key] = _distribution(override, source)
            space.prefixes[key] = override.get_key_element()[: -len(key)]  # "+" or "++" for a key the config lacks
        else:
            space.fixed.append(override.input_line)
    if not space.distributions:
        raise ConfigError(PARAMS_KEY, "the search space is empty (no param is a sweep)",
                          "give hydra.sweeper.params (e.g. hparams_search=conv_maxpool_optuna) or a sweep on the "
                          "command line, e.g. 'optimizer.lr=tag(log, interval(1e-4, 1e-2))'")
    return space


def grid_of(space: SearchSpace) -> dict[str, list[Any]]:
    """GridSampler's search space: every value of each choice or integer range; ConfigError for an interval."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    grid: dict[str, list[Any]] = {}
    for name, distribution in space.distributions.items():
        if isinstance(distribution, CategoricalDistribution):
            grid[name] = list(distribution.choices)
        elif isinstance(distribution, IntDistribution) and not distribution.log:
            grid[name] = list(range(distribution.low, distribution.high + 1, distribution.step))
        else:
            raise ConfigError(PARAMS_KEY, f"{name} is an interval, which a grid cannot enumerate",
                              "use choice(...) or range(...) with hydra/sweeper/sampler=grid, or another sampler")
    return grid
