"""The statistical tests behind the anomaly rules, as plain functions of counts.

Each test answers one question with a p-value: how surprising is what the live window shows,
given what the same window showed in earlier weeks? The rules in
:mod:`analytics_lib.live.anomalies` turn the p-value into an alert (``confidence = 1 - p``).

* :func:`count_test`: a count against a history of counts (volume spike or drop), by a negative
  binomial predictive distribution: Poisson counts whose rate is estimated from the history
  (Jeffreys prior, so a history of zeros still gives a proper prediction), widened to the
  week-to-week variance when the history varies more than Poisson allows.
* :func:`proportion_test`: a share against a history of shares (success rate, high-risk share):
  a two-proportion z-test whose variance adds the between-week variance of the baseline shares
  (a DerSimonian-Laird random-effects estimate), so that ordinary week-to-week wobble of a mix
  is not reported as an anomaly on a large warehouse.
* :func:`new_category_probability`: the Good-Turing chance that the next observation is a
  category never seen before (a customer paying from a new country).
* :func:`empirical_tail`: the share of a reference sample at or above a value, with the +1
  correction that makes it a valid p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

#: Jeffreys prior shape for a Poisson rate: the prediction from k weeks of zeros is not zero.
JEFFREYS_SHAPE = 0.5


@dataclass(frozen=True)
class CountPrediction:
    """Predictive distribution of a count: negative binomial with this mean and variance."""

    mean: float
    variance: float
    weeks: int

    @property
    def n(self) -> float:
        """scipy's ``n`` (number of successes) of the negative binomial."""
        return self.mean**2 / (self.variance - self.mean)

    @property
    def p(self) -> float:
        return self.mean / self.variance

    def upper_p_value(self, observed: int) -> float:
        """P(X >= observed)."""
        if observed <= 0:
            return 1.0
        return float(stats.nbinom.sf(observed - 1, self.n, self.p))

    def lower_p_value(self, observed: int) -> float:
        """P(X <= observed)."""
        return float(stats.nbinom.cdf(observed, self.n, self.p))


def predict_count(history: Sequence[int]) -> CountPrediction:
    """The predictive distribution of next week's count from earlier weeks' counts.

    Parameters
    ----------
    history : sequence of int
        Counts of the same window (same weekday and time of day) in each earlier week.

    Returns
    -------
    CountPrediction
        Mean ``(sum + 1/2) / k`` (Poisson rate under a Jeffreys prior) and variance
        ``max(s2, mean) * (1 + 1/k)``: the larger of the sample variance and the Poisson variance,
        plus the uncertainty of the estimated mean.
    """
    k = len(history)
    if k < 1:
        raise ValueError("a count prediction needs at least one week of history")
    total = float(sum(history))
    mean = (total + JEFFREYS_SHAPE) / k
    sample_var = 0.0
    if k > 1:
        m = total / k
        sample_var = sum((c - m) ** 2 for c in history) / (k - 1)
    variance = max(sample_var, mean) * (1.0 + 1.0 / k)
    return CountPrediction(mean=mean, variance=variance, weeks=k)


def count_test(observed: int, history: Sequence[int], direction: str) -> tuple[float, CountPrediction]:
    """One-sided p-value of ``observed`` against the predictive distribution of ``history``.

    ``direction`` is ``"greater"`` (a spike) or ``"less"`` (a drop).
    """
    prediction = predict_count(history)
    if direction == "greater":
        return prediction.upper_p_value(observed), prediction
    if direction == "less":
        return prediction.lower_p_value(observed), prediction
    raise ValueError("direction must be 'greater' or 'less'")


@dataclass(frozen=True)
class ProportionTest:
    """Result of :func:`proportion_test`."""

    observed: float  # window share
    expected: float  # pooled baseline share
    z: float
    p_value: float
    between_week_variance: float


def proportion_test(
    successes: int, trials: int, history: Sequence[tuple[int, int]], direction: str
) -> ProportionTest:
    """One-sided two-proportion test of a window share against earlier weeks' shares.

    Parameters
    ----------
    successes, trials : int
        The window's count with the property and its count of trials (``trials > 0``).
    history : sequence of (successes, trials)
        The same window in each earlier week (weeks with no trials are ignored).
    direction : {"less", "greater"}
        ``"less"`` tests for a lower share than the baseline (success-rate drop),
        ``"greater"`` for a higher one (high-risk share spike).

    Returns
    -------
    ProportionTest
        ``z = (p_w - p_0) / sqrt(p_0 (1 - p_0) (1/n_w + 1/N) + tau2)`` with the pooled baseline
        share ``p_0`` (add-half smoothed so it is never exactly 0 or 1), the baseline's total
        trials ``N`` and the DerSimonian-Laird between-week variance ``tau2`` of the weekly
        shares; the p-value is the normal tail in ``direction``.
    """
    if trials <= 0:
        raise ValueError("the window needs at least one trial")
    weeks = [(s, n) for s, n in history if n > 0]
    if not weeks:
        raise ValueError("the baseline needs at least one week with trials")
    big_n = sum(n for _, n in weeks)
    big_s = sum(s for s, _ in weeks)
    p0 = (big_s + 0.5) / (big_n + 1.0)
    base_var = p0 * (1.0 - p0)
    tau2 = 0.0
    if len(weeks) > 1:
        w = [n / base_var for _, n in weeks]
        q = sum(wk * (s / n - p0) ** 2 for wk, (s, n) in zip(w, weeks, strict=True))
        denom = sum(w) - sum(x * x for x in w) / sum(w)
        if denom > 0:
            tau2 = max(0.0, (q - (len(weeks) - 1)) / denom)
    pw = successes / trials
    se = math.sqrt(base_var * (1.0 / trials + 1.0 / big_n) + tau2)
    z = (pw - p0) / se
    if direction == "less":
        p_value = float(stats.norm.cdf(z))
    elif direction == "greater":
        p_value = float(stats.norm.sf(z))
    else:
        raise ValueError("direction must be 'greater' or 'less'")
    return ProportionTest(observed=pw, expected=p0, z=z, p_value=p_value, between_week_variance=tau2)


def new_category_probability(counts: Sequence[int]) -> float:
    """Good-Turing probability that the next observation is a category not seen so far.

    ``counts`` are the observations per category seen so far (e.g. a customer's payments per
    country). The Good-Turing estimate is ``f1 / n`` (``f1`` categories seen exactly once, ``n``
    observations); with add-one smoothing, ``(f1 + 1) / (n + 1)``, which is never 0 and is the
    rule of succession when every observation fell in one category.
    """
    n = sum(counts)
    f1 = sum(1 for c in counts if c == 1)
    return min(1.0, (f1 + 1.0) / (n + 1.0))


def empirical_tail(exceeding: int, total: int) -> float:
    """``(k + 1) / (n + 1)``: a valid p-value for a value that ``k`` of ``n`` references reach."""
    if total < 0 or exceeding < 0 or exceeding > total:
        raise ValueError("need 0 <= exceeding <= total")
    return (exceeding + 1.0) / (total + 1.0)
