"""The report's statistics on hand-made inputs, against values worked out by hand (or in R) beforehand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmnist.report import stats


def test_mcnemar_exact_p_of_a_known_table() -> None:
    # 10 images only the first model gets right, 2 only the second: p = 2 * P(X <= 2), X ~ Bin(12, 1/2)
    # = 2 * (1 + 12 + 66) / 4096 = 158 / 4096.
    first = np.r_[np.ones(10), np.zeros(2), np.ones(50), np.zeros(7)]
    second = np.r_[np.zeros(10), np.ones(2), np.ones(50), np.zeros(7)]
    only_first, only_second, p = stats.mcnemar_exact(first, second)
    assert (only_first, only_second) == (10, 2)
    assert p == pytest.approx(158 / 4096, rel=1e-12)
    assert stats.mcnemar_exact(first, first)[2] == 1.0  # no discordant image: nothing to tell them apart


def test_mcnemar_refuses_predictions_of_different_images() -> None:
    with pytest.raises(ValueError, match="same images"):
        stats.mcnemar_exact(np.ones(5), np.ones(6))


def test_holm_adjustment_of_a_known_list() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = stats.holm([0.01, math.nan, 0.02])  # an untested pair neither counts nor gets a value
    assert math.isnan(adjusted[1]) and adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)


def test_corrected_resampled_ttest_on_known_numbers() -> None:
    # d = 1.0, 2.0, 1.5, 1.2, 1.8 pp; mean 1.5 pp, s^2 = 17e-6; 5 folds: n_val / n_train = 1/4.
    # se = sqrt((1/5 + 1/4) * 17e-6) = 2.76586e-3, t = 5.42327, df 4 -> p = 0.0056049 (R: 2 * pt(-5.42327, 4)),
    # half-width = qt(0.975, 4) * se = 2.776445 * 2.76586e-3 = 7.67927e-3.
    test = stats.corrected_resampled_ttest([0.010, 0.020, 0.015, 0.012, 0.018], test_train_ratio=0.25)
    assert test.estimate == pytest.approx(0.015)
    assert test.p_value == pytest.approx(0.0056049, rel=1e-4)
    assert (test.low, test.high) == pytest.approx((0.015 - 7.67927e-3, 0.015 + 7.67927e-3), rel=1e-5)
    plain = stats.corrected_resampled_ttest([0.010, 0.020, 0.015, 0.012, 0.018], test_train_ratio=0.0)
    assert plain.p_value < test.p_value  # the correction only ever widens: the plain test is overconfident
    # the plain paired t-test, from scipy's own implementation
    from scipy.stats import ttest_1samp

    assert plain.p_value == pytest.approx(ttest_1samp([0.010, 0.020, 0.015, 0.012, 0.018], 0.0).pvalue)


def test_t_interval_of_known_values() -> None:
    # mean 3, s = sqrt(2.5), se = s / sqrt(5) = 0.707107, qt(0.975, 4) = 2.776445 -> +- 1.963243
    interval = stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert interval.estimate == 3.0
    assert (interval.low, interval.high) == pytest.approx((3 - 1.963243, 3 + 1.963243), rel=1e-6)
    assert math.isnan(stats.t_interval([0.9]).low)  # one fold: no interval, not a zero-width one


def test_bootstrap_interval_covers_the_mean_and_is_seeded() -> None:
    correct = np.random.default_rng(1).random(10_000) < 0.9
    interval = stats.bootstrap_accuracy(correct, resamples=1000, seed=3)
    assert interval.low < correct.mean() < interval.high
    # binomial standard error sqrt(0.9 * 0.1 / 10,000) = 0.003; a 95% interval is about +- 1.96 of it
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * 0.003, rel=0.15)
    assert stats.bootstrap_accuracy(correct, resamples=1000, seed=3) == interval


def test_seed_and_fold_spread_separates_the_two() -> None:
    # 2 seeds x 3 folds: the folds differ by 2 pp, a seed moves every fold by +-0.5 pp
    table = np.array([[0.895, 0.915, 0.935], [0.905, 0.925, 0.945]])
    seed_std, fold_std = stats.seed_and_fold_spread(table)
    assert seed_std == pytest.approx(np.std([0.895, 0.905], ddof=1))  # 0.00707
    assert fold_std == pytest.approx(0.02)


def test_binomial_interval_of_a_published_figure() -> None:
    # Clopper-Pearson for 9 of 10 (R: binom.test(9, 10)$conf.int) = 0.5549839, 0.9974714
    interval = stats.binomial_interval(0.9, 10)
    assert (interval.low, interval.high) == pytest.approx((0.5549839, 0.9974714), rel=1e-6)
    assert stats.overlap(interval, stats.Interval(0.99, 0.99, 0.999))
    assert not stats.overlap(interval, stats.Interval(0.5, 0.4, 0.55))
