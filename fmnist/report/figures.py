"""The report's figures (seaborn, headless: fmnist.core.figures sets Agg), drawn from the runs' own files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, StrMethodFormatter

from fmnist.core.constants import CLASS_NAMES
from fmnist.core.figures import confusion_heatmap, save_figure
from fmnist.core.metric_keys import class_column
from fmnist.report.collect import Group

CURVES = (("acc", "accuracy"), ("loss", "cross-entropy loss"))
save = partial(save_figure, dpi=110, bbox_inches="tight")  # the report's figures: cropped to what is drawn


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_")[:120] or "model"


def learning_curves(group: Group, path: Path) -> Path | None:
    """Train vs validation per epoch; with several folds the line is their mean and the bars their std."""
    histories = [run.history for run in group.runs if run.history is not None and "epoch" in run.history]
    data = pd.concat(histories).melt(id_vars="epoch").dropna() if histories else pd.DataFrame()
    if data.empty:
        return None
    data[["split", "metric"]] = data.pop("variable").str.split("/", expand=True)
    data["epoch"] += 1
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (metric, name) in zip(axes, CURVES, strict=True):
        sns.lineplot(data=data[data.metric == metric], x="epoch", y="value", hue="split", errorbar="sd",
                     err_style="bars", marker="o", hue_order=["train", "val"], ax=ax)
        ax.set_ylabel(name)
        ax.set_title(f"{name} ({len(group.runs)} fold{'s' if len(group.runs) != 1 else ''}, mean ± sd)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(group.label)
    figure.tight_layout()
    return save(figure, path)


def confusion(group: Group, path: Path) -> Path | None:
    """The fold ensemble's test confusion if there is one, else the fold models' mean (rounded)."""
    if group.ensembles and "test/confusion" in group.ensembles[0]:
        matrix, what = np.asarray(group.ensembles[0]["test/confusion"]), "fold ensemble"
    else:
        matrices = [np.asarray(run.metrics["test/confusion"]) for run in group.runs if "test/confusion" in run.metrics]
        if not matrices:
            return None
        matrix = np.rint(np.mean(matrices, axis=0))
        what = "one model" if len(matrices) == 1 else f"mean of {len(matrices)} fold models"
    figure = confusion_heatmap(torch.as_tensor(matrix.astype(np.int64)), CLASS_NAMES,
                               f"{group.label}: test confusion ({what})")
    return save(figure, path)


def accuracy_against(rows: Sequence[dict[str, Any]], column: str, xlabel: str, path: Path,
                     plain_ticks: bool = False) -> Path | None:
    """Val (CV) and test accuracy of every model against its size or cost (log axis); bars are fold std.
    `plain_ticks` labels 1, 2, 5 x 10^k in the axis' own unit, for a range too narrow for powers of ten."""
    points = [{"model": row["model"], "x": row[column], "split": split, "acc": 100 * row[f"{key}_mean"],
               "std": 100 * (row.get(f"{key}_std") or 0.0)} for row in rows if row.get(column) is not None
              for split, key in (("val (CV)", "val_acc"), ("test", "test_acc")) if row.get(f"{key}_mean") is not None]
    if not points:
        return None
    data = pd.DataFrame(points)
    figure, ax = plt.subplots(figsize=(8, 5.5))
    sns.scatterplot(data=data, x="x", y="acc", hue="split", style="split", s=70, ax=ax)
    ax.errorbar(data.x, data.acc, yerr=data["std"], fmt="none", ecolor="grey", alpha=0.6)
    for (model, x), acc in data[data.split == "test"].groupby(["model", "x"])["acc"].first().items():
        ax.annotate(model, (x, acc), textcoords="offset points", xytext=(5, -12), fontsize=8)
    ax.set_xscale("log")
    if plain_ticks:
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy %")
    ax.set_title(f"accuracy vs {xlabel}")
    figure.tight_layout()
    return save(figure, path)


def per_class_f1(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Models x classes heatmap of test F1: where every model struggles (Shirt) stands out as a column."""
    columns = [class_column("test", "f1", name) for name in CLASS_NAMES]
    table = 100 * pd.DataFrame([[row[column] for column in columns] for row in rows], dtype=float,
                               index=[row["model"] for row in rows], columns=list(CLASS_NAMES))
    if table.empty or table.isna().all().all():
        return None
    figure, ax = plt.subplots(figsize=(11, 1.2 + 0.45 * len(table)))
    sns.heatmap(table, annot=True, fmt=".1f", cmap="viridis", cbar_kws={"label": "test F1 %"}, ax=ax)
    ax.set_ylabel("")
    ax.set_title("per-class test F1 % (mean over fold models)")
    figure.tight_layout()
    return save(figure, path)


def forest(models: Sequence[Any], path: Path) -> Path | None:
    """Each model's CV val accuracy (t-interval) and fold-ensemble test accuracy (bootstrap), with the study's
    published figure and its binomial interval as a cross."""
    if not models:
        return None
    height = 1.6 + 0.55 * len(models)
    figure, ax = plt.subplots(figsize=(8, height))
    for row, model in enumerate(reversed(list(models))):
        points = [(model.val, -0.22, "C0", "val (CV mean, 95% t-interval)")]
        if model.ensemble is not None:
            points.append((model.ensemble, 0.22, "C1", "test (fold ensemble, 95% bootstrap)"))
        for interval, offset, colour, name in points:
            low, high = interval.low, interval.high
            if not np.isfinite(low):
                low = high = interval.estimate
            ax.errorbar(100 * interval.estimate, row + offset, xerr=[[100 * (interval.estimate - low)],
                        [100 * (high - interval.estimate)]], fmt="o", color=colour, capsize=3,
                        label=name if row == 0 else None)
        theirs = model.published_interval
        if theirs is not None:  # between our val and test lines; the table says which split it is
            ax.errorbar(100 * theirs.estimate, row, fmt="x", color="black", markersize=9, alpha=0.8,
                        xerr=[[100 * (theirs.estimate - theirs.low)], [100 * (theirs.high - theirs.estimate)]],
                        elinewidth=1, capsize=2, label=None if row else "study's figure (95% binomial)")
    ax.set_yticks(range(len(models)), [model.label for model in reversed(list(models))])
    ax.set_xlabel("accuracy %")
    ax.set_title("accuracy with 95% intervals")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    figure.legend(unique.values(), unique.keys(), fontsize=8, loc="lower center", ncol=3, frameon=False)
    ax.set_ylim(-0.6, len(models) - 0.4)
    figure.tight_layout(rect=(0, 0.35 / height, 1, 1))  # room for the legend below the axes
    return save(figure, path)


def difference_matrix(models: Sequence[Any], pairs: Sequence[Any], path: Path) -> Path | None:
    """Row minus column CV val accuracy (pp), marked where Holm-adjusted p < 0.05; blank cells are pairs on
    different splits (not comparable)."""
    labels = [model.label for model in models]
    if len(labels) < 2:
        return None
    index = {label: position for position, label in enumerate(labels)}
    values = np.full((len(labels), len(labels)), np.nan)
    text = np.full(values.shape, "", dtype=object)
    for pair in pairs:
        if not pair.comparable or pair.val is None:
            continue
        star = ("*" if pair.val_p_holm < 0.05 else "") + ("†" if pair.mcnemar_p_holm < 0.05 else "")
        for i, j, sign in ((index[pair.first], index[pair.second], 1), (index[pair.second], index[pair.first], -1)):
            values[i, j] = sign * 100 * pair.val.estimate
            text[i, j] = f"{values[i, j]:+.2f}{star}"
    if np.isnan(values).all():
        return None
    size = 1.5 + 0.8 * len(labels)
    figure, ax = plt.subplots(figsize=(size + 1.5, size))
    limit = float(np.nanmax(np.abs(values))) or 1.0
    sns.heatmap(pd.DataFrame(values, index=labels, columns=labels), annot=text, fmt="", cmap="RdBu",
                vmin=-limit, vmax=limit, cbar_kws={"label": "row − column val acc (pp)"}, ax=ax,
                annot_kws={"fontsize": 8})
    ax.set_title("paired CV difference; Holm p < 0.05: * corrected t-test, † McNemar (test)", fontsize=10)
    ax.tick_params(axis="x", labelrotation=30)
    figure.tight_layout()
    return save(figure, path)
