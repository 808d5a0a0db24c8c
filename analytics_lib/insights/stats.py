"""The statistics behind the rules' guards and stated confidences.

Every function returns plain floats; ``None`` where the data cannot answer. The significance
tests themselves are shared with the metric layer's trends (two-proportion z-test, exact test of
two Poisson counts).
"""

from __future__ import annotations

import math

from scipy import stats

from analytics_lib.metrics.trends import poisson_counts_p, two_proportion_p

__all__ = [
    "MAX_CONFIDENCE", "bounded", "confidence_from_p", "mean_z_p", "normal_probability_above",
    "poisson_counts_p", "rate_above_probability", "sample_confidence", "two_proportion_p",
]

#: no rule states more certainty than this: data are never the whole story
MAX_CONFIDENCE = 0.99


def bounded(value: float) -> float:
    return float(min(max(value, 0.0), MAX_CONFIDENCE))


def confidence_from_p(p: float | None) -> float:
    """1 - p of the test that supports the insight, capped at MAX_CONFIDENCE."""
    if p is None or math.isnan(p):
        return 0.0
    return bounded(1.0 - p)


def sample_confidence(n: int, half: int = 50) -> float:
    """A sample-size confidence for averages without a variance at hand: n / (n + half), so 0.5
    at ``half`` observations and about 0.9 at nine times that; capped at 0.95."""
    if n <= 0:
        return 0.0
    return float(min(n / (n + half), 0.95))


def rate_above_probability(events: int, trials: int, level: float) -> float | None:
    """Posterior probability (Jeffreys prior, Beta(k + 1/2, n - k + 1/2)) that the true rate is at
    or above ``level`` after ``events`` in ``trials``."""
    if trials <= 0 or events < 0 or events > trials:
        return None
    return float(stats.beta.sf(level, events + 0.5, trials - events + 0.5))


def normal_probability_above(estimate: float, standard_error: float, level: float) -> float:
    """P(true value > level) for a normally distributed estimate."""
    if standard_error <= 0 or math.isnan(standard_error):
        return 1.0 if estimate > level else 0.0
    return float(stats.norm.sf((level - estimate) / standard_error))


def mean_z_p(group_mean: float, overall_mean: float, overall_sd: float, n: int) -> float | None:
    """Two-sided p-value that a group's mean of ``n`` values differs from the population mean
    (z-test with the population's standard deviation)."""
    if n <= 0 or overall_sd <= 0 or math.isnan(overall_sd):
        return None
    z = (group_mean - overall_mean) / (overall_sd / math.sqrt(n))
    return float(2 * stats.norm.sf(abs(z)))
