"""Tests for sacbook.stats: the IQM by hand, bootstrap intervals against the
analytic standard error, stratification by task, seeds, degenerate inputs and
errors, learning-curve bands, time to reach a target, and aligning histories."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
import scipy.stats

from sacbook import stats
from sacbook.stats import Estimate


def test_iqm_is_the_mean_of_the_middle_half():
    scores = [300, 1, 400, 3, 100, 2, 200, 4]  # order does not matter
    # 8 scores: drop the 2 lowest (1, 2) and the 2 highest (300, 400)
    assert stats.iqm(scores) == (3 + 4 + 100 + 200) / 4
    assert isinstance(stats.iqm(scores), float)
    # 5 scores: int(5 / 4) = 1 cut from each end, the mean of the middle 3
    assert stats.iqm([5, 1, 4, 2, 3]) == 3.0


def test_iqm_ignores_an_outlier():
    scores = np.arange(10.0, 18.0)  # IQM = mean(12, 13, 14, 15) = 13.5
    wild = scores.copy()
    wild[-1] = 1e9
    assert stats.iqm(scores) == stats.iqm(wild) == 13.5
    assert np.mean(wild) > 1e8  # the mean does not ignore it


def test_iqm_axis():
    scores = np.array([[1.0, 10], [2, 20], [3, 30], [4, 40]])  # (runs, tasks)
    np.testing.assert_array_equal(stats.iqm(scores), [2.5, 25])
    assert stats.iqm(scores, axis=None) == (3 + 4 + 10 + 20) / 4


def test_interval_of_a_large_normal_sample_matches_the_analytic_error():
    n = 1000
    scores = np.random.default_rng(1).normal(size=n)  # true IQM 0 by symmetry
    est = stats.interval(scores)
    assert est.low < 0 < est.high
    assert est.low < est.point < est.high
    assert est.point == stats.iqm(scores)
    # Asymptotic variance of the 25%-trimmed mean of N(0, 1) (Stigler 1973):
    # (E[x^2; |x| < c] + 2 a c^2) / (1 - 2a)^2 with a = 1/4, c = the 75% quantile.
    normal, a = NormalDist(), 0.25
    c = normal.inv_cdf(1 - a)
    inner = (2 * normal.cdf(c) - 1) - 2 * c * normal.pdf(c)
    se = math.sqrt((inner + 2 * a * c**2) / (1 - 2 * a) ** 2 / n)
    expected = 2 * normal.inv_cdf(0.975) * se  # about 0.136
    assert expected / 1.3 < est.high - est.low < expected * 1.3


def _alternating(runs, values):
    return np.resize(np.asarray(values, dtype=float), runs)


def test_interval_is_stratified_by_task():
    # Task A scores 0 or 1, task B 100 or 101; 8 runs each, 16 pooled. The pooled
    # IQM keeps the middle 8: A's top 4 and B's bottom 4, so as long as a resample
    # holds 8 runs of each task (stratified) it lies in [50, 51].
    runs = 8
    scores = np.stack([_alternating(runs, [0, 1]), _alternating(runs, [100, 101])], 1)
    est = stats.interval(scores)
    assert est.point == stats.iqm(scores, axis=None) == (4 * 1 + 4 * 100) / 8
    assert 50 <= est.low <= est.point <= est.high <= 51
    assert est.n == runs and est.tasks == 2
    # Resampling the pooled column instead lets the mix of tasks vary, and the
    # IQM with it: the interval is many times wider.
    pooled = scipy.stats.bootstrap(
        (scores.ravel(),),
        stats.iqm,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert pooled.high - pooled.low > 10 * (est.high - est.low) > 0


def test_interval_of_constant_tasks_is_exact():
    # Every stratified resample is 6 zeros and 6 hundreds: IQM exactly 50.
    scores = np.stack([np.zeros(6), np.full(6, 100.0)], axis=1)
    est = stats.interval(scores)
    assert est.low == est.point == est.high == 50.0


def test_interval_of_identical_scores_is_a_point_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for value in (-150.0, 0.1):
            est = stats.interval(np.full(10, value))
            assert est.low == est.point == est.high == pytest.approx(value)


def test_interval_is_reproducible_with_a_seed():
    scores = np.random.default_rng(2).normal(-170, 20, size=12)
    first = stats.interval(scores, seed=3)
    assert stats.interval(scores, seed=3) == first
    other = stats.interval(scores, seed=4)
    assert other.point == first.point  # only the resamples depend on the seed
    assert (other.low, other.high) != (first.low, first.high)


def test_one_run_has_no_spread():
    est = stats.interval([-170.0])
    assert est == Estimate(-170.0, -170.0, -170.0, 1, 0.95)
    est = stats.interval([[-170.0, -150.0, -160.0]])  # 1 run x 3 tasks
    assert est.low == est.point == est.high == -160.0
    assert (est.n, est.tasks) == (1, 3)


def test_interval_with_another_statistic():
    scores = [1.0, 2.0, 3.0, 10.0]
    est = stats.interval(scores, np.mean)
    assert est.point == 4.0 and est.statistic == "mean"
    assert "mean of 4 runs" in str(est)


def test_estimate_str():
    est = Estimate(-146.24, -150.06, -142.96, 16, 0.95)
    assert str(est) == "-146.2 [-150.1, -143.0] (IQM of 16 runs, 95% CI)"
    est = Estimate(1.0, 0.0, 2.0, 1, 0.975, "median", tasks=3)
    assert str(est) == "1.0 [0.0, 2.0] (median of 1 run x 3 tasks, 97.5% CI)"


@pytest.mark.parametrize(
    "scores, kwargs, name",
    [
        ([1.0, np.nan, 3.0], {}, "scores"),
        ([1.0, 2.0], {"confidence": 0.0}, "confidence"),
        ([1.0, 2.0], {"confidence": 1.0}, "confidence"),
        ([1.0, 2.0], {"confidence": 95}, "confidence"),
        ([1.0, 2.0], {"n_resamples": 0}, "n_resamples"),
        ([1.0, 2.0], {"n_resamples": 1}, "n_resamples"),
        ([1.0, 2.0], {"n_resamples": 2.5}, "n_resamples"),
        (np.zeros((2, 3, 4)), {}, "scores"),
        (1.0, {}, "scores"),
        ([], {}, "scores"),
    ],
)
def test_interval_errors_name_the_parameter(scores, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} ") as info:
        stats.interval(scores, **kwargs)
    assert "\n" not in str(info.value)


def test_band_is_the_interval_of_each_column():
    curves = np.random.default_rng(3).normal(-300, 50, size=(16, 20))  # (runs, T)
    point, low, high = stats.band(curves, seed=5)
    assert point.shape == low.shape == high.shape == (20,)
    assert np.all(low <= point) and np.all(point <= high)
    assert np.all(low < high)
    for t in range(curves.shape[1]):
        est = stats.interval(curves[:, t], seed=5)
        assert point[t] == est.point
        # scipy draws one set of run indices per resample and applies it at every
        # time point, so with the same seed column t sees the very resamples that
        # interval() draws for it. Only rounding differs (trim_mean on a 3-D versus
        # a 2-D array): about 1e-13 here, where another seed moves a bound by ~1.
        assert low[t] == pytest.approx(est.low, rel=1e-12)
        assert high[t] == pytest.approx(est.high, rel=1e-12)


def test_band_of_one_run_and_errors():
    point, low, high = stats.band([[1.0, 2.0, 3.0]])
    for bound in (point, low, high):
        np.testing.assert_array_equal(bound, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="^curves contains NaN"):
        stats.band([[1.0, 2.0], [np.nan, 3.0]])
    with pytest.raises(ValueError, match=r"^curves must have shape \(runs, T\)"):
        stats.band([1.0, 2.0])
    with pytest.raises(ValueError, match="^confidence "):
        stats.band([[1.0], [2.0]], confidence=1.5)


STEPS = np.array([100, 200, 300, 400])


def test_first_reached():
    assert stats.first_reached(STEPS, [-900, -300, -190, -250]) == 300
    assert stats.first_reached(STEPS, [-900, -200, -190, -250]) == 200  # >= counts
    assert stats.first_reached(STEPS, [-900, -300, -250, -201]) == math.inf
    assert stats.first_reached(STEPS, [-9, -9, 5, 7], target=0) == 300
    # NaN (not evaluated) never counts, not even against the lowest target
    nan = np.nan
    assert stats.first_reached(STEPS, [nan, nan, -500, nan], -math.inf) == 300
    assert stats.first_reached(STEPS, [nan] * 4, -math.inf) == math.inf
    with pytest.raises(ValueError, match="shape"):
        stats.first_reached(STEPS, [1.0, 2.0])


def test_solved_fraction():
    values = np.array(
        [
            [-900, -150, -250, -100],  # reached at 200 (and dropped again: counts)
            [-900, -300, np.nan, -180],  # reached at 400
            [-900, np.nan, -201, -300],  # never
        ]
    )
    np.testing.assert_allclose(
        stats.solved_fraction(STEPS, values), [0, 1 / 3, 1 / 3, 2 / 3]
    )
    np.testing.assert_allclose(
        stats.solved_fraction(STEPS, values, at=[150, 1000]), [0, 2 / 3]
    )
    assert stats.solved_fraction(STEPS, values, target=-1000, at=100).shape == (1,)
    with pytest.raises(ValueError, match="values must have shape"):
        stats.solved_fraction(STEPS, values[:, :3])


def test_from_histories_aligns_runs():
    long_run = [
        {"env_steps": s, **({"eval_return": -s / 10} if s % 200 == 100 else {})}
        for s in range(100, 1000, 100)
    ]  # evaluated at 100, 300, 500, 700, 900
    short_run = [
        {"env_steps": 300, "eval_return": -20.0},
        {"env_steps": 100, "eval_return": -10.0},  # out of order
        {"env_steps": 500, "eval_return": None},  # no value: skipped
        {"env_steps": 700, "loss": 1.0},  # no key: skipped
    ]
    steps, values = stats.from_histories([long_run, short_run])
    np.testing.assert_array_equal(steps, [100, 300])
    np.testing.assert_array_equal(values, [[-10, -30], [-10, -20]])
    assert values.dtype == float

    steps, values = stats.from_histories([long_run], key="env_steps")
    assert steps.shape == values.shape[1:] == (9,)


def test_from_histories_errors():
    a = [{"env_steps": 100, "eval_return": 1.0}]
    b = [{"env_steps": 200, "eval_return": 2.0}, {"env_steps": 100}]
    with pytest.raises(ValueError, match="no env_steps value has 'eval_return'"):
        stats.from_histories([a, b])
    with pytest.raises(ValueError, match="histories is empty"):
        stats.from_histories([])
