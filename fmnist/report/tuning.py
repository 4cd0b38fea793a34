"""The report of an equal-budget comparison (`python -m fmnist.tune`): the tuned models ranked on held-out folds,
and the tuning section: what each model's search cost, what tuning gained over the model's default configuration
on the same folds, and how optimistic the search's own best validation figure was. Built from the comparison's
comparison.json and its runs' files alone, so `make results` rebuilds a committed one. comparison.json is read
as data: each model's folders come from its (checked) name, and a value of the wrong kind shows "–".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.core.errors import FmnistError
from fmnist.core.limits import clip, model_name_problem
from fmnist.core.numbers import is_finite_number, is_int, markdown_table, percent
from fmnist.core.run_files import COMPARISON_FILE, RunFileError, read_run_json
from fmnist.report.build import build_report
from fmnist.report.collect import Collection, collect
from fmnist.report.compare import ModelStats, compare, model_stats
from fmnist.report.tables import difference_text, interval_text, p_text, points

TUNING_HEADERS = ("model", "trials (complete / pruned / failed)", "compute h", "search's best val %",
                  "tuned CV val % [95% t]", "optimism (pp)", "default CV val % [95% t]", "gain of tuning (pp) [95% CI]",
                  "p (corrected t)", "best configuration")


def _stats(directory: Path) -> ModelStats | None:
    groups = collect([directory]).groups
    return model_stats(groups[0]) if len(groups) == 1 else None


def _count(value: Any) -> str:
    return str(value) if is_int(value) else "–"


def _params(value: Any) -> str:
    if not isinstance(value, dict):
        return "–"
    shown = [f"{clip(key, 60)}={value:.3g}" if isinstance(value, float) else f"{clip(key, 60)}={clip(value, 60)}"
             for key, value in sorted(value.items(), key=lambda item: str(item[0]))]
    return f"`{' '.join(shown)}`".replace("|", "/") if shown else "–"


def tuning_row(model: str, entry: dict[str, Any], root: Path) -> list[str]:
    """One model's row: its search's budget and best figure, its tuned and default CV, the paired gain."""
    tuned, default = _stats(root / model / "tuned"), _stats(root / model / "default")
    trials = entry.get("trials") if isinstance(entry.get("trials"), dict) else {}
    best = entry.get("search_best") if is_finite_number(entry.get("search_best")) else None
    optimism = best - tuned.val.estimate if tuned is not None and best is not None else None
    gain = compare(tuned, default) if tuned is not None and default is not None else None
    gain_text = difference_text(gain.val) if gain is not None and gain.comparable else (
        f"not comparable ({gain.reason})" if gain is not None else "–")
    gain_p = p_text(gain.val.p_value) if gain is not None and gain.val is not None else "–"
    hours = entry.get("cpu_seconds")
    return [model, " / ".join(_count(trials.get(state)) for state in ("complete", "pruned", "failed")),
            f"{hours / 3600:.2f}" if is_finite_number(hours) else "–", percent(best),
            interval_text(tuned.val if tuned else None), points(optimism),
            interval_text(default.val if default else None), gain_text, gain_p, _params(entry.get("best_params"))]


def tuning_section(entries: dict[str, dict[str, Any]], root: Path, budget: dict[str, Any]) -> list[str]:
    rows = [tuning_row(model, entry, root) for model, entry in entries.items()]
    return ["## Tuning: the same budget for every model", "",
            f"Each model's own Optuna study ran {_count(budget.get('n_trials'))} trials of at most "
            f"{_count(budget.get('max_epochs'))} epochs (TPE, seed {_count(budget.get('sampler_seed'))}, pruner "
            f"{clip(budget.get('pruner') or 'none', 40)}) on one validation fold; its best configuration and its "
            "default one were then cross-validated on another partition of the train set, which no search validated "
            "on. The leaderboard and pairwise tests above rank the tuned configurations on those held-out folds.", "",
            markdown_table(TUNING_HEADERS, rows), "",
            "Search's best val: the best trial's validation accuracy, selected among the study's trials and so "
            "optimistic; optimism is it minus the tuned configuration's held-out CV mean. Gain of tuning: tuned "
            "minus default on the same held-out folds, with the corrected resampled t-test's 95% interval. Compute h: "
            "the trials' wall time (complete, pruned and failed) plus both cross-validations' training time.", ""]


def comparison_report(root: Path, title: str = "Tuned models, the same search budget each",
                      intro: str = "") -> Collection:
    """Write `<root>/report/` from `<root>/comparison.json` and the tuned and default runs below it."""
    try:
        record = read_run_json(root / COMPARISON_FILE)
    except RunFileError as exc:
        raise FmnistError(f"{clip(root / COMPARISON_FILE)} {exc}. Fix: rerun python -m fmnist.tune there.") from None
    models = record.get("models") if isinstance(record.get("models"), dict) else {}
    entries = {model: entry for model, entry in models.items()
               if model_name_problem(model) is None and isinstance(entry, dict)}
    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    budget = settings.get("budget") if isinstance(settings.get("budget"), dict) else {}
    return build_report([root / model / "tuned" for model in entries], root / "report", protocols=True,
                        title=title, intro=intro or f"Generated by `python -m fmnist.tune` from {COMPARISON_FILE} "
                        "and the runs in this folder.", sections=tuning_section(entries, root, budget))
