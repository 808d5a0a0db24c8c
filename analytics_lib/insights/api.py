"""Running the catalogue: every applicable rule over one metric result, ranked by impact."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from analytics_lib.insights.base import IMPACT_RANK, RULES, Insight, InsightError, RuleContext
from analytics_lib.insights.options import InsightOptions
from analytics_lib.metrics import ComprehensiveAnalytics, MetricSession

log = logging.getLogger(__name__)


def generate_insights(result: ComprehensiveAnalytics, *, session: MetricSession | None = None,
                      models: Mapping[str, Any] | None = None,
                      options: InsightOptions | Mapping[str, Any] | None = None) -> list[Insight]:
    """Insights supported by ``result`` (and the optional session and model outputs), ranked.

    Parameters
    ----------
    result : ComprehensiveAnalytics
        The metric layer's result for one period and filter set.
    session : MetricSession, optional
        A session on the same snapshot, for rules that need an extra query (pricing elasticity,
        card-brand dispute ratios, provider cells) or the previous period (market shares, fraud,
        churn). Rules that need one are skipped without it.
    models : mapping, optional
        Model outputs by name, e.g. ``{"churn": DataFrame(customer_id, probability, mrr, ...)}`` or
        a list of :class:`analytics_lib.models.Prediction`. Rules that need one are skipped without it.
    options : InsightOptions or mapping, optional
        Thresholds, assumptions and the rule ids to run (``rules``).

    Returns
    -------
    list of Insight
        Highest impact first: business impact (high, medium, low), then estimated monthly
        revenue, then confidence.
    """
    opts = InsightOptions.of(options)
    if not isinstance(result, ComprehensiveAnalytics):
        raise InsightError(f"result must be a ComprehensiveAnalytics, not {type(result).__name__}")
    if session is not None and dict(session.versions) != dict(result.versions):
        raise InsightError("the session reads other warehouse table versions than the result was computed on; "
                           "open the session on the result's snapshot")
    models = dict(models or {})
    ids = list(opts.rules) if opts.rules is not None else list(RULES)
    unknown = [i for i in ids if i not in RULES]
    if unknown:
        raise InsightError(f"unknown rule id(s): {', '.join(unknown)}; rules: {', '.join(RULES)}")
    ctx = RuleContext(result, session, models, opts)
    insights: list[Insight] = []
    # the session stays on the result's period (whose tables the metric layer built) until the
    # rules that read the previous period; the ranking below does not depend on this order
    for rule_id in sorted(ids, key=lambda i: RULES[i].previous_period):
        rule = RULES[rule_id]
        missing = rule.missing(ctx)
        if missing:
            log.info("insight rule %s skipped: it needs %s", rule_id, " and ".join(missing))
            continue
        insight = rule.function(ctx)
        if insight is not None:
            insights.append(insight)
    return rank(insights)


def rank(insights: list[Insight]) -> list[Insight]:
    """Business impact first, then estimated revenue (None counts as 0), then confidence."""
    return sorted(insights, key=lambda i: (-IMPACT_RANK[i.business_impact], -(i.estimated_revenue or 0.0),
                                           -i.confidence, i.id))


def catalogue() -> list[dict[str, Any]]:
    """The registered rules: id, category, what each looks at and what it needs."""
    return [{"id": r.id, "category": r.category, "description": r.description, "needs": list(r.needs)}
            for r in RULES.values()]
