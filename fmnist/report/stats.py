"""Whether one model beats another, and how sure we are: t-intervals over folds, a bootstrap over test images,
Nadeau and Bengio's corrected t-test (training folds overlap), McNemar's exact test and Holm's correction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedTest(Interval):
    """A difference (first minus second, the estimate) with its interval and two-sided p-value."""

    p_value: float
    n: int


def t_interval(values: Sequence[float]) -> Interval:
    """Mean and t-interval of independent-looking repeats (folds); one value gives no interval (nan)."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if len(array) < 2:
        return Interval(mean, float("nan"), float("nan"))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df=len(array) - 1) * array.std(ddof=1) / np.sqrt(len(array))
    return Interval(mean, mean - float(half), mean + float(half))


def bootstrap_accuracy(correct: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> Interval:
    """Accuracy of a 0/1 vector over test images with a seeded percentile bootstrap interval over the images."""
    correct = np.asarray(correct, dtype=float)
    result = stats.bootstrap((correct,), np.mean, n_resamples=resamples, confidence_level=CONFIDENCE,
                             method="percentile", rng=np.random.default_rng(seed), vectorized=True)
    interval = result.confidence_interval
    return Interval(float(correct.mean()), float(interval.low), float(interval.high))


def binomial_interval(accuracy: float, images: int) -> Interval:
    """The exact (Clopper-Pearson) interval of a published figure, whose per-image results we do not have."""
    correct = int(round(accuracy * images))
    interval = stats.binomtest(correct, images).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return Interval(accuracy, float(interval.low), float(interval.high))


def overlap(first: Interval, second: Interval) -> bool:
    return first.low <= second.high and second.low <= first.high


def corrected_resampled_ttest(differences: Sequence[float], test_train_ratio: float) -> PairedTest:
    """Nadeau and Bengio (2003): overlapping training sets inflate the mean's variance from var/k to
    (1/k + n_test/n_train) var; test_train_ratio=0 is the ordinary paired t-test (seeds on one fixed split)."""
    array = np.asarray(differences, dtype=float)
    k = len(array)
    mean = float(array.mean())
    if k < 2:
        return PairedTest(mean, float("nan"), float("nan"), float("nan"), k)
    standard_error = float(np.sqrt((1 / k + test_train_ratio) * array.var(ddof=1)))
    if standard_error == 0.0:
        return PairedTest(mean, mean, mean, 1.0 if mean == 0.0 else 0.0, k)
    p_value = float(2 * stats.t.sf(abs(mean / standard_error), df=k - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=k - 1)) * standard_error
    return PairedTest(mean, mean - half, mean + half, p_value, k)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test on per-image correctness: (a right b wrong, a wrong b right, p), p a two-sided binomial
    test of the discordant images against 50/50."""
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"McNemar needs the same images: shapes {correct_a.shape} and {correct_b.shape}")
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error); NaN p-values (untestable pairs) stay NaN and do not count."""
    array = np.asarray(p_values, dtype=float)
    adjusted = np.full(array.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(array))
    order = tested[np.argsort(array[tested], kind="stable")]
    scaled = np.minimum(1.0, (len(order) - np.arange(len(order))) * array[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def seed_and_fold_spread(values: np.ndarray) -> tuple[float, float]:
    """(seed std pooled over folds, fold std of the seed means) of a seeds x folds table; NaN for one entry."""
    values = np.asarray(values, dtype=float)
    seeds, folds = values.shape
    seed_std = float(np.sqrt(values.var(axis=0, ddof=1).mean())) if seeds > 1 else float("nan")
    fold_std = float(values.mean(axis=0).std(ddof=1)) if folds > 1 else float("nan")
    return seed_std, fold_std
