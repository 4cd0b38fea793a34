"""Per-model intervals and pairwise significance tests over a collection of runs (no model is re-run).

Validation figures come from each run's metrics.json, test figures from its test_predictions.npz. A group's
units are its folds (k-fold CV; with repeated k-fold, its (split seed, fold) pairs) or its seeds (a fixed holdout
repeated over seeds); two groups are compared only on the same split (same data.num_folds or data.holdout_size,
data.train_subset, the same split seeds) and the same units, else the pair is "not comparable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from fmnist.core.metrics_file import split_of
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
    val_std: float
    test_runs: list[tuple[int | None, int | None, stats.Interval]]  # (fold, seed, bootstrap interval) per run
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
        """Ours minus the study's, on the split the study published (val: CV mean; test: ensemble)."""
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


def _unit(metrics: dict, unit_kind: str) -> int | tuple[int | None, int]:
    if unit_kind == "seed":
        return int(metrics.get("seed") or 0)
    return (metrics.get("split_seed"), int(metrics.get("fold") or 0))


def _unit_order(item: tuple) -> tuple:
    """Units in numeric order: seeds, or (split seed, fold) with an unrecorded split seed first."""
    unit = item[0]
    if isinstance(unit, tuple):
        split_seed, fold = unit
        return (-1 if split_seed is None else split_seed, fold)
    return (unit,)


def model_stats(group: Group) -> ModelStats:
    metrics = [run.metrics for run in group.runs]
    splits = {split_of(item) for item in metrics}
    split = splits.pop() if len(splits) == 1 else ("mixed",)
    holdout = bool(metrics[0].get("holdout_size"))
    unit_kind = "seed" if holdout else "fold"
    by_unit: dict = {}
    for item in metrics:
        by_unit.setdefault(_unit(item, unit_kind), []).append(float(item["val/acc"]))
    val_by_unit = {unit: float(np.mean(values)) for unit, values in sorted(by_unit.items(), key=_unit_order)}
    split_seeds = tuple(sorted({item.get("split_seed") for item in metrics}, key=str)) if not holdout else ()
    val_values = [float(item["val/acc"]) for item in metrics]
    predictions = [(run.metrics, run.predictions) for run in group.runs if run.predictions is not None]
    notes = []
    test_runs = [(item.get("fold"), item.get("seed"), stats.bootstrap_accuracy(found.correct), item.get("split_seed"))
                 for item, found in predictions]
    for item, found in predictions:
        stored = item.get("test/acc")
        if stored is not None and abs(found.accuracy - stored) > 1e-4:
            notes.append(f"fold {item.get('fold')} seed {item.get('seed')}: predictions give test acc "
                         f"{found.accuracy:.4f}, metrics.json {stored:.4f}")
    test_values = [interval.estimate for _, _, interval, _ in test_runs]
    ensemble = ensemble_correct = None
    if predictions:
        ensemble_correct = mean_ensemble([found for _, found in predictions]).correct
        ensemble = stats.bootstrap_accuracy(ensemble_correct)
    seeds = sorted({item.get("seed") for item in metrics}, key=str)
    folds = sorted({item.get("fold") for item in metrics}, key=str)
    seed_std = fold_std = math.nan
    if len(seeds) * len(folds) == len(metrics) and not holdout and len(split_seeds) == 1:
        table = np.full((len(seeds), len(folds)), np.nan)
        for item in metrics:
            table[seeds.index(item.get("seed")), folds.index(item.get("fold"))] = item["val/acc"]
        seed_std, fold_std = stats.seed_and_fold_spread(table)
    elif holdout and len(seeds) > 1:
        seed_std = float(np.std(val_values, ddof=1))
    seconds = [item.get("train_seconds") for item in metrics if item.get("train_seconds") is not None]
    last = [float(run.history["val/acc"].iloc[-1]) for run in group.runs
            if run.history is not None and "val/acc" in run.history and len(run.history)]
    model = ModelStats(
        group=group, split=split, unit_kind=unit_kind, val_by_unit=val_by_unit,
        val=stats.t_interval(val_values),
        val_std=float(np.std(val_values, ddof=1)) if len(val_values) > 1 else math.nan,
        test_runs=test_runs, test_mean=float(np.mean(test_values)) if test_values else None,
        test_std=float(np.std(test_values, ddof=1)) if len(test_values) > 1 else None,
        test_interval=stats.t_interval(test_values) if test_values else None,
        ensemble=ensemble, ensemble_correct=ensemble_correct, seed_std=seed_std, fold_std=fold_std,
        published=PUBLISHED.get(group.model), train_seconds=float(np.mean(seconds)) if seconds else None,
        last_val=float(np.mean(last)) if len(last) == len(group.runs) else None, notes=notes,
        split_seeds=split_seeds)
    if model.repeated:  # repeated k-fold: the k x r training sets overlap, so its interval is corrected like its tests
        corrected = stats.corrected_resampled_ttest(val_values, _test_train_ratio(model))
        model.val = stats.Interval(corrected.difference, corrected.low, corrected.high)
    return model


def _known(model: ModelStats) -> bool:
    """Runs written before metrics.json recorded the split, or groups mixing splits, cannot be paired."""
    split = model.split
    seeds_known = all(seed is not None for seed in model.split_seeds)
    return (split != ("mixed",) and split[0] is not None and seeds_known
            and (split[1] is not None or split[2] is not None))


def _test_train_ratio(model: ModelStats) -> float:
    """n_val / n_train of one resample, for the corrected t-test; 0 for seeds on one fixed split."""
    if model.unit_kind == "seed":
        return 0.0
    num_folds = model.split[1]
    return 1.0 / (num_folds - 1)


def unit_text(unit: int | tuple, repeated: bool) -> str:
    """A fold as '3', or with repeated k-fold as '1/3' (split seed 1, fold 3); a seed as '2'."""
    if not isinstance(unit, tuple):
        return str(unit)
    split_seed, fold = unit
    return f"{split_seed}/{fold}" if repeated else str(fold)


def _units(model: ModelStats, repeated: bool = False) -> str:
    return ", ".join(unit_text(unit, repeated) for unit in model.val_by_unit)


def _seeds(model: ModelStats) -> str:
    return ", ".join(str(seed) for seed in model.split_seeds)


def compare(first: ModelStats, second: ModelStats) -> Pair:
    pair = Pair(first.label, second.label, comparable=False)
    if not _known(first) or not _known(second):
        pair.reason = "split not recorded"
        return pair
    if first.split != second.split:
        pair.reason = "different splits"
        return pair
    if first.unit_kind == second.unit_kind == "fold" and first.split_seeds != second.split_seeds:
        pair.reason = f"different split seeds: {_seeds(first)} against {_seeds(second)}"
        return pair
    if first.unit_kind != second.unit_kind or set(first.val_by_unit) != set(second.val_by_unit):
        repeated = first.repeated or second.repeated
        pair.reason = (f"different {first.unit_kind}s{' (split seed/fold)' if repeated else ''}: "
                       f"{_units(first, repeated)} against {_units(second, repeated)}"
                       if first.unit_kind == second.unit_kind else "folds against seeds")
        return pair
    pair.comparable = True
    units = list(first.val_by_unit)  # paired by (split seed, fold), or by seed on a holdout
    differences = [first.val_by_unit[unit] - second.val_by_unit[unit] for unit in units]
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
