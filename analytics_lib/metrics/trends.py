"""Trends: current vs previous value, direction within a tolerance band, and significance from a
real statistical test chosen by the kind of metric.

* rates (success, failure, refund, ... rates): two-proportion z-test on the counts behind them;
* counts (transactions, customers): exact test of two Poisson counts, allowing for periods of
  different length (conditional binomial test);
* means (average transaction value): Welch's t-test from the per-payment moments;
* totals of money (revenue): Welch's t-test on the daily values of the two periods.

Significance is high for p < 0.01, medium for p < 0.05, low otherwise; "low" means the change may
well be noise, however large it looks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any


@cache
def _stats() -> Any:
    """scipy.stats, imported on the first test (about 0.8 s of CPU that every command parsing a
    period would otherwise pay at import)."""
    from scipy import stats

    return stats


HIGH_P = 0.01
MEDIUM_P = 0.05
#: changes smaller than this (relative) are "stable"
DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class Trend:
    """One metric compared with the previous period (the platform's TrendAnalysis shape)."""

    metric: str
    current_value: float | None
    previous_value: float | None
    change: float | None
    change_percent: float | None
    trend: str  # up | down | stable
    significance: str  # high | medium | low
    p_value: float | None
    test: str

    def to_dict(self) -> dict:
        return asdict(self)


def _level(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "low"
    return "high" if p < HIGH_P else "medium" if p < MEDIUM_P else "low"


def direction(current: float | None, previous: float | None, tolerance: float = DEFAULT_TOLERANCE) -> str:
    if current is None or previous is None:
        return "stable"
    if previous == 0:
        return "up" if current > 0 else "down" if current < 0 else "stable"
    rel = (current - previous) / abs(previous)
    if abs(rel) < tolerance:
        return "stable"
    return "up" if rel > 0 else "down"


def make_trend(metric: str, current: float | None, previous: float | None, p_value: float | None,
               test: str, tolerance: float = DEFAULT_TOLERANCE) -> Trend:
    change = None if current is None or previous is None else current - previous
    pct = None if change is None or not previous else change / abs(previous)
    return Trend(metric, current, previous, change, pct, direction(current, previous, tolerance),
                 _level(p_value), p_value, test)


def two_proportion_p(success_a: int, n_a: int, success_b: int, n_b: int) -> float | None:
    """Two-sided p-value of a two-proportion z-test (pooled variance); None without data."""
    if n_a <= 0 or n_b <= 0:
        return None
    pooled = (success_a + success_b) / (n_a + n_b)
    var = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if var <= 0:
        return 1.0 if success_a / n_a == success_b / n_b else 0.0
    z = (success_a / n_a - success_b / n_b) / math.sqrt(var)
    return float(2 * _stats().norm.sf(abs(z)))


def poisson_counts_p(count_a: int, exposure_a: float, count_b: int, exposure_b: float) -> float | None:
    """Exact two-sided test that two Poisson counts have the same rate per unit of exposure.

    Given the total, count_a is binomial with p = exposure_a / (exposure_a + exposure_b).
    """
    total = count_a + count_b
    if total == 0 or exposure_a <= 0 or exposure_b <= 0:
        return None
    return float(_stats().binomtest(int(count_a), int(total), exposure_a / (exposure_a + exposure_b)).pvalue)


def welch_from_moments(n_a: int, sum_a: float, sumsq_a: float, n_b: int, sum_b: float, sumsq_b: float) -> float | None:
    """Welch's t-test p-value from counts, sums and sums of squares of two samples."""
    if n_a < 2 or n_b < 2:
        return None
    mean_a, mean_b = sum_a / n_a, sum_b / n_b
    var_a = max((sumsq_a - n_a * mean_a**2) / (n_a - 1), 0.0)
    var_b = max((sumsq_b - n_b * mean_b**2) / (n_b - 1), 0.0)
    result = _stats().ttest_ind_from_stats(mean_a, math.sqrt(var_a), n_a, mean_b, math.sqrt(var_b), n_b,
                                        equal_var=False)
    p = float(result.pvalue)
    return None if math.isnan(p) else p


def welch_samples(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    p = float(_stats().ttest_ind(list(a), list(b), equal_var=False).pvalue)
    return None if math.isnan(p) else p
