"""The anomaly rules' statistical tests: hand-worked numbers, and calibration under the null
(simulated from known parameters, the tests must not report more than their level)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analytics_lib.live import stats


def test_count_prediction_of_a_steady_history():
    # 8 weeks of exactly 10: expected (80 + 1/2) / 8 = 10.0625. Poisson view: NB(n = 80.5,
    # p = 8/9), the posterior predictive of a Poisson rate under a Jeffreys prior. Log view: the
    # weeks do not vary, so tau2 = 0 and the prediction is normal on log(count + 1/2) with
    # variance (1 / 10.0625) * 9/8.
    pred = stats.predict_count([10] * 8)
    assert pred.mean == pytest.approx(10.0625)
    assert (pred.n, pred.p) == (pytest.approx(80.5), pytest.approx(8 / 9))
    assert pred.df == math.inf
    assert pred.log_var == pytest.approx(9 / 8 / 10.0625)
    # a drop to zero: P(X = 0) = (8/9) ** 80.5 = 7.6e-5; a spike to 30 is far in the NB's tail
    assert not pred.uses_log_view  # no wobble beyond Poisson: the exact Poisson view alone
    assert pred.lower_p_value(0) == pytest.approx((8 / 9) ** 80.5)
    assert pred.lower_p_value(0) == pytest.approx(7.6e-5, rel=0.01)
    assert pred.upper_p_value(30) == pytest.approx(sps.nbinom.sf(29, 80.5, 8 / 9))
    assert pred.upper_p_value(30) == pytest.approx(2.1e-6, rel=0.01)
    assert pred.upper_p_value(0) == 1.0


def test_count_prediction_widens_to_the_week_to_week_variance():
    history = [5, 15, 5, 15, 5, 15, 5, 15]
    pred = stats.predict_count(history)
    logs = np.log(np.asarray(history) + 0.5)
    tau2 = logs.var(ddof=1) - 1 / pred.mean  # 0.3067 - 0.0994 = 0.2073
    assert tau2 == pytest.approx(0.2073, abs=1e-4) and pred.tau2 == pytest.approx(tau2)
    assert pred.uses_log_view
    assert pred.log_var == pytest.approx((1 / pred.mean + tau2) * 9 / 8)
    assert pred.df == pytest.approx((1 / pred.mean + tau2) ** 2 / (tau2**2 / 7))
    t = (math.log(25.5) - logs.mean()) / math.sqrt(pred.log_var)
    assert pred.upper_p_value(25) == pytest.approx(max(sps.nbinom.sf(24, 80.5, 8 / 9), sps.t.sf(t, pred.df)))
    # the same observation is less surprising than against a steady history of the same mean
    assert pred.upper_p_value(25) > 100 * stats.predict_count([10] * 8).upper_p_value(25)


def test_count_prediction_from_zeros_is_proper():
    pred = stats.predict_count([0, 0, 0, 0])
    assert pred.mean == pytest.approx(0.125)
    assert 0 < pred.upper_p_value(1) < 1
    assert pred.upper_p_value(5) < 1e-4  # five payments in an hour that never had one


PROFILE = np.array([0.9, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.2, 2.2, 3.2, 3.8, 4.1,
                    4.6, 4.7, 4.4, 4.2, 4.2, 4.4, 4.7, 5.3, 6.0, 6.3, 5.4, 2.6])  # the demo's hours


@pytest.mark.slow
@pytest.mark.parametrize(("scale", "shape", "limit"), [
    (1, None, 0.012), (10, None, 0.012), (400, None, 0.012),  # Poisson: at most the level
    (10, 20, 0.025), (400, 100, 0.025),  # a wandering weekly level: up to about twice the level
])
def test_count_test_is_calibrated_under_the_null(scale, shape, limit):
    """Hours of the demo's profile, Poisson around a weekly level that is fixed or wanders
    (gamma day factor, CV 22 % and 10 %): how often a test at level 0.01 fires, per tail."""
    rng = np.random.default_rng(scale + (shape or 0))
    trials = 3000
    hits = {"greater": 0, "less": 0}
    for _ in range(trials):
        level = rng.gamma(shape, 1 / shape, 9) if shape else np.ones(9)
        counts = rng.poisson(level * PROFILE[rng.integers(24)] * scale)
        for direction in hits:
            p, _ = stats.count_test(int(counts[0]), counts[1:], direction)
            hits[direction] += p < 0.01
    assert max(hits.values()) / trials <= limit, hits


@pytest.mark.slow
@pytest.mark.parametrize(("base", "factor", "power"), [(40, 3.0, 0.8), (2000, 1.15, 0.7), (16, 0.0, 0.9)])
def test_count_test_finds_real_spikes_and_drops(base, factor, power):
    """Power at the rules' level (1e-4): a tripled hour of 40, a 15 % rise at 2,000, an outage."""
    rng = np.random.default_rng(base)
    direction = "greater" if factor > 1 else "less"
    found = sum(stats.count_test(int(rng.poisson(base * factor)), rng.poisson(base, 8), direction)[0] < 1e-4
                for _ in range(500))
    assert found / 500 >= power


def test_proportion_test_hand_worked():
    # window 20 of 40; eight weeks of 36 of 40: p0 = (288 + 1/2) / (320 + 1) = 0.898754
    test = stats.proportion_test(20, 40, [(36, 40)] * 8, "less")
    p0 = 288.5 / 321
    assert test.expected == pytest.approx(p0)
    assert test.between_week_variance == 0.0  # identical weeks
    z = (0.5 - p0) / math.sqrt(p0 * (1 - p0) * (1 / 40 + 1 / 320))
    assert z == pytest.approx(-7.882, abs=1e-3)
    assert test.z == pytest.approx(z)
    assert test.p_value == pytest.approx(sps.norm.cdf(z))
    assert stats.proportion_test(20, 40, [(36, 40)] * 8, "greater").p_value > 0.99


def test_proportion_test_adds_the_between_week_variance():
    steady = [(450, 500)] * 8  # 90 % every week
    wobbly = [(475, 500), (425, 500)] * 4  # 95 % and 85 %: same pooled rate, more spread
    a = stats.proportion_test(430, 500, steady, "less")
    b = stats.proportion_test(430, 500, wobbly, "less")
    assert a.expected == pytest.approx(b.expected)
    assert b.between_week_variance > 0
    assert b.p_value > a.p_value  # 86 % is unusual against a steady 90 %, less so against 85-95 %


@pytest.mark.slow
def test_proportion_test_is_calibrated_under_the_null():
    rng = np.random.default_rng(3)
    hits = 0
    trials = 4000
    for _ in range(trials):
        n = rng.integers(30, 400, size=9)
        s = rng.binomial(n, 0.9)
        test = stats.proportion_test(int(s[0]), int(n[0]), list(zip(s[1:], n[1:], strict=True)), "less")
        hits += test.p_value < 0.01
    assert hits / trials <= 0.015


def test_proportion_test_refuses_empty_inputs():
    with pytest.raises(ValueError):
        stats.proportion_test(0, 0, [(1, 2)], "less")
    with pytest.raises(ValueError):
        stats.proportion_test(1, 2, [(0, 0)], "less")


def test_new_category_probability_hand_worked():
    assert stats.new_category_probability([6]) == pytest.approx(1 / 7)  # rule of succession
    assert stats.new_category_probability([3, 1, 1]) == pytest.approx(3 / 6)  # f1 = 2, n = 5
    assert stats.new_category_probability([1, 1, 1]) == 1.0


@pytest.mark.slow
def test_new_category_probability_recovers_a_known_rate():
    """Customers who pay from a new country with probability q: Good-Turing (f1/n) is unbiased
    for the chance of a new country next; our smoothed estimate is close and conservative."""
    rng = np.random.default_rng(1)
    q, n = 0.05, 40
    estimates, truth = [], []
    for _ in range(3000):
        countries = np.where(rng.random(n) < q, rng.integers(1, 10**6, n), 0)  # 0 = home country
        _, counts = np.unique(countries, return_counts=True)
        estimates.append(stats.new_category_probability(list(counts)))
        truth.append(q)
    assert np.mean(estimates) == pytest.approx(q + 1 / (n + 1), abs=0.01)


def test_empirical_tail():
    assert stats.empirical_tail(0, 320) == pytest.approx(1 / 321)
    assert stats.empirical_tail(320, 320) == 1.0
    with pytest.raises(ValueError):
        stats.empirical_tail(3, 2)
