"""The report of an equal-budget comparison (`python -m fmnist.tune`), flat or nested, from comparison.json and
its runs' files alone (read as data: a value of the wrong kind shows "–"), so `make results` can rebuild it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.core.errors import FmnistError
from fmnist.core.limits import clip, model_name_problem
from fmnist.core.numbers import is_finite_number, is_int, markdown_table, percent
from fmnist.core.run_files import COMPARISON_FILE, RunFileError, read_run_json
from fmnist.report.build import build_report
from fmnist.report.collect import Collection, Group, collect
from fmnist.report.compare import ModelStats, compare, model_stats
from fmnist.report.stats import corrected_resampled_ttest
from fmnist.report.tables import finite, interval_text, p_text, points

TUNING_HEADERS = ("model", "trials (complete / pruned / failed)", "compute h", "search's best val %",
                  "tuned CV val % [95% t]", "optimism (pp)", "default CV val % [95% t]", "gain of tuning (pp) [95% CI]",
                  "p (corrected t)", "best configuration")
NESTED_HEADERS = ("model", "outer folds", "trials (complete / pruned / failed)", "compute h", "nested val % [95% t]",
                  "inner best val % (mean)", "selection bias (pp) [95% CI]", "p (corrected t)",
                  "selected across folds")
OUTER_HEADERS = ("model", "outer fold", "trials (complete / pruned / failed)", "inner best val %", "outer val %",
                 "selection bias (pp)", "test %", "selected configuration")
MAX_FOLDS = 6_000  # Fashion-MNIST's train set has 6,000 images per class: no stratified split has more folds


def _stats(directory: Path) -> ModelStats | None:
    groups = collect([directory]).groups
    return model_stats(groups[0]) if len(groups) == 1 else None


def _mapping(record: dict[str, Any], key: str) -> dict[str, Any]:
    """`record[key]` where it is a mapping, else an empty one (comparison.json is data)."""
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> str:
    return str(value) if is_int(value) else "–"


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else clip(value, 60)


def _code(shown: list[str]) -> str:
    return f"`{' '.join(shown)}`".replace("|", "/") if shown else "–"


def _params(value: Any) -> str:
    if not isinstance(value, dict):
        return "–"
    ordered = sorted(value.items(), key=lambda pair: str(pair[0]))
    return _code([f"{clip(key, 60)}={_value(item)}" for key, item in ordered])


def _trials(entries: list[dict[str, Any]]) -> str:
    """'complete / pruned / failed' summed over studies; "–" for a count some study did not record as a number."""
    counts = [_mapping(entry, "trials") for entry in entries]
    totals = ([item.get(state) for item in counts] for state in ("complete", "pruned", "failed"))
    return " / ".join(str(sum(values)) if values and all(is_int(value) for value in values) else "–"
                      for values in totals)


def _outer(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A nested comparison's per outer fold results of one model ("0", "1", ...), each a mapping."""
    return {fold: item for fold, item in _mapping(entry, "outer").items() if isinstance(item, dict)}


def _hours(seconds: Any) -> str:
    return f"{seconds / 3600:.2f}" if is_finite_number(seconds) else "–"


def tuning_row(model: str, entry: dict[str, Any], root: Path) -> list[str]:
    """One model's row: its search's budget and best figure, its tuned and default CV, the paired gain."""
    tuned, default = _stats(root / model / "tuned"), _stats(root / model / "default")
    best = finite(entry.get("search_best"))
    optimism = best - tuned.val.estimate if tuned is not None and best is not None else None
    gain = compare(tuned, default) if tuned is not None and default is not None else None
    gain_text = interval_text(gain.val, signed=True) if gain is not None and gain.comparable else (
        f"not comparable ({gain.reason})" if gain is not None else "–")
    gain_p = p_text(gain.val.p_value) if gain is not None and gain.val is not None else "–"
    return [model, _trials([entry]), _hours(entry.get("cpu_seconds")), percent(best),
            interval_text(tuned.val if tuned else None), points(optimism),
            interval_text(default.val if default else None), gain_text, gain_p, _params(entry.get("best_params"))]


def _budget(settings: dict[str, Any]) -> str:
    budget = _mapping(settings, "budget")
    return (f"{_count(budget.get('n_trials'))} trials of at most {_count(budget.get('max_epochs'))} epochs (TPE, "
            f"seed {_count(budget.get('sampler_seed'))}, pruner {clip(budget.get('pruner') or 'none', 40)})")


def tuning_section(entries: dict[str, dict[str, Any]], root: Path, settings: dict[str, Any]) -> list[str]:
    rows = [tuning_row(model, entry, root) for model, entry in entries.items()]
    return ["## Tuning: the same budget for every model", "",
            f"Each model's own Optuna study ran {_budget(settings)} on one validation fold; its best configuration and "
            "its default one were then cross-validated on another partition of the train set, which no search "
            "validated on. The leaderboard and pairwise tests above rank the tuned configurations on those held-out "
            "folds.", "",
            markdown_table(TUNING_HEADERS, rows), "",
            "Search's best val: the best trial's validation accuracy, selected among the study's trials and so "
            "optimistic; optimism is it minus the tuned configuration's held-out CV mean. Gain of tuning: tuned "
            "minus default on the same held-out folds, with the corrected resampled t-test's 95% interval. Compute h: "
            "the trials' wall time (complete, pruned and failed) plus both cross-validations' training time.", ""]


def recorded_outer_folds(settings: dict[str, Any]) -> list[int]:
    """A nested comparison's outer folds from its settings (data: anything malformed gives no fold)."""
    evaluation = _mapping(settings, "evaluation")
    num_folds, folds = evaluation.get("num_folds"), evaluation.get("folds")
    if not is_int(num_folds) or not 2 <= num_folds <= MAX_FOLDS:
        return []
    if folds is None:
        return list(range(num_folds))
    if not isinstance(folds, list) or not all(is_int(fold) and 0 <= fold < num_folds for fold in folds):
        return []
    return sorted(set(folds))


def merged_by_model(collections: list[Collection]) -> Collection:
    """One group per model over its outer folds (each selected its own configuration, which collect() keeps apart),
    with the overrides all folds share; single-fold CVs' one-model "ensembles" are left out."""
    groups: dict[str, Group] = {}
    for collection in collections:
        for group in collection.groups:
            merged = groups.setdefault(group.model, Group(group.model, group.overrides, label=group.model))
            merged.overrides = tuple(item for item in merged.overrides if item in group.overrides)
            merged.runs += group.runs
    return Collection([groups[model] for model in sorted(groups)],
                      [failure for collection in collections for failure in collection.failures],
                      [item for collection in collections for item in collection.ignored],
                      [run for collection in collections for run in collection.pruned])


def _outer_val(collection: Collection, model: str) -> tuple[float | None, float | None]:
    """The outer fold's val and test accuracy of `model` (the mean, should a folder hold more than one run)."""
    runs = [run.metrics for group in collection.groups if group.model == model for run in group.runs]
    val = [run["val/acc"] for run in runs]
    test = [run.get("test/acc") for run in runs]
    return (sum(val) / len(val) if val else None,
            sum(test) / len(test) if test and all(is_finite_number(value) for value in test) else None)


def outer_rows(model: str, entry: dict[str, Any], outer: dict[int, Collection]) -> tuple[list[list[str]], list]:
    """One row per outer fold (its search, its selection, its judgement), and the folds' measured biases."""
    searches = _outer(entry)
    rows, biases = [], []
    for fold, collection in outer.items():
        search = searches.get(str(fold), {})
        best = finite(search.get("search_best"))
        val, test = _outer_val(collection, model)
        bias = best - val if best is not None and val is not None else None
        if bias is not None:
            biases.append(bias)
        rows.append([model, str(fold), _trials([search]), percent(best), percent(val), points(bias), percent(test),
                     _params(search.get("best_params"))])
    return rows, biases


def _selected(entry: dict[str, Any], folds: list[int]) -> str:
    """Each parameter's selections over the outer folds: one value where every fold chose it (a stable selection),
    else the range of a number or the choices made."""
    searches = _outer(entry)
    chosen = [searches[str(fold)]["best_params"] for fold in folds
              if isinstance(searches.get(str(fold), {}).get("best_params"), dict)]
    shown = []
    for key in sorted({key for params in chosen for key in params}, key=str):
        values = [params[key] for params in chosen if key in params]
        if all(isinstance(value, float) for value in values) and len(set(values)) > 1:
            text = f"{min(values):.3g}..{max(values):.3g}"
        else:
            text = "/".join(sorted({_value(value) for value in values}))
        shown.append(f"{clip(key, 60)}={text}")
    return _code(shown)


def nested_row(model: str, entry: dict[str, Any], stats: ModelStats | None, biases: list[float],
               test_train_ratio: float) -> list[str]:
    """One model's nested summary: the estimate over outer folds, the searches' mean best, the mean bias."""
    searches = list(_outer(entry).values())
    best = [item["search_best"] for item in searches if is_finite_number(item.get("search_best"))]
    bias = corrected_resampled_ttest(biases, test_train_ratio) if biases else None
    return [model, str(len(stats.val_by_unit)) if stats else "0", _trials(searches), _hours(entry.get("cpu_seconds")),
            interval_text(stats.val if stats else None), percent(sum(best) / len(best) if best else None),
            interval_text(bias, signed=True), p_text(bias.p_value) if bias else "–"]


def nested_section(entries: dict[str, dict[str, Any]], folds: list[int], outer: dict[str, dict[int, Collection]],
                   collection: Collection, settings: dict[str, Any]) -> list[str]:
    """The nested mode's tables: per model, then per outer fold (`outer`: each model's runs, by outer fold)."""
    evaluation, search = _mapping(settings, "evaluation"), _mapping(settings, "search")
    ratio = 1 / (evaluation["num_folds"] - 1)  # n_val / n_train of an outer fold (recorded_outer_folds checked it)
    stats = {group.model: model_stats(group) for group in collection.groups}
    summary, per_fold = [], []
    for model, entry in entries.items():
        rows, biases = outer_rows(model, entry, outer[model])
        summary.append(nested_row(model, entry, stats.get(model), biases, ratio) + [_selected(entry, folds)])
        per_fold += rows
    return ["## Nested tuning: the selection bias, measured", "",
            f"Per model and outer fold k (folds {', '.join(map(str, folds))} of the {_count(evaluation['num_folds'])}"
            f" of split seed {_count(evaluation.get('split_seed'))}), its own Optuna study ran {_budget(settings)}, "
            f"every trial trained and validated inside fold k's training part (inner fold {_count(search.get('fold'))}"
            f" of {_count(search.get('num_folds'))}), so no trial saw fold k; the best configuration was then trained "
            "on the whole training part and validated on fold k. The leaderboard and pairwise tests above rank the "
            "models on those outer folds: the nested estimate.", "",
            markdown_table(NESTED_HEADERS, summary), "",
            "Inner best val: the best trial's validation accuracy on its inner fold, the best of the study's trials "
            "and so optimistic. Selection bias: inner best minus the selected configuration's val accuracy on the "
            "outer fold, measured per outer fold (the outer model also trained on more images unless "
            "data.train_subset fixes their number); its mean has the corrected resampled t-test's 95% interval, as "
            "the pairs above, and p tests a bias of zero. Selected across folds: one value where every outer fold "
            "chose it, else the range or the choices: how stable the selection is. Compute h: the trials' wall time "
            "plus the outer trainings' time.", "",
            "### Per outer fold", "", markdown_table(OUTER_HEADERS, per_fold), ""]


def nested_report(root: Path, entries: dict[str, dict[str, Any]], settings: dict[str, Any], intro: str) -> Collection:
    """The report of a nested comparison: every model's outer folds as one configuration, then the nested tables."""
    folds = recorded_outer_folds(settings)
    outer = {model: {fold: collect([root / model / f"outer_{fold}" / "tuned"]) for fold in folds}
             for model in entries}
    collection = merged_by_model([part for per_model in outer.values() for part in per_model.values()])
    directories = [root / model / f"outer_{fold}" / "tuned" for model in entries for fold in folds]
    sections = nested_section(entries, folds, outer, collection, settings) if folds else []
    return build_report(directories, root / "report", collection=collection, protocols=True,
                        title="Tuned models, nested: one search per outer fold", intro=intro, sections=sections)


def comparison_report(root: Path, intro: str = "") -> Collection:
    """Write `<root>/report/` from `<root>/comparison.json` and the runs below it: the tuned and default
    configurations' CVs, or a nested comparison's outer folds."""
    try:
        record = read_run_json(root / COMPARISON_FILE)
    except RunFileError as exc:
        raise FmnistError(f"{clip(root / COMPARISON_FILE)} {exc}. Fix: rerun python -m fmnist.tune there.") from None
    entries = {model: entry for model, entry in _mapping(record, "models").items()
               if model_name_problem(model) is None and isinstance(entry, dict)}
    settings = _mapping(record, "settings")
    intro = intro or f"Generated by `python -m fmnist.tune` from {COMPARISON_FILE} and the runs in this folder."
    if settings.get("mode") == "nested":
        return nested_report(root, entries, settings, intro)
    return build_report([root / model / "tuned" for model in entries], root / "report", protocols=True,
                        title="Tuned models, the same search budget each", intro=intro,
                        sections=tuning_section(entries, root, settings))
