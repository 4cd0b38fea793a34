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
from fmnist.report.collect import Collection, Failure, Group
from fmnist.report.compare import unit_text

# Averaged over a group's runs (folds); each also gets a sample standard deviation (ddof=1).
RUN_METRICS = ("val/acc", "train/acc", "gap", "test/acc", "test/precision", "test/recall", "test/f1",
               "params", "epochs", "ms_per_step", "images_per_second", "train_seconds")
PER_CLASS = (("precision", "precision"), ("recall", "acc"), ("f1", "f1"))  # (column label, logged metric)


def finite(value: Any) -> float | None:
    """A run file's number, or None for anything else (run files are data)."""
    return float(value) if is_finite_number(value) else None


def _over_runs(group: Group, key: str) -> tuple[float | None, float | None]:
    """Mean and sample std over the group's runs (folds); "gap" is train minus val accuracy, how much it overfits."""
    if key != "gap":
        return mean_and_std(finite(run.metrics.get(key)) for run in group.runs)
    gaps = [(finite(run.metrics.get("train/acc")), finite(run.metrics.get("val/acc"))) for run in group.runs]
    return mean_and_std(None if train is None or val is None else train - val for train, val in gaps)


def group_row(group: Group) -> dict[str, Any]:
    """One leaderboard row: means and standard deviations over the group's folds, plus the ensemble."""
    row: dict[str, Any] = {"model": group.label, "architecture": group.model, "runs": len(group.runs),
                           "folds": " ".join(str(run.metrics.get("fold")) for run in group.runs)}
    for key in RUN_METRICS:
        name = key.replace("/", "_")
        row[f"{name}_mean"], row[f"{name}_std"] = _over_runs(group, key)
    row["ensemble_members"] = group.ensembles[0]["members"] if group.ensembles else None
    row["ensemble_test_acc"] = mean_and_std(finite(e.get("test/acc")) for e in group.ensembles)[0]
    row["ensemble_test_f1"] = mean_and_std(finite(e.get("test/f1")) for e in group.ensembles)[0]
    for label, metric in PER_CLASS:
        for name in CLASS_NAMES:
            row[class_column("test", label, name)] = _over_runs(group, class_metric_key("test", metric, name))[0]
    row["overrides"] = clip(" ".join(group.overrides))
    return row


def leaderboard(collection: Collection) -> list[dict[str, Any]]:
    """Ranked by cross-validated accuracy: the test set is reported, never used to rank."""
    return sorted(map(group_row, collection.groups), key=lambda row: -row["val_acc_mean"])  # val/acc is required


def number(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def count(number_of: int, unit: str) -> str:
    """'1 seed', '3 folds'."""
    return f"{number_of} {unit}{'' if number_of == 1 else 's'}"


def main_table(rows: Sequence[dict[str, Any]]) -> str:
    body = [[row["model"], str(row["runs"]), percent(row["val_acc_mean"], row["val_acc_std"]),
             percent(row["train_acc_mean"]), points(row["gap_mean"]),
             percent(row["test_acc_mean"], row["test_acc_std"]), percent(row["ensemble_test_acc"]),
             percent(row["test_precision_mean"]), percent(row["test_recall_mean"]), percent(row["test_f1_mean"]),
             number(row["params_mean"]), number(row["ms_per_step_mean"], 2), number(row["images_per_second_mean"]),
             number(row["train_seconds_mean"], 1), number(row["epochs_mean"], 1 if row["epochs_std"] else 0)]
            for row in rows]
    return markdown_table(("model", "folds", "val acc % (CV mean ± std)", "train acc %", "train − val (pp)",
                           "test acc % (fold models)", "test acc % (ensemble)", "macro precision %", "macro recall %",
                           "macro F1 %", "params", "ms/step", "images/s", "train time (s)", "epochs"), body)


def per_class_table(row: dict[str, Any]) -> str:
    body = [[name, *(percent(row[class_column("test", label, name)]) for label, _ in PER_CLASS)]
            for name in CLASS_NAMES]
    return markdown_table(("class", "precision %", "recall %", "F1 %"), body)


def run_link(path: Path, out: Path) -> str:
    """A run dir as a link relative to the report in `out`, so a report reads the same on every machine."""
    relative = Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()
    return f"[{Path(path).name}]({relative})"


def failures_table(failures: Sequence[Failure], out: Path, ignored: Sequence[tuple[Path, str]] = (),
                   why: str = "error") -> str:
    body = [[run_link(failure.path, out), clip(failure.model), clip(failure.error)] for failure in failures]
    body += [[run_link(path.parent, out), "", f"ignored {path.name}: {clip(reason)}"] for path, reason in ignored]
    return markdown_table(("run", "model", why), body)


def bracket(interval: Any, spec: str = ".2f") -> str:
    """' [90.85, 91.55]' in percent; nothing where the interval is undefined (one run)."""
    if not math.isfinite(interval.low):
        return ""
    return f" [{100 * interval.low:{spec}}, {100 * interval.high:{spec}}]"


def image(title: str, path: Path | None, out: Path) -> list[str]:
    """A figure's Markdown lines, linked relative to the report; none where the figure was not drawn."""
    return [f"![{title}]({path.relative_to(out).as_posix()})", ""] if path is not None else []


def interval_text(interval: Any, signed: bool = False) -> str:
    """'91.20 [90.85, 91.55]' in percent, or a paired difference in signed points '+0.43 [-0.64, +1.50]'."""
    if interval is None:
        return "–"
    spec = "+.2f" if signed else ".2f"
    return f"{100 * interval.estimate:{spec}}" + bracket(interval, spec)


def points(difference: float | None) -> str:
    """A difference of accuracies in signed percentage points."""
    return "–" if difference is None else f"{100 * difference:+.2f}"


YES_NO = {True: "yes", False: "no", None: "–"}


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


def uncertainty_table(models: Sequence[Any]) -> str:
    body = []
    for model in models:
        published = model.published
        body.append([
            model.label, published.study if published else "–", f"{len(model.group.runs)} ({unit_count(model)})",
            percent(model.val.estimate, model.val_std), interval_text(model.val), percent(model.last_val),
            percent(model.test_mean, model.test_std), interval_text(model.ensemble),
            f"{published.text} ({published.split})" if published else "–",
            interval_text(model.published_interval), points(model.difference), points(model.test_difference),
            YES_NO[model.reproduced], YES_NO[model.consistent], number(model.train_seconds, 0),
        ])
    return markdown_table(("model", "study", "runs", "val acc % (mean ± std)", "val acc % [95% t-interval]",
                           "val acc % last epoch (mean)", "test acc % (fold models, mean ± std)",
                           "test acc % fold ensemble [95% bootstrap]", "study's figure",
                           "study's figure [95% binomial]", "ours − study (pp)", "ours − study, test (pp)",
                           "within 0.5 pp", "intervals meet", "train time per run (s)"), body)


def runs_table(models: Sequence[Any]) -> str:
    """Every run's test accuracy with its bootstrap interval over the 10k test images."""
    body = []
    for model in models:
        for metrics, interval in model.test_runs:
            unit = unit_text((metrics.get("split_seed"), metrics.get("fold")), model.repeated)
            body.append([model.label, unit, str(metrics.get("seed")), percent(metrics.get("val/acc")),
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
             percent(model.seed_std), percent(model.fold_std)]
            for model in rows]
    return markdown_table(("model", "seeds", "folds", "seed std (pp)", "fold std (pp)"), body)


def pairs_table(pairs: Sequence[Any]) -> str:
    body = []
    for pair in pairs:
        if not pair.comparable:
            body.append([pair.first, pair.second, f"not comparable ({pair.reason})", "", "", "", "", "", ""])
            continue
        body.append([pair.first, pair.second, interval_text(pair.val, signed=True), p_text(pair.val.p_value),
                     p_text(pair.val_p_holm), str(pair.only_first), str(pair.only_second), p_text(pair.mcnemar_p),
                     p_text(pair.mcnemar_p_holm)])
    return markdown_table(("first", "second", "val diff pp [95% CI]", "p (corrected t)", "p Holm",
                           "test: only first right", "only second right", "McNemar p", "p Holm"), body)


def summary_table(models: Sequence[Any]) -> str:
    """The README's compact form of the uncertainty table: one row per model of every study."""
    body = []
    for model in models:
        published = model.published
        body.append([
            model.label, published.study if published else "–",
            count(len(model.group.runs), model.unit_kind),
            percent(model.val.estimate, model.val_std) + bracket(model.val), interval_text(model.ensemble),
            published.text if published else "–",
            points(model.difference), points(model.test_difference), YES_NO[model.reproduced],
            number(model.train_seconds, 0),
        ])
    return markdown_table(("model", "study", "runs", "val acc % mean ± std [95% CI]", "test acc % ensemble [95% CI]",
                           "study's figure", "ours − study (pp)", "ours − study, test (pp)", "within 0.5 pp",
                           "train time per run (s)"), body)
