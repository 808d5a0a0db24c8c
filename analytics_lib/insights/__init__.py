"""Insights: a catalogue of rules over metric results and model outputs that turns numbers into
ranked findings with actions and estimated revenue, and the executive summary's sentences.

Typical use in a report notebook::

    from analytics_lib.insights import generate_insights, executive_summary
    insights = generate_insights(result, session=session, models={"churn": churn_predictions})
    summary = executive_summary(result, insights, level="c_level")

Rules, thresholds and estimates are documented in docs/insights.md; thresholds live in
``analytics_lib.insights.options``.
"""

from analytics_lib.insights import rules as _rules  # noqa: F401  (fills the catalogue)
from analytics_lib.insights.api import catalogue, generate_insights, rank
from analytics_lib.insights.base import CATEGORIES, RULES, Insight, InsightError
from analytics_lib.insights.options import InsightOptions, InsightOptionsError
from analytics_lib.insights.summary import LEVELS, executive_summary

__all__ = [
    "CATEGORIES", "LEVELS", "RULES", "Insight", "InsightError", "InsightOptions", "InsightOptionsError",
    "catalogue", "executive_summary", "generate_insights", "rank",
]
