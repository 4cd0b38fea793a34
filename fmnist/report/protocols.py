"""Each model's training protocol from its runs' resolved_config.yaml (read as data): a paired test says which
trained model is better, not which architecture, so a comparison across studies shows what else differs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fmnist.core.limits import clip
from fmnist.core.numbers import markdown_table
from fmnist.core.run_files import RESOLVED_CONFIG_FILE, read_run_yaml
from fmnist.report.collect import Group, Run, read_or_none

MISSING = "–"


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _plain(value: Any) -> str:
    """A number, string or boolean as text; anything else is not shown."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, str):
        return clip(value, 60)
    return "?"


def _optimizer(config: dict[str, Any]) -> str:
    target = _get(config, "optimizer._target_")
    if not isinstance(target, str):
        return MISSING
    text = f"{_plain(target.rsplit('.', 1)[-1])} lr {_plain(_get(config, 'optimizer.lr'))}"
    momentum = _get(config, "optimizer.momentum")
    return text + (f" momentum {_plain(momentum)}" if momentum else "")


MIXING = ("mix_probability", "switch_probability")  # settings of mixup / CutMix, meaningless while both are off


def _augmentation(node: Any) -> str:
    """The augmentations switched on ('flip, translate 2'), or 'none'."""
    if not isinstance(node, dict):
        return MISSING
    mixing = any(node.get(key) for key in ("mixup_alpha", "cutmix_alpha"))
    on = [key if value is True else f"{key} {_plain(value)}" for key, value in node.items()
          if value not in (None, False, 0, 0.0, "none") and not isinstance(value, (dict, list))
          and not str(key).startswith("_") and (mixing or key not in MIXING)]
    return ", ".join(on) or "none"


def _regularization(config: dict[str, Any]) -> str:
    values = {}
    for source in ("module", "regularization", "optimizer"):  # older runs kept some of them on the module
        for key in ("weight_decay", "max_norm", "label_smoothing"):
            value = _get(config, f"{source}.{key}")
            if value not in (None, 0, 0.0) and not isinstance(value, (bool, dict, list)):
                values[key] = value
    return ", ".join(f"{key} {_plain(value)}" for key, value in values.items()) or "none"


def _averaging(config: dict[str, Any]) -> str:
    callbacks = _get(config, "callbacks")
    if not isinstance(callbacks, dict):
        return MISSING
    found = [str(key) for key, value in callbacks.items() if value and any(
        word in str(key) for word in ("ema", "swa", "averag", "early_stop"))]
    return ", ".join(found) or "none"


FIELDS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("epochs", lambda config: _plain(_get(config, "trainer.max_epochs"))),
    ("batch", lambda config: _plain(_get(config, "data.batch_size"))),
    ("optimizer", _optimizer),
    ("scheduler", lambda config: _plain(_get(config, "scheduler.name"))),
    ("augmentation", lambda config: _augmentation(_get(config, "augmentation"))),
    ("regularization", _regularization),
    ("averaging / stopping", _averaging),
    ("test-time flip", lambda config: _plain(_get(config, "model.tta_flip") or False)),
    ("train subset", lambda config: _plain(_get(config, "data.train_subset"))),
    ("precision", lambda config: _plain(_get(config, "trainer.precision") or "32-true")),
)


def group_protocol(runs: Sequence[Run]) -> dict[str, str]:
    """Each field's value over a model's runs (those with a readable resolved_config.yaml); runs that disagree show
    every value."""
    configs = [read_or_none(read_run_yaml, run.path / RESOLVED_CONFIG_FILE) for run in runs]
    protocols = [{name: read(config) for name, read in FIELDS} for config in configs if isinstance(config, dict)]
    merged = {}
    for name, _ in FIELDS:
        values = sorted({protocol[name] for protocol in protocols})
        merged[name] = MISSING if not values else values[0] if len(values) == 1 else f"mixed: {' / '.join(values)}"
    return merged


def protocol_section(groups: Sequence[Group]) -> list[str]:
    """report.md's protocol table (models in leaderboard order) and the fields in which they differ."""
    protocols = {group.label: group_protocol(group.runs) for group in groups}
    body = [[label, *(protocol[name] for name, _ in FIELDS)] for label, protocol in protocols.items()]
    differing = [name for name, _ in FIELDS if len({protocol[name] for protocol in protocols.values()}) > 1]
    verdict = (f"The protocols differ in: {', '.join(differing)}." if differing
               else "Every model here was trained with the same protocol.")
    return ["## Training protocols", "", markdown_table(("model", *(name for name, _ in FIELDS)), body), "",
            f"{verdict} A paired test on the same folds says which trained model (architecture and protocol "
            "together) is better, not which architecture is; a protocol difference is a rival explanation of every "
            "difference below. From each run's resolved_config.yaml.", ""]
