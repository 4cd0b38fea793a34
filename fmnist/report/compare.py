"""Per-model intervals and pairwise tests from the runs' own files; two groups are tested only on the same split
and the same units (folds, (split seed, fold) pairs or seeds), else the pair is "not comparable"."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from fmnist.core.metrics_file import split_of
from fmnist.core.numbers import mean_and_std
from fmnist.core.predictions import mean_ensemble
from fmnist.report import stats
from fmnist.report.collect import Group
from fmnist.report.published import PUBLISHED, TOLERANCE, Published


@dataclass
class ModelStats:
    """One model configuration's figures with their 95% intervals."""

    group: Group
    split: tuple  # what makes two groups' validation sets the same (the split seeds aside: see split_seeds)
    unit_kind: str  # "fold" or "seed"
    val_by_unit: dict  # unit -> val accuracy (mean over the unit's training seeds); a fold unit is (split seed, fold)
    val: stats.Interval
    val_std: float | None
    test_runs: list[tuple[dict, stats.Interval]]  # (metrics, bootstrap interval) of each run with predictions
    test_mean: float | None
    test_std: float | None
    test_interval: stats.Interval | None  # t-interval over the fold models' test accuracies
    ensemble: stats.Interval | None
    ensemble_correct: np.ndarray | None
    seed_std: float
    fold_std: float
    published: Published | None
    train_seconds: float | None
    last_val: float | None = None  # mean over runs of the last epoch's val accuracy (no checkpoint selection)
    notes: list[str] = field(default_factory=list)
    split_seeds: tuple = ()  # the partitions its folds come from: more than one for repeated k-fold

    @property
    def repeated(self) -> bool:
        return len(self.split_seeds) > 1

    @property
    def label(self) -> str:
        return self.group.label

    @property
    def difference(self) -> float | None:
        """Ours minus the study's, on the split the study published (val: CV mean; test: fold models' mean)."""
        if self.published is None or self.published.value is None:
            return None
        ours = self.val.estimate if self.published.split == "val" else self.test_mean
        return None if ours is None else ours - self.published.value

    @property
    def test_difference(self) -> float | None:
        """Our fold models' mean test accuracy minus the study's test figure, where it published one."""
        if self.published is None or self.test_mean is None:
            return None
        theirs = self.published.value if self.published.split == "test" else self.published.test_value
        return None if theirs is None else self.test_mean - theirs

    @property
    def reproduced(self) -> bool | None:
        difference = self.difference
        # rounded: 0.9311 - 0.9361 is 0.0050000000000000044 in floating point, and 0.50 pp is within 0.5 pp
        return None if difference is None else round(abs(difference), 9) <= TOLERANCE

    @property
    def published_interval(self) -> stats.Interval | None:
        if self.published is None or self.published.value is None:
            return None
        return stats.binomial_interval(self.published.value, self.published.images)

    @property
    def consistent(self) -> bool | None:
        """Whether our interval (val: t over folds; test: t over the fold models) meets the study's own."""
        theirs = self.published_interval
        if theirs is None or self.published is None:
            return None
        ours = self.val if self.published.split == "val" else self.test_interval
        if ours is None or not np.isfinite(ours.low):
            return None
        return stats.overlap(ours, theirs)


@dataclass
class Pair:
    first: str
    second: str
    comparable: bool
    reason: str = ""
    val: stats.PairedTest | None = None
    val_p_holm: float = math.nan
    only_first: int = 0  # test images the first ensemble gets right and the second wrong
    only_second: int = 0
    mcnemar_p: float = math.nan
    mcnemar_p_holm: float = math.nan


def _unit_order(item: tuple) -> tuple:
    """Units in numeric order: seeds, or (split seed, fold) with an unrecorded split seed first."""
    unit = item[0]
    if isinstance(unit, tuple):
        split_seed, fold = unit
        return (-1 if split_seed is None else split_seed, fold)
    return (unit,)


def _spread(metrics: list[dict], holdout: bool, split_seeds: tuple) -> tuple[float, float]:
    """(seed std, fold std) where every (seed, fold) ran once on one partition; a holdout has seeds only."""
    seeds = sorted({item.get("seed") for item in metrics}, key=str)
    folds = sorted({item.get("fold") for item in metrics}, key=str)
    if len(seeds) * len(folds) == len(metrics) and not holdout and len(split_seeds) == 1:
        table = np.full((len(seeds), len(folds)), np.nan)
        for item in metrics:
            table[seeds.index(item.get("seed")), folds.index(item.get("fold"))] = item["val/acc"]
        return stats.seed_and_fold_spread(table)
    if holdout and len(seeds) > 1:
        return float(np.std([item["val/acc"] for item in metrics], ddof=1)), math.nan
    return math.nan, math.nan


def model_stats(group: Group) -> ModelStats:
    metrics = [run.metrics for run in group.runs]
    splits = {split_of(item) for item in metrics}
    holdout = bool(metrics[0].get("holdout_size"))
    unit_kind = "seed" if holdout else "fold"
    by_unit: dict = {}
    for item in metrics:  # a seed on a holdout, else (split seed, fold)
        unit = int(item.get("seed") or 0) if holdout else (item.get("split_seed"), int(item.get("fold") or 0))
        by_unit.setdefault(unit, []).append(float(item["val/acc"]))
    split_seeds = tuple(sorted({item.get("split_seed") for item in metrics}, key=str)) if not holdout else ()
    val_values = [float(item["val/acc"]) for item in metrics]
    # each run's test interval from its predictions, where they disagree with metrics.json, and their ensemble
    predictions = [(run.metrics, run.predictions) for run in group.runs if run.predictions is not None]
    test_runs = [(item, stats.bootstrap_accuracy(found.correct)) for item, found in predictions]
    notes = [f"fold {item.get('fold')} seed {item.get('seed')}: predictions give test acc {found.accuracy:.4f}, "
             f"metrics.json {item['test/acc']:.4f}" for item, found in predictions
             if item.get("test/acc") is not None and abs(found.accuracy - item["test/acc"]) > 1e-4]
    correct = mean_ensemble([found for _, found in predictions]).correct if predictions else None
    test_values = [interval.estimate for _, interval in test_runs]
    test_mean, test_std = mean_and_std(test_values)
    seed_std, fold_std = _spread(metrics, holdout, split_seeds)
    last = [float(run.history["val/acc"].iloc[-1]) for run in group.runs
            if run.history is not None and "val/acc" in run.history and len(run.history)]
    model = ModelStats(
        group=group, split=splits.pop() if len(splits) == 1 else ("mixed",), unit_kind=unit_kind,
        val_by_unit={unit: float(np.mean(values)) for unit, values in sorted(by_unit.items(), key=_unit_order)},
        val=stats.t_interval(val_values), val_std=mean_and_std(val_values)[1], test_runs=test_runs,
        test_mean=test_mean, test_std=test_std, test_interval=stats.t_interval(test_values) if test_values else None,
        ensemble=None if correct is None else stats.bootstrap_accuracy(correct), ensemble_correct=correct,
        seed_std=seed_std, fold_std=fold_std, published=PUBLISHED.get(group.model),
        train_seconds=mean_and_std(item.get("train_seconds") for item in metrics)[0],
        last_val=float(np.mean(last)) if len(last) == len(group.runs) else None, notes=notes, split_seeds=split_seeds)
    if model.repeated:  # repeated k-fold: the k x r training sets overlap, so its interval is corrected like its tests
        model.val = stats.corrected_resampled_ttest(val_values, _test_train_ratio(model))
    return model


def _known(model: ModelStats) -> bool:
    """Runs written before metrics.json recorded the split, or groups mixing splits, cannot be paired."""
    split = model.split
    return (split != ("mixed",) and split[0] is not None and None not in model.split_seeds
            and (split[1] is not None or split[2] is not None))


def _test_train_ratio(model: ModelStats) -> float:
    """n_val / n_train of one resample, for the corrected t-test; 0 for seeds on one fixed split."""
    return 0.0 if model.unit_kind == "seed" else 1.0 / (model.split[1] - 1)


def unit_text(unit: int | tuple, repeated: bool) -> str:
    """A fold as '3', or with repeated k-fold as '1/3' (split seed 1, fold 3); a seed as '2'."""
    if not isinstance(unit, tuple):
        return str(unit)
    split_seed, fold = unit
    return f"{split_seed}/{fold}" if repeated else str(fold)


def _not_comparable(first: ModelStats, second: ModelStats) -> str | None:
    """Why two models cannot be paired unit by unit, or None where they can."""
    if not _known(first) or not _known(second):
        return "split not recorded"
    if first.split != second.split:
        return "different splits"
    if first.unit_kind != second.unit_kind:
        return "folds against seeds"
    if first.unit_kind == "fold" and first.split_seeds != second.split_seeds:
        seeds = [", ".join(map(str, model.split_seeds)) for model in (first, second)]
        return f"different split seeds: {seeds[0]} against {seeds[1]}"
    if set(first.val_by_unit) != set(second.val_by_unit):
        repeated = first.repeated or second.repeated
        units = [", ".join(unit_text(unit, repeated) for unit in model.val_by_unit) for model in (first, second)]
        return f"different {first.unit_kind}s{' (split seed/fold)' if repeated else ''}: {units[0]} against {units[1]}"
    return None


def compare(first: ModelStats, second: ModelStats) -> Pair:
    reason = _not_comparable(first, second)
    pair = Pair(first.label, second.label, comparable=reason is None, reason=reason or "")
    if reason is not None:
        return pair
    # paired by (split seed, fold), or by seed on a holdout
    differences = [first.val_by_unit[unit] - second.val_by_unit[unit] for unit in first.val_by_unit]
    pair.val = stats.corrected_resampled_ttest(differences, _test_train_ratio(first))
    if first.ensemble_correct is not None and second.ensemble_correct is not None:
        pair.only_first, pair.only_second, pair.mcnemar_p = stats.mcnemar_exact(first.ensemble_correct,
                                                                                second.ensemble_correct)
    return pair


def pairwise(models: list[ModelStats]) -> list[Pair]:
    """Every pair, with Holm's correction applied over all tested pairs (each test family separately)."""
    pairs = [compare(first, second) for first, second in combinations(models, 2)]
    val_holm = stats.holm([pair.val.p_value if pair.val else math.nan for pair in pairs])
    mcnemar_holm = stats.holm([pair.mcnemar_p for pair in pairs])
    for pair, val_p, mcnemar_p in zip(pairs, val_holm, mcnemar_holm, strict=True):
        pair.val_p_holm, pair.mcnemar_p_holm = val_p, mcnemar_p
    return pairs
