"""The tuning section of an equal-budget comparison's report (`python -m fmnist.tune`): what each model's search
cost, what tuning gained over the model's default configuration on the same held-out folds, and how optimistic the
search's own best validation figure was. Read from the comparison's comparison.json and its runs' files alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmnist.core.numbers import markdown_table
from fmnist.report.collect import collect
from fmnist.report.compare import ModelStats, compare, model_stats

TUNING_HEADERS = ("model", "trials (complete / pruned / failed)", "compute h", "search's best val %",
                  "tuned CV val % [95% t]", "optimism (pp)", "default CV val % [95% t]", "gain of tuning (pp) [95% CI]",
                  "p (corrected t)", "best configuration")


def _stats(directory: Path) -> ModelStats | None:
    groups = collect([directory]).groups
    return model_stats(groups[0]) if len(groups) == 1 else None


def _pp(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _interval(model: ModelStats | None) -> str:
    if model is None:
        return "–"
    return f"{_pp(model.val.estimate)} [{_pp(model.val.low)}, {_pp(model.val.high)}]"


def tuning_row(entry: dict[str, Any], root: Path) -> list[str]:
    """One model's row: its search's budget and best figure, its tuned and default CV, the paired gain."""
    tuned, default = _stats(root / entry["tuned_dir"]), _stats(root / entry["default_dir"])
    trials = entry["trials"]
    best = entry.get("search_best")
    optimism = best - tuned.val.estimate if tuned is not None and best is not None else None
    gain = compare(tuned, default) if tuned is not None and default is not None else None
    gain_text, p_text = "–", "–"
    if gain is not None and gain.val is not None:
        gain_text = f"{_pp(gain.val.difference, True)} [{_pp(gain.val.low, True)}, {_pp(gain.val.high, True)}]"
        p_text = f"{gain.val.p_value:.2g}" if math.isfinite(gain.val.p_value) else "–"
    elif gain is not None:
        gain_text = f"not comparable ({gain.reason})"
    params = " ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                      for key, value in sorted(entry.get("best_params", {}).items()))
    return [entry["model"], f"{trials['complete']} / {trials['pruned']} / {trials['failed']}",
            f"{entry['cpu_seconds'] / 3600:.2f}", _pp(best), _interval(tuned), _pp(optimism, True),
            _interval(default), gain_text, p_text, f"`{params}`" if params else "–"]


def tuning_section(entries: Sequence[dict[str, Any]], root: Path, budget: dict[str, Any]) -> list[str]:
    rows = [tuning_row(entry, root) for entry in entries]
    return ["## Tuning: the same budget for every model", "",
            f"Each model's own Optuna study ran {budget['n_trials']} trials of at most {budget['max_epochs']} "
            f"epochs (TPE, seed {budget['sampler_seed']}, pruner {budget['pruner'] or 'none'}) on one validation "
            "fold; its best configuration and its default one were then cross-validated on another partition of "
            "the train set, which no search validated on. The leaderboard and pairwise tests above rank the tuned "
            "configurations on those held-out folds.", "",
            markdown_table(TUNING_HEADERS, rows), "",
            "Search's best val: the best trial's validation accuracy, selected among the study's trials and so "
            "optimistic; optimism is it minus the tuned configuration's held-out CV mean. Gain of tuning: tuned "
            "minus default on the same held-out folds, with the corrected resampled t-test's 95% interval. Compute h: "
            "the trials' wall time (complete, pruned and failed) plus both cross-validations' training time.", ""]
