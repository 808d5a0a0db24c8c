"""The metric layer: every payment, revenue, recurring-revenue, customer, geography, performance
and fraud metric, defined once in SQL (``sql/<family>.sql``) and computed for any period and
filter in a reporting currency.

Typical use in a notebook::

    from analytics_lib import metrics
    with metrics.MetricSession.open() as session:
        period = metrics.Period.parse("last-month", timezone="Europe/Istanbul")
        result = metrics.comprehensive_analytics(period, {"country": ["TR"]}, "USD", session=session)
"""

from analytics_lib.metrics.api import (
    ComprehensiveAnalytics,
    MetricOptions,
    MetricSection,
    cohorts,
    comprehensive_analytics,
    customer_analytics,
    fraud,
    geography,
    performance,
    realtime,
    recurring_revenue,
    revenue_analytics,
    transaction_analytics,
    trend_analysis,
)
from analytics_lib.metrics.engine import (
    FILTER_COLUMNS,
    GRAINS,
    Filters,
    MetricError,
    MetricSession,
    MissingRateError,
)
from analytics_lib.metrics.period import Period, PeriodError
from analytics_lib.metrics.trends import Trend

__all__ = [
    "FILTER_COLUMNS", "GRAINS", "ComprehensiveAnalytics", "Filters", "MetricError", "MetricOptions",
    "MetricSection", "MetricSession", "MissingRateError", "Period", "PeriodError", "Trend", "cohorts",
    "comprehensive_analytics", "customer_analytics", "fraud", "geography", "performance", "realtime",
    "recurring_revenue", "revenue_analytics", "transaction_analytics", "trend_analysis",
]
