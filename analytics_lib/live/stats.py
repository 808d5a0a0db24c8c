"""The statistical tests behind the anomaly rules, as plain functions of counts.

Each test answers one question with a p-value: how surprising is what the live window shows,
given what the same window showed in earlier weeks? The rules in
:mod:`analytics_lib.live.anomalies` turn the p-value into an alert (``confidence = 1 - p``).

* :func:`count_test`: a count against a history of counts (volume spike or drop): the more
  cautious of a Poisson predictive (negative binomial, Jeffreys prior, so a history of zeros
  still gives a proper prediction) and a log-scale Student-t predictive that adds the
  week-to-week variance the history shows (see :class:`CountPrediction`).
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
#: the log view needs counts large enough for log(count) to be near normal; below this expected
#: count Poisson noise dominates any week-to-week wobble and the Poisson view alone is used
LOG_VIEW_MIN_MEAN = 5.0


@dataclass(frozen=True)
class CountPrediction:
    """Predictive distribution of a count from earlier weeks' counts of the same window.

    Two views, and a test takes the larger (more cautious) p-value of the two:

    * Poisson: the count is Poisson with a rate known only through the history. With a Jeffreys
      prior the predictive is negative binomial ``NB(n = sum + 1/2, p = k / (k + 1))``, mean
      ``(sum + 1/2) / k``: exact for Poisson counts, proper even after weeks of zeros.
    * Overdispersed: weeks differ by more than Poisson noise (a busy Monday, a campaign, a
      trend). On the log scale the count's variance is the Poisson part ``1/mean`` plus a
      between-week part ``tau2`` estimated from the history (sample variance of
      ``log(count + 1/2)`` minus the Poisson part); the prediction is Student t with
      Welch-Satterthwaite degrees of freedom, so an unsure ``tau2`` (eight weeks) gives heavy
      tails. Used when the history does vary more than Poisson (``tau2 > 0``), from three weeks
      of history and an expected count of :data:`LOG_VIEW_MIN_MEAN` (below it Poisson noise
      dominates any wobble; and for Poisson counts the log view's tails are too heavy).

    Calibration (tests/test_live_stats.py): under pure Poisson counts both tails are
    conservative; when the weekly level wanders (gamma, CV 10-22 %) a test at level 0.01 fires
    up to about 2 % of the time, because eight weeks estimate that wander roughly.
    """

    mean: float
    weeks: int
    total: float
    log_mean: float
    log_var: float  # predictive variance of log(count + 1/2)
    df: float
    tau2: float = 0.0  # between-week variance of log counts beyond Poisson noise

    @property
    def n(self) -> float:
        """scipy's ``n`` of the Poisson view's negative binomial."""
        return self.total + JEFFREYS_SHAPE

    @property
    def p(self) -> float:
        return self.weeks / (self.weeks + 1.0)

    @property
    def variance(self) -> float:
        """Variance of the Poisson view: ``mean * (1 + 1/k)``."""
        return self.mean * (1.0 + 1.0 / self.weeks)

    @property
    def uses_log_view(self) -> bool:
        return self.weeks >= 3 and self.mean >= LOG_VIEW_MIN_MEAN and self.tau2 > 0

    def _t(self, observed: int) -> float:
        return (math.log(observed + 0.5) - self.log_mean) / math.sqrt(self.log_var)

    def upper_p_value(self, observed: int) -> float:
        """P(X >= observed): the larger of the two views' tails."""
        if observed <= 0:
            return 1.0
        p = float(stats.nbinom.sf(observed - 1, self.n, self.p))
        if self.uses_log_view:
            p = max(p, float(stats.t.sf(self._t(observed), self.df)))
        return p

    def lower_p_value(self, observed: int) -> float:
        """P(X <= observed): the larger of the two views' tails."""
        p = float(stats.nbinom.cdf(observed, self.n, self.p))
        if self.uses_log_view:
            p = max(p, float(stats.t.cdf(self._t(observed), self.df)))
        return p


def predict_count(history: Sequence[int]) -> CountPrediction:
    """The predictive distribution of this week's count from earlier weeks' counts.

    Parameters
    ----------
    history : sequence of int
        Counts of the same window (same weekday and time of day) in each earlier week.

    Returns
    -------
    CountPrediction
        Expected count ``(sum + 1/2) / k`` and both views of :class:`CountPrediction`.
    """
    k = len(history)
    if k < 1:
        raise ValueError("a count prediction needs at least one week of history")
    total = float(sum(history))
    mean = (total + JEFFREYS_SHAPE) / k
    logs = [math.log(c + 0.5) for c in history]
    log_mean = sum(logs) / k
    poisson_var = 1.0 / mean  # delta method: Var(log X) = 1 / lambda for Poisson X
    tau2 = 0.0
    if k > 1:
        sample_var = sum((x - log_mean) ** 2 for x in logs) / (k - 1)
        tau2 = max(0.0, sample_var - poisson_var)
    df = math.inf if tau2 == 0 else (poisson_var + tau2) ** 2 / (tau2**2 / max(k - 1, 1))
    log_var = (poisson_var + tau2) * (1.0 + 1.0 / k)
    return CountPrediction(mean=mean, weeks=k, total=total, log_mean=log_mean, log_var=log_var, df=df,
                           tau2=tau2)


def count_test(observed: int, history: Sequence[int], direction: str) -> tuple[float, CountPrediction]:
    """One-sided p-value of ``observed`` against the prediction from ``history``.

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
