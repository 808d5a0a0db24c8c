"""The metric API notebooks call: one function per family, and ``comprehensive_analytics``.

Every function takes a :class:`MetricSession` (one snapshot), a :class:`Period`, optional
filters and a reporting currency, and returns a :class:`MetricSection`: a ``summary`` of plain
numbers and named ``tables`` (DataFrames). Money is in major units of the reporting currency.
The definitions live in the headers of ``sql/<family>.sql`` and in docs/metrics.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa

from analytics_lib.metrics import trends as tr
from analytics_lib.metrics.engine import (
    GRAINS,
    Filters,
    MetricError,
    MetricSession,
    MissingRateError,
)
from analytics_lib.metrics.period import Period
from analytics_lib.warehouse.countries import country_name
from analytics_lib.warehouse.currency import normalise_currency

FILTERS_FOR_MRR = ("currency", "country", "product", "plan_type", "discount_code")
REVIEW_THRESHOLD = 65.0
BLOCK_THRESHOLD = 75.0
FAILURE_DIMENSIONS = ("payment_method", "provider", "country", "amount_band", "attempt")


@dataclass
class MetricSection:
    """A family's result: headline numbers and the tables behind them."""

    name: str
    summary: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": _clean(self.summary),
                "tables": {k: frame_records(v) for k, v in self.tables.items()}}


@dataclass
class MetricOptions:
    """Conventions that vendors disagree on, and thresholds, as parameters."""

    #: when a cancellation leaves MRR: "period_end" (when access ends) or "request" (when asked)
    mrr_cancel_at: str = "period_end"
    #: customers who join and leave inside one month: "count" (in new and churned) or "ignore"
    mrr_same_interval: str = "count"
    review_threshold: float = REVIEW_THRESHOLD
    block_threshold: float = BLOCK_THRESHOLD
    cohort_months: int = 12
    trend_tolerance: float = tr.DEFAULT_TOLERANCE
    top_n: int = 10

    def __post_init__(self) -> None:
        if self.mrr_cancel_at not in ("period_end", "request"):
            raise MetricError("mrr_cancel_at must be 'period_end' or 'request'")
        if self.mrr_same_interval not in ("count", "ignore"):
            raise MetricError("mrr_same_interval must be 'count' or 'ignore'")
        if not 0 <= self.review_threshold <= self.block_threshold <= 100:
            raise MetricError("thresholds must satisfy 0 <= review <= block <= 100")
        if not 1 <= self.cohort_months <= 60:
            raise MetricError("cohort_months must be between 1 and 60")


# -- helpers ---------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe plain values: NaN/inf -> None, dates -> ISO text."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return _clean(value.item())
        except (ValueError, AttributeError):
            return str(value)
    if value is pd.NaT:
        return None
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.astype(object).where(pd.notna(frame), None)
    return [_clean(r) for r in out.to_dict(orient="records")]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _scope(session: MetricSession, period: Period, filters: Any, currency: str | None) -> Filters:
    f = Filters.of(filters)
    session.scope(period, f, currency)
    return f


# -- families ---------------------------------------------------------------------------------


def transaction_analytics(session: MetricSession, period: Period, filters: Any = None,
                          currency: str | None = None, grain: str | None = None) -> MetricSection:
    """Counts, volume, rates, breakdowns, time series and failure analysis of payment attempts."""
    grain = grain or default_grain(period)
    if grain not in GRAINS:
        raise MetricError(f"grain must be one of {', '.join(GRAINS)}, not {grain!r}")
    with session.lock:
        _scope(session, period, filters, currency)
        summary = session.row("transactions", "summary")
        dunning = session.row("transactions", "dunning")
        summary.update(dunning_recovery_rate=dunning["dunning_recovery_rate"],
                       failed_recurring_charges=dunning["failed_recurring_charges"],
                       recovered_by_retries=dunning["recovered"])
        tables = {
            "by_payment_method": session.query("transactions", "by_payment_method"),
            "by_provider": session.query("transactions", "by_provider"),
            "time_series": session.query("transactions", "time_series", {"grain": grain}),
            "failure_reasons": session.query("transactions", "failure_reasons"),
        }
        failures = session.query("transactions", "failures_by_dimension")
        for dim in FAILURE_DIMENSIONS:
            one = failures[failures["dimension"] == dim].drop(columns=["dimension"])
            tables[f"failures_by_{dim}"] = one.reset_index(drop=True)  # ordered by value in SQL
    return MetricSection("transactions", summary, tables)


def revenue_analytics(session: MetricSession, period: Period, filters: Any = None,
                      currency: str | None = None, with_growth: bool = True) -> MetricSection:
    """Gross to net, refund and chargeback rates, revenue by product, plan and currency, growth."""
    with session.lock:
        _scope(session, period, filters, currency)
        summary = session.row("revenue", "summary")
        tables = {
            "by_product": session.query("revenue", "by_product"),
            "by_plan_type": session.query("revenue", "by_plan_type"),
            "by_currency": session.query("revenue", "by_currency"),
            "daily": session.query("revenue", "daily"),
        }
    if with_growth:
        summary.update(revenue_growth(session, period, filters, currency, summary["gross_revenue"]))
    return MetricSection("revenue", summary, tables)


def revenue_growth(session: MetricSession, period: Period, filters: Any, currency: str | None,
                   gross: float, previous_gross: float | None = None) -> dict[str, float | None]:
    """Gross revenue of the previous period and of the same period last year, and growth vs each.

    Each is one pruned read of that period's payments (sql/revenue.sql gross_between), equal to
    the period's ``transactions.total_volume``, without building the period's scope.
    ``previous_gross``: the previous period's gross revenue when the caller has it already."""
    out: dict[str, float | None] = {}
    f = Filters.of(filters)
    with session.lock:
        current = session._scope
        try:
            rc = normalise_currency(currency or session.settings.reporting_currency)
        except ValueError:
            rc = None  # session.scope says what is wrong with it
        if current is None or current.filters != f or current.currency != rc or current.window is not None:
            session.scope(period, f, currency)  # only the filters and the currency matter here
        for label, other in (("previous", period.previous()), ("last_year", period.same_period_last_year())):
            if label == "previous" and previous_gross is not None:
                before = previous_gross
                out[f"gross_revenue_{label}"] = before
                out[f"revenue_growth_vs_{label}"] = _ratio(gross - before, before) if before else None
                continue
            start, end = other.start_utc, other.end_utc
            row = session.row("revenue", "gross_between", {
                "start": start, "end": end,
                "start_month": f"{start.astimezone(UTC):%Y-%m}", "end_month": f"{end.astimezone(UTC):%Y-%m}",
            })
            if row["missing"] is not None:
                raise MissingRateError(session._missing_rate_message(row["missing"]["c"], row["missing"]["d"]))
            before = row["gross_revenue"]
            out[f"gross_revenue_{label}"] = before
            out[f"revenue_growth_vs_{label}"] = _ratio(gross - before, before) if before else None
    return out


def mrr_bounds(period: Period) -> pa.Table:
    """Interval 0 = the whole period; 1.. = its calendar months (or the period if shorter)."""
    tz = period.tz
    rows = [(0, period.label, period.start_utc, period.end_utc)]
    if period.kind in ("month", "quarter", "year") or (period.kind == "custom" and period.days > 31):
        months = period.months()
        for i, first in enumerate(months, start=1):
            nxt = months[i] if i < len(months) else period.end
            start = max(first, period.start)
            end = min(nxt, period.end)
            rows.append((i, f"{first:%Y-%m}", datetime.combine(start, datetime.min.time(), tz).astimezone(UTC),
                         datetime.combine(end, datetime.min.time(), tz).astimezone(UTC)))
    else:
        rows.append((1, period.label, period.start_utc, period.end_utc))
    return pa.table({
        "interval_no": [r[0] for r in rows],
        "label": [r[1] for r in rows],
        "b_start": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
        "b_end": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
    })


def recurring_revenue(session: MetricSession, period: Period, filters: Any = None,
                      currency: str | None = None, options: MetricOptions | None = None) -> MetricSection:
    """MRR, ARR and MRR movements per month, quick ratio, churn and retention rates."""
    options = options or MetricOptions()
    f = Filters.of(filters)
    not_applicable = sorted(set(f.values) - set(FILTERS_FOR_MRR))
    if not_applicable:
        # subscriptions have no provider, payment method or campaign: no honest MRR exists for
        # such a filter, so say so instead of showing the unfiltered (or a zero) figure
        return MetricSection("recurring_revenue", {"mrr": None, "arr": None,
                                                   "not_applicable_filters": not_applicable}, {})
    with session.lock:
        session.scope(period, f, currency)
        session.set_mrr_options(options.mrr_cancel_at, options.mrr_same_interval)
        session.ensure("mrr_unconverted")
        missing = session.con.execute(
            "SELECT currency, CAST(created_at AS DATE) FROM mrr_unconverted "
            "WHERE effective_ts < getvariable('p_end') ORDER BY created_at LIMIT 1").fetchall()
        if missing:
            raise MissingRateError(session._missing_rate_message(*missing[0]))
        session.con.register("mrr_bounds", mrr_bounds(period))
        try:
            moves = session.query("mrr", "movements")
            by_plan = session.query("mrr", "by_plan")
        finally:
            session.con.unregister("mrr_bounds")
    whole = moves[moves["interval_no"] == 0]
    months = moves[moves["interval_no"] > 0].drop(columns=["interval_no"]).reset_index(drop=True)
    if months.empty or whole.empty:  # no subscription has any event yet
        summary: dict[str, Any] = {"mrr": 0.0, "arr": 0.0, "subscribers": 0}
        return MetricSection("recurring_revenue", summary, {"movements": months, "by_plan": by_plan})
    w = {k: _plain(v) for k, v in whole.iloc[0].items()}
    totals = {c: float(months[c].sum()) for c in
              ("new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "reactivation_mrr")}
    start_mrr = float(months.iloc[0]["mrr_start"])
    end_mrr = float(months.iloc[-1]["mrr_end"])
    net_new = totals["new_mrr"] + totals["expansion_mrr"] + totals["reactivation_mrr"] - totals["contraction_mrr"] - totals["churned_mrr"]
    summary = {
        "mrr": end_mrr,
        "arr": 12 * end_mrr,
        "mrr_start": start_mrr,
        **totals,
        "net_new_mrr": net_new,
        "quick_ratio": _ratio(totals["new_mrr"] + totals["expansion_mrr"], totals["contraction_mrr"] + totals["churned_mrr"]),
        "gross_mrr_churn_rate": _ratio(totals["churned_mrr"] + totals["contraction_mrr"], start_mrr),
        "net_mrr_churn_rate": _ratio(totals["churned_mrr"] + totals["contraction_mrr"] - totals["expansion_mrr"] - totals["reactivation_mrr"], start_mrr),
        "net_revenue_retention": _ratio(w["retained_mrr_end"], w["mrr_start"]),
        "gross_revenue_retention": _ratio(w["retained_mrr_capped"], w["mrr_start"]),
        "subscribers": int(months.iloc[-1]["subscribers_end"]),
        "subscribers_start": int(months.iloc[0]["subscribers_start"]),
        "new_subscribers": int(months["new_customers"].sum()),
        "churned_subscribers": int(months["churned_customers"].sum()),
        "customer_churn_rate": _ratio(w["churned_customers"], w["subscribers_start"]),
        "arpa": _ratio(end_mrr, months.iloc[-1]["subscribers_end"]),
        "trialing": int(by_plan["trialing"].sum()) if not by_plan.empty else 0,
        "conventions": {"cancel_at": options.mrr_cancel_at, "same_interval": options.mrr_same_interval},
    }
    return MetricSection("recurring_revenue", summary, {"movements": months, "by_plan": by_plan})


def customer_analytics(session: MetricSession, period: Period, filters: Any = None,
                       currency: str | None = None, options: MetricOptions | None = None,
                       recurring: MetricSection | None = None) -> MetricSection:
    """Customers, ARPU/ARPA, CLV and LTV, CAC and LTV/CAC, RFM and purchase patterns."""
    options = options or MetricOptions()
    recurring = recurring or recurring_revenue(session, period, filters, currency, options)
    with session.lock:
        _scope(session, period, filters, currency)
        summary = session.row("customers", "summary")
        spend = session.row("customers", "marketing_spend")
        if spend["missing_rate_rows"]:
            raise MissingRateError(f"no FX rate for {spend['missing_currency']} on {spend['missing_day']} "
                                   f"(needed to convert marketing spend to {session.current.currency})")
        tables = {
            "rfm_segments": session.query("customers", "rfm_segments"),
            "day_hour": session.query("customers", "day_hour"),
            "course_pairs": session.query("customers", "course_pairs"),
            "spend_by_channel": session.query("customers", "spend_by_channel"),
        }
        gaps = session.row("customers", "time_between_purchases")
    churn = recurring.summary.get("customer_churn_rate")
    monthly_churn = _monthly_rate(churn, period.days)
    arpa = recurring.summary.get("arpa")
    ltv = _ratio(arpa, monthly_churn) if monthly_churn else None
    cac = _ratio(spend["marketing_spend"], summary["new_customers"])
    summary.update(
        arpa=arpa,
        customer_churn_rate=churn,
        monthly_customer_churn_rate=monthly_churn,
        ltv=ltv,
        marketing_spend=spend["marketing_spend"],
        cac=cac,
        ltv_to_cac=_ratio(ltv, cac),
        median_days_between_purchases=gaps["median_days"],
        repeat_customers=gaps["repeat_customers"],
    )
    return MetricSection("customers", summary, tables)


def _monthly_rate(rate: float | None, days: int) -> float | None:
    """A churn rate over ``days`` as the equivalent monthly (30.44-day) rate."""
    if rate is None:
        return None
    if rate >= 1:
        return 1.0
    return 1 - (1 - rate) ** (30.4375 / days)


def geography(session: MetricSession, period: Period, filters: Any = None,
              currency: str | None = None, top_n: int = 10) -> MetricSection:
    """Top countries and the international share."""
    with session.lock:
        _scope(session, period, filters, currency)
        countries = session.query("geography", "countries")
        summary = session.row("geography", "international")
    countries.insert(1, "country_name", [country_name(c) for c in countries["country_code"]])
    return MetricSection("geography", summary, {"top_countries": countries.head(top_n), "countries": countries})


def performance(session: MetricSession, period: Period, filters: Any = None,
                currency: str | None = None) -> MetricSection:
    """Providers and methods: success and authorization rates, latency, error mix, fee cost."""
    with session.lock:
        _scope(session, period, filters, currency)
        providers = session.query("performance", "providers")
        tables = {
            "providers": providers,
            "provider_methods": session.query("performance", "provider_methods"),
            "error_mix": session.query("performance", "error_mix"),
        }
    summary: dict[str, Any] = {}
    if not providers.empty:
        costly = providers.dropna(subset=["fee_per_net_revenue"])
        if not costly.empty:
            top = costly.sort_values("fee_per_net_revenue", ascending=False).iloc[0]
            summary["costliest_provider"] = top["provider"]
            summary["costliest_fee_per_net_revenue"] = _plain(top["fee_per_net_revenue"])
        best = providers.sort_values("success_rate", ascending=False).iloc[0]
        summary["best_success_provider"] = best["provider"]
        summary["best_success_rate"] = _plain(best["success_rate"])
    return MetricSection("performance", summary, tables)


def fraud(session: MetricSession, period: Period, filters: Any = None, currency: str | None = None,
          options: MetricOptions | None = None) -> MetricSection:
    """Risk-score distribution, review/block shares, alerts, chargebacks by segment, indicators."""
    options = options or MetricOptions()
    thresholds = {"review_threshold": options.review_threshold, "block_threshold": options.block_threshold}
    with session.lock:
        _scope(session, period, filters, currency)
        summary = session.row("fraud", "summary", thresholds)
        alerts = session.query("fraud", "alerts")
        tables = {
            "risk_distribution": session.query("fraud", "risk_distribution"),
            "alerts": alerts,
            "indicators": session.query("fraud", "indicators"),
        }
        for dim in ("country", "payment_method", "provider"):
            tables[f"chargebacks_by_{dim}"] = session.query("fraud", "chargebacks_by_segment", {"dimension": dim})
    summary.update(thresholds)
    summary["fraud_alerts"] = int(alerts["alerts"].sum()) if not alerts.empty else 0
    summary["confirmed_fraud_alerts"] = int(alerts.loc[alerts["status"] == "confirmed_fraud", "alerts"].sum()) if not alerts.empty else 0
    return MetricSection("fraud", summary, tables)


def cohorts(session: MetricSession, period: Period, filters: Any = None, currency: str | None = None,
            months: int = 12) -> MetricSection:
    """Cohorts by first-purchase month: customer and revenue retention matrices."""
    with session.lock:
        _scope(session, period, filters, currency)
        long = session.query("customers", "cohorts", {"cohort_months": months})
    if long.empty:
        empty = pd.DataFrame()
        return MetricSection("cohorts", {"cohorts": 0}, {"long": long, "customer_retention": empty, "revenue_retention": empty})
    long["cohort_month"] = pd.to_datetime(long["cohort_month"]).dt.strftime("%Y-%m")
    customer = long.pivot(index="cohort_month", columns="months_since", values="customer_retention")
    revenue = long.pivot(index="cohort_month", columns="months_since", values="revenue_retention")
    sizes = long.groupby("cohort_month")["cohort_size"].first()
    customer.insert(0, "cohort_size", sizes)
    revenue.insert(0, "cohort_size", sizes)
    customer.columns = [str(c) for c in customer.columns]
    revenue.columns = [str(c) for c in revenue.columns]
    m1 = long[long["months_since"] == 1]["customer_retention"]
    summary = {"cohorts": int(len(sizes)), "average_month_1_retention": _plain(m1.mean()) if len(m1) else None}
    return MetricSection("cohorts", summary, {
        "long": long,
        "customer_retention": customer.reset_index(),
        "revenue_retention": revenue.reset_index(),
    })


def realtime(session: MetricSession, now: datetime | None = None, hours: int = 24, filters: Any = None,
             currency: str | None = None, timezone: str | None = None, top_n: int = 5) -> MetricSection:
    """The live window (default the 24 hours before ``now``)."""
    if not 1 <= hours <= 24 * 31:
        raise MetricError("hours must be between 1 and 744")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start = now - timedelta(hours=hours)
    tz = timezone or session.settings.timezone
    zone = ZoneInfo(tz)
    period = Period(start.astimezone(zone).date(), now.astimezone(zone).date() + timedelta(days=1), "custom", tz)
    with session.lock:
        session.scope(period, Filters.of(filters), currency, window=(start, now), columns="live")
        summary = session.row("realtime", "summary", {"hours": float(hours)})
        tables = {
            "hourly": session.query("realtime", "hourly"),
            "top_failure_reasons": session.query("transactions", "failure_reasons").head(top_n),
            "countries": session.query("realtime", "distribution", {"dimension": "country"}),
            "payment_methods": session.query("realtime", "distribution", {"dimension": "payment_method"}),
        }
    summary.update(window_start=start, window_end=now, window_hours=hours)
    return MetricSection("realtime", summary, tables)


def default_grain(period: Period) -> str:
    if period.days <= 2:
        return "hour"
    if period.days <= 62:
        return "day"
    if period.days <= 190:
        return "week"
    return "month"


# -- trends ------------------------------------------------------------------------------------


def trend_analysis(session: MetricSession, period: Period, filters: Any = None, currency: str | None = None,
                   against: Period | None = None, tolerance: float = tr.DEFAULT_TOLERANCE,
                   current: Mapping[str, Any] | None = None) -> list[tr.Trend]:
    """Headline metrics of ``period`` against ``against`` (default the previous period).

    ``current``: the period's transaction, revenue and customer summaries and daily revenue
    (keys ``t``, ``r``, ``c``, ``daily``) when the caller computed them already for the same
    filters and currency (comprehensive_analytics), so they are not computed twice."""
    against = against or period.previous()
    values: dict[str, dict[str, Any]] = {}
    if current is not None:
        values["current"] = {**current, "days": period.days}
    with session.lock:
        for label, p in (("current", period), ("previous", against)):
            if label in values:
                continue
            # only the four summaries below are read: payments with just their columns
            session.scope(p, Filters.of(filters), currency, summary_only=True)
            t = session.row("transactions", "summary")
            r = session.row("revenue", "summary")
            daily = session.query("revenue", "daily")
            c = session.row("customers", "summary")
            values[label] = {"t": t, "r": r, "daily": daily, "c": c, "days": p.days}
    cur, prev = values["current"], values["previous"]
    ct, pt, cr, pr = cur["t"], prev["t"], cur["r"], prev["r"]
    out = [
        tr.make_trend("gross_revenue", cr["gross_revenue"], pr["gross_revenue"],
                      tr.welch_samples(cur["daily"]["revenue"], prev["daily"]["revenue"]), "welch_t_daily", tolerance),
        tr.make_trend("net_revenue", cr["net_revenue"], pr["net_revenue"],
                      tr.welch_samples(cur["daily"]["net_revenue"], prev["daily"]["net_revenue"]), "welch_t_daily", tolerance),
        tr.make_trend("total_transactions", ct["total_transactions"], pt["total_transactions"],
                      tr.poisson_counts_p(ct["total_transactions"], cur["days"], pt["total_transactions"], prev["days"]),
                      "poisson_exact", tolerance),
        tr.make_trend("successful_transactions", ct["successful_transactions"], pt["successful_transactions"],
                      tr.poisson_counts_p(ct["successful_transactions"], cur["days"], pt["successful_transactions"], prev["days"]),
                      "poisson_exact", tolerance),
        tr.make_trend("average_transaction_value", ct["average_transaction_value"], pt["average_transaction_value"],
                      tr.welch_from_moments(ct["successful_transactions"], ct["total_volume"], ct["volume_sum_squares"],
                                            pt["successful_transactions"], pt["total_volume"], pt["volume_sum_squares"]),
                      "welch_t", tolerance),
        tr.make_trend("success_rate", ct["success_rate"], pt["success_rate"],
                      tr.two_proportion_p(ct["successful_transactions"], ct["total_transactions"],
                                          pt["successful_transactions"], pt["total_transactions"]),
                      "two_proportion_z", tolerance),
        tr.make_trend("failure_rate", ct["failure_rate"], pt["failure_rate"],
                      tr.two_proportion_p(ct["failed_transactions"], ct["total_transactions"],
                                          pt["failed_transactions"], pt["total_transactions"]),
                      "two_proportion_z", tolerance),
        tr.make_trend("authorization_rate", ct["authorization_rate"], pt["authorization_rate"],
                      tr.two_proportion_p(ct["authorized_attempts"], ct["issuer_attempts"],
                                          pt["authorized_attempts"], pt["issuer_attempts"]),
                      "two_proportion_z", tolerance),
        tr.make_trend("refund_rate", cr["refund_rate"], pr["refund_rate"],
                      tr.two_proportion_p(cr["refund_count"], cr["successful_payments"],
                                          pr["refund_count"], pr["successful_payments"]),
                      "two_proportion_z", tolerance),
        tr.make_trend("chargeback_rate", cr["chargeback_rate"], pr["chargeback_rate"],
                      tr.two_proportion_p(cr["dispute_count"], cr["successful_payments"],
                                          pr["dispute_count"], pr["successful_payments"]),
                      "two_proportion_z", tolerance),
        tr.make_trend("total_customers", cur["c"]["total_customers"], prev["c"]["total_customers"],
                      tr.poisson_counts_p(cur["c"]["total_customers"], cur["days"], prev["c"]["total_customers"], prev["days"]),
                      "poisson_exact", tolerance),
        tr.make_trend("new_customers", cur["c"]["new_customers"], prev["c"]["new_customers"],
                      tr.poisson_counts_p(cur["c"]["new_customers"], cur["days"], prev["c"]["new_customers"], prev["days"]),
                      "poisson_exact", tolerance),
    ]
    return out


# -- everything ----------------------------------------------------------------------------------


@dataclass
class ComprehensiveAnalytics:
    """Every family for one period and filter set (the platform's comprehensive analytics)."""

    period: Period
    filters: Filters
    currency: str
    generated_at: datetime
    versions: dict[str, int]
    summary: dict[str, Any]
    sections: dict[str, MetricSection]
    trends: list[tr.Trend]

    def __getattr__(self, name: str) -> MetricSection:
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.to_dict(),
            "filters": self.filters.to_dict(),
            "currency": self.currency,
            "generated_at": self.generated_at.isoformat(),
            "warehouse_versions": self.versions,
            "summary": _clean(self.summary),
            **{name: section.to_dict() for name, section in self.sections.items()},
            "trends": [_clean(t.to_dict()) for t in self.trends],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str, allow_nan=False)


def comprehensive_analytics(period: Period, filters: Mapping[str, Any] | Filters | None = None,
                            currency: str | None = None, session: MetricSession | None = None,
                            options: MetricOptions | None = None, warehouse: Any = None) -> ComprehensiveAnalytics:
    """Summary, transactions, revenue, recurring revenue, customers, geography, performance,
    fraud, cohorts and trends for ``period``; opens a session on the warehouse if none is given."""
    options = options or MetricOptions()
    own = session is None
    session = session or MetricSession.open(warehouse)
    try:
        f = Filters.of(filters)
        currency = (currency or session.settings.reporting_currency).upper()
        with session.lock:
            sections: dict[str, MetricSection] = {}
            # every family of the period first, then the previous period (trends, whose current
            # values are the sections' own), then growth (the previous period's gross from the
            # trends, last year's from one read): each scope's tables are built once
            sections["transactions"] = transaction_analytics(session, period, f, currency)
            sections["revenue"] = revenue_analytics(session, period, f, currency, with_growth=False)
            sections["recurring_revenue"] = recurring_revenue(session, period, f, currency, options)
            sections["customers"] = customer_analytics(session, period, f, currency, options, sections["recurring_revenue"])
            sections["geography"] = geography(session, period, f, currency, options.top_n)
            sections["performance"] = performance(session, period, f, currency)
            sections["fraud"] = fraud(session, period, f, currency, options)
            sections["cohorts"] = cohorts(session, period, f, currency, options.cohort_months)
            current = {"t": sections["transactions"].summary, "r": sections["revenue"].summary,
                       "daily": sections["revenue"].tables["daily"], "c": sections["customers"].summary}
            trends = trend_analysis(session, period, f, currency, tolerance=options.trend_tolerance,
                                    current=current)
            previous_gross = next(t.previous_value for t in trends if t.metric == "gross_revenue")
            sections["revenue"].summary.update(
                revenue_growth(session, period, f, currency, sections["revenue"].summary["gross_revenue"],
                               previous_gross=previous_gross))
        summary = headline(sections)
        return ComprehensiveAnalytics(period, f, currency, datetime.now(UTC), dict(session.versions),
                                      summary, sections, trends)
    finally:
        if own:
            session.close()


def headline(sections: Mapping[str, MetricSection]) -> dict[str, Any]:
    """The numbers an executive summary opens with."""
    t, r, m, c = (sections[k].summary for k in ("transactions", "revenue", "recurring_revenue", "customers"))
    g = sections["geography"].summary
    f = sections["fraud"].summary
    return {
        "gross_revenue": r["gross_revenue"],
        "net_revenue": r["net_revenue"],
        "revenue_growth_vs_previous": r.get("revenue_growth_vs_previous"),
        "revenue_growth_vs_last_year": r.get("revenue_growth_vs_last_year"),
        "mrr": m.get("mrr"),
        "arr": m.get("arr"),
        "transactions": t["total_transactions"],
        "success_rate": t["success_rate"],
        "authorization_rate": t["authorization_rate"],
        "average_transaction_value": t["average_transaction_value"],
        "customers": c["total_customers"],
        "new_customers": c["new_customers"],
        "revenue_per_customer": r["revenue_per_customer"],
        "refund_rate": r["refund_rate"],
        "chargeback_rate": r["chargeback_rate"],
        "processing_cost_ratio": _ratio(r["fees"], r["gross_revenue"]),
        "international_share": g.get("international_share"),
        "ltv": c.get("ltv"),
        "cac": c.get("cac"),
        "ltv_to_cac": c.get("ltv_to_cac"),
        "customer_churn_rate": c.get("customer_churn_rate"),
        "review_share": f.get("review_share"),
    }


def _plain(value: Any) -> Any:
    return _clean(value)
