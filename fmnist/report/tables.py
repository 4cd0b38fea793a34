"""The studies' tables, one row per model configuration: numbers for leaderboard.csv, text for report.md."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmnist.core.constants import CLASS_NAMES
from fmnist.core.limits import clip
from fmnist.core.metric_keys import class_column, class_metric_key
from fmnist.core.numbers import is_finite_number, markdown_table, mean_and_std, percent
from fmnist.report.collect import Collection, Group

# Averaged over a group's runs (folds); each also gets a sample standard deviation (ddof=1).
RUN_METRICS = ("val/acc", "train/acc", "gap", "test/acc", "test/precision", "test/recall", "test/f1",
               "params", "epochs", "ms_per_step", "images_per_second", "train_seconds")
PER_CLASS = (("precision", "precision"), ("recall", "acc"), ("f1", "f1"))  # (column label, logged metric)


def _number(value: Any) -> float | None:
    return float(value) if is_finite_number(value) else None


def _run_value(metrics: dict[str, Any], key: str) -> float | None:
    if key == "gap":  # train minus validation accuracy: how much the model overfits
        train, val = _number(metrics.get("train/acc")), _number(metrics.get("val/acc"))
        return None if train is None or val is None else train - val
    return _number(metrics.get(key))


def group_row(group: Group) -> dict[str, Any]:
    """One leaderboard row: means and standard deviations over the group's folds, plus the ensemble."""
    row: dict[str, Any] = {"model": group.label, "architecture": group.model, "runs": len(group.runs),
                           "folds": " ".join(str(run.metrics.get("fold")) for run in group.runs)}
    for key in RUN_METRICS:
        mean, std = mean_and_std([_run_value(run.metrics, key) for run in group.runs])
        name = key.replace("/", "_")
        row[f"{name}_mean"], row[f"{name}_std"] = mean, std
    row["ensemble_members"] = group.ensembles[0]["members"] if group.ensembles else None
    row["ensemble_test_acc"] = mean_and_std([_number(e.get("test/acc")) for e in group.ensembles])[0]
    row["ensemble_test_f1"] = mean_and_std([_number(e.get("test/f1")) for e in group.ensembles])[0]
    for label, metric in PER_CLASS:
        for name in CLASS_NAMES:
            key = class_metric_key("test", metric, name)
            row[class_column("test", label, name)] = mean_and_std([_number(run.metrics.get(key))
                                                               for run in group.runs])[0]
    row["overrides"] = clip(" ".join(group.overrides))
    return row


def leaderboard(collection: Collection) -> list[dict[str, Any]]:
    """Ranked by cross-validated accuracy: the test set is reported, never used to rank."""
    rows = [group_row(group) for group in collection.groups]
    return sorted(rows, key=lambda row: -(row["val_acc_mean"] if row["val_acc_mean"] is not None else -1.0))


def number(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def count(number_of: int, unit: str) -> str:
    """'1 seed', '3 folds'."""
    return f"{number_of} {unit}{'' if number_of == 1 else 's'}"


MAIN_HEADERS = ("model", "folds", "val acc % (CV mean ± std)", "train acc %", "train − val (pp)",
                "test acc % (fold models)", "test acc % (ensemble)", "macro precision %", "macro recall %",
                "macro F1 %", "params", "ms/step", "images/s", "train time (s)", "epochs")


def main_table(rows: Sequence[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        gap = row["gap_mean"]
        body.append([
            row["model"], str(row["runs"]), percent(row["val_acc_mean"], row["val_acc_std"]),
            percent(row["train_acc_mean"]), points(gap),
            percent(row["test_acc_mean"], row["test_acc_std"]), percent(row["ensemble_test_acc"]),
            percent(row["test_precision_mean"]), percent(row["test_recall_mean"]), percent(row["test_f1_mean"]),
            number(row["params_mean"]), number(row["ms_per_step_mean"], 2), number(row["images_per_second_mean"]),
            number(row["train_seconds_mean"], 1), number(row["epochs_mean"], 1 if row["epochs_std"] else 0),
        ])
    return markdown_table(MAIN_HEADERS, body)


def per_class_table(row: dict[str, Any]) -> str:
    body = [[name, *(percent(row[class_column("test", label, name)]) for label, _ in PER_CLASS)]
            for name in CLASS_NAMES]
    return markdown_table(("class", "precision %", "recall %", "F1 %"), body)


def run_link(path: Path, out: Path) -> str:
    """A run dir as a link relative to the report in `out`, so a report reads the same on every machine."""
    relative = Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()
    return f"[{Path(path).name}]({relative})"


def failures_table(collection: Collection, out: Path) -> str:
    body = [[run_link(failure.path, out), clip(failure.model), clip(failure.error)] for failure in collection.failures]
    body += [[run_link(path.parent, out), "", f"ignored {path.name}: {clip(reason)}"]
             for path, reason in collection.ignored]
    return markdown_table(("run", "model", "error"), body)


def pruned_table(collection: Collection, out: Path) -> str:
    body = [[run_link(run.path, out), clip(run.model), clip(run.error)] for run in collection.pruned]
    return markdown_table(("run", "model", "why"), body)


def interval_text(interval: Any, digits: int = 2) -> str:
    """'91.20 [90.85, 91.55]' in percent; a lone value where the interval is undefined (one run)."""
    if interval is None:
        return "–"
    if not math.isfinite(interval.low):
        return f"{100 * interval.estimate:.{digits}f}"
    return f"{100 * interval.estimate:.{digits}f} [{100 * interval.low:.{digits}f}, {100 * interval.high:.{digits}f}]"


def points(difference: float | None) -> str:
    """A difference of accuracies in signed percentage points."""
    return "–" if difference is None else f"{100 * difference:+.2f}"


def yes_no(flag: bool | None) -> str:
    return {True: "yes", False: "no", None: "–"}[flag]


def p_text(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def unit_count(model: Any) -> str:
    """'5 folds', '3 seeds', or for repeated k-fold '3 split seeds x 5 folds'."""
    if not model.repeated:
        return count(len(model.val_by_unit), model.unit_kind)
    folds = len({fold for _, fold in model.val_by_unit})
    return f"{count(len(model.split_seeds), 'split seed')} x {count(folds, 'fold')}"


UNCERTAINTY_HEADERS = ("model", "study", "runs", "val acc % (mean ± std)", "val acc % [95% t-interval]",
                       "val acc % last epoch (mean)",
                       "test acc % (fold models, mean ± std)", "test acc % fold ensemble [95% bootstrap]",
                       "study's figure", "study's figure [95% binomial]", "ours − study (pp)",
                       "ours − study, test (pp)", "within 0.5 pp", "intervals meet", "train time per run (s)")


def uncertainty_table(models: Sequence[Any]) -> str:
    body = []
    for model in models:
        published = model.published
        units = f"{len(model.group.runs)} ({unit_count(model)})"
        body.append([
            model.label, published.study if published else "–", units,
            percent(model.val.estimate, model.val_std if math.isfinite(model.val_std) else None),
            interval_text(model.val), percent(model.last_val), percent(model.test_mean, model.test_std),
            interval_text(model.ensemble),
            f"{published.text} ({published.split})" if published else "–",
            interval_text(model.published_interval), points(model.difference), points(model.test_difference),
            yes_no(model.reproduced), yes_no(model.consistent), number(model.train_seconds, 0),
        ])
    return markdown_table(UNCERTAINTY_HEADERS, body)


def runs_table(models: Sequence[Any]) -> str:
    """Every run's test accuracy with its bootstrap interval over the 10k test images."""
    body = []
    for model in models:
        by_key = {(run.metrics.get("split_seed"), run.metrics.get("fold"), run.metrics.get("seed")): run.metrics
                  for run in model.group.runs}
        for fold, seed, interval, split_seed in model.test_runs:
            metrics = by_key.get((split_seed, fold, seed), {})
            shown = f"{split_seed}/{fold}" if model.repeated else str(fold)  # repeated k-fold: split seed/fold
            body.append([model.label, shown, str(seed), percent(metrics.get("val/acc")),
                         interval_text(interval), str(metrics.get("best_epoch", "–")),
                         number(metrics.get("train_seconds"), 0)])
    return markdown_table(("model", "fold", "seed", "val acc %", "test acc % [95% bootstrap]", "best epoch",
                           "train time (s)"), body)


def spread_table(models: Sequence[Any]) -> str | None:
    rows = [model for model in models if math.isfinite(model.seed_std)]
    if not rows:
        return None
    body = [[model.label, str(len({run.metrics.get("seed") for run in model.group.runs})),
             str(len({run.metrics.get("fold") for run in model.group.runs})),
             f"{100 * model.seed_std:.2f}", "–" if not math.isfinite(model.fold_std) else f"{100 * model.fold_std:.2f}"]
            for model in rows]
    return markdown_table(("model", "seeds", "folds", "seed std (pp)", "fold std (pp)"), body)


PAIR_HEADERS = ("first", "second", "val diff pp [95% CI]", "p (corrected t)", "p Holm", "test: only first right",
                "only second right", "McNemar p", "p Holm")


def difference_text(test: Any) -> str:
    """A paired difference in signed points with its interval, '+0.43 [-0.64, +1.50]'; alone where undefined."""
    if test is None:
        return "–"
    if not math.isfinite(test.low):
        return f"{100 * test.difference:+.2f}"
    return f"{100 * test.difference:+.2f} [{100 * test.low:+.2f}, {100 * test.high:+.2f}]"


def pairs_table(pairs: Sequence[Any]) -> str:
    body = []
    for pair in pairs:
        if not pair.comparable:
            body.append([pair.first, pair.second, f"not comparable ({pair.reason})", "", "", "", "", "", ""])
            continue
        test = pair.val
        body.append([pair.first, pair.second, difference_text(test), p_text(test.p_value if test else math.nan),
                     p_text(pair.val_p_holm),
                     str(pair.only_first), str(pair.only_second), p_text(pair.mcnemar_p), p_text(pair.mcnemar_p_holm)])
    return markdown_table(PAIR_HEADERS, body)


SUMMARY_HEADERS = ("model", "study", "runs", "val acc % mean ± std [95% CI]", "test acc % ensemble [95% CI]",
                   "study's figure", "ours − study (pp)", "ours − study, test (pp)", "within 0.5 pp",
                   "train time per run (s)")


def summary_table(models: Sequence[Any]) -> str:
    """The README's compact form of the uncertainty table: one row per model of every study."""
    body = []
    for model in models:
        published = model.published
        std = f" ± {100 * model.val_std:.2f}" if math.isfinite(model.val_std) else ""
        ci = f" [{100 * model.val.low:.2f}, {100 * model.val.high:.2f}]" if math.isfinite(model.val.low) else ""
        body.append([
            model.label, published.study if published else "–",
            count(len(model.group.runs), model.unit_kind), f"{100 * model.val.estimate:.2f}{std}{ci}",
            interval_text(model.ensemble), f"{published.text}" if published else "–",
            points(model.difference), points(model.test_difference), yes_no(model.reproduced),
            number(model.train_seconds, 0),
        ])
    return markdown_table(SUMMARY_HEADERS, body)
