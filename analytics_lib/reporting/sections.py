"""Standard report sections over the metric layer's results, so that report notebooks choose and
order sections instead of repeating chart code. Each function shows one section."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analytics_lib.reporting import blocks as rp
from analytics_lib.reporting import charts
from analytics_lib.reporting import format as fmt

HEADLINE_TRENDS = ("gross_revenue", "net_revenue", "total_transactions", "success_rate", "total_customers",
                   "new_customers", "refund_rate", "chargeback_rate")


def overview(result: Any, names: tuple[str, ...] = HEADLINE_TRENDS, title: str = "Key numbers") -> None:
    """KPI cards with the change against the previous period and its significance."""
    rp.section(title, f"{result.period.label} against the previous period of the same length; arrows are "
                      "coloured only when the change is statistically significant.")
    rp.kpis(rp.kpis_from_trends(result.trends, names, result.currency), result.currency)
    extra = [rp.KPI("MRR", result.summary.get("mrr"), "money"),
             rp.KPI("ARR", result.summary.get("arr"), "money"),
             rp.KPI("Revenue per customer", result.summary.get("revenue_per_customer"), "money"),
             rp.KPI("Processing cost ratio", result.summary.get("processing_cost_ratio"), "percent", good="down",
                    note="fees / gross revenue")]
    rp.kpis([k for k in extra if k.value is not None], result.currency)


def transactions(result: Any, full: bool = True) -> None:
    t = result.transactions
    cur = result.currency
    rp.section("Payments", "Every payment attempt in the period: how many succeeded, and why the others failed.")
    s = t.summary
    rp.kpis([rp.KPI("Attempts", s["total_transactions"], "count"),
             rp.KPI("Succeeded", s["successful_transactions"], "count"),
             rp.KPI("Success rate", s["success_rate"], "percent"),
             rp.KPI("Authorization rate", s["authorization_rate"], "percent",
                    note="issuer approvals / attempts reaching the issuer"),
             rp.KPI("Average payment", s["average_transaction_value"], "money"),
             rp.KPI("Dunning recovery", s.get("dunning_recovery_rate"), "percent", note="failed renewals later recovered")],
            cur)
    ts = t.tables["time_series"]
    if not ts.empty:
        rp.chart(charts.time_series(ts, "bucket", ["successful", "failed"], "Payments over time", bars=True,
                                    secondary="success_rate", labels={"success_rate": "success rate"}))
    reasons = t.tables["failure_reasons"]
    if not reasons.empty:
        rp.chart(charts.breakdown(reasons, "failure_reason", "failures", "Why payments failed", "count"))
    if full:
        rp.table(t.tables["by_payment_method"], currency=cur)
        rp.table(t.tables["failures_by_provider"].rename(columns={"value": "provider"}), currency=cur)
        rp.table(t.tables["failures_by_attempt"].rename(columns={"value": "attempt"}), currency=cur)


def revenue(result: Any, full: bool = True) -> None:
    r = result.revenue
    cur = result.currency
    s = r.summary
    rp.section("Revenue", f"Gross revenue is successful payments in {cur}; net revenue takes off refunds, "
                          "lost chargebacks and processing fees.")
    rp.kpis([rp.KPI("Gross revenue", s["gross_revenue"], "money", change=s.get("revenue_growth_vs_previous"),
                    note="vs previous period"),
             rp.KPI("Vs last year", s.get("revenue_growth_vs_last_year"), "percent", good=None,
                    note="growth on the same period last year"),
             rp.KPI("Net revenue", s["net_revenue"], "money"),
             rp.KPI("Refund rate", s["refund_rate"], "percent", good="down", note=f"{fmt.count(s['refund_count'])} refunds"),
             rp.KPI("Chargeback rate", s["chargeback_rate"], "percent", good="down",
                    note=f"{fmt.count(s['dispute_count'])} disputes")], cur)
    rp.chart(charts.waterfall([("Gross", s["gross_revenue"]), ("Refunds", -s["refunds"]),
                               ("Chargebacks", -s["chargebacks"]), ("Fees", -s["fees"])],
                              "From gross to net revenue", cur, total_label="Net"))
    daily = r.tables["daily"]
    if len(daily) > 1:
        rp.chart(charts.time_series(daily, "day", ["revenue", "net_revenue"], "Revenue by day", "money", cur,
                                    labels={"revenue": "gross", "net_revenue": "net"}))
    if full:
        by_product = r.tables["by_product"]
        if not by_product.empty:
            rp.chart(charts.breakdown(by_product, "product_name", "revenue", "Revenue by product", "money", cur))
        rp.table(r.tables["by_currency"], currency=cur, kinds={"revenue_original": "number"},
                 labels={"revenue_original": "revenue (original currency)"})


def recurring_revenue(result: Any, history: pd.DataFrame | None = None, full: bool = True) -> None:
    m = result.recurring_revenue
    cur = result.currency
    s = m.summary
    rp.section("Recurring revenue", "MRR counts active paid subscriptions normalised to a month (annual plans at "
                                    "1/12; trials and unpaid excluded; permanent discounts applied).")
    rp.kpis([rp.KPI("MRR", s.get("mrr"), "money", change=(s["mrr"] / s["mrr_start"] - 1) if s.get("mrr_start") else None,
                    note="vs start of period"),
             rp.KPI("Net new MRR", s.get("net_new_mrr"), "money"),
             rp.KPI("Quick ratio", s.get("quick_ratio"), "multiple", note="(new + expansion) / (contraction + churn)"),
             rp.KPI("Net revenue retention", s.get("net_revenue_retention"), "percent"),
             rp.KPI("Gross MRR churn", s.get("gross_mrr_churn_rate"), "percent", good="down"),
             rp.KPI("Subscribers", s.get("subscribers"), "count")], cur)
    movements = history if history is not None else m.tables["movements"]
    if not movements.empty:
        rp.chart(charts.stacked_movements(movements, "label", "MRR movements", cur))
    if full:
        rp.table(m.tables["by_plan"], currency=cur)


def customers(result: Any, full: bool = True) -> None:
    c = result.customers
    cur = result.currency
    s = c.summary
    rp.section("Customers", "Paying customers in the period, what they are worth and what they cost to win.")
    rp.kpis([rp.KPI("Paying customers", s["total_customers"], "count"),
             rp.KPI("New", s["new_customers"], "count"),
             rp.KPI("Returning", s["returning_customers"], "count"),
             rp.KPI("ARPU", s.get("arpu"), "money"),
             rp.KPI("Customer churn", s.get("customer_churn_rate"), "percent", good="down"),
             rp.KPI("LTV", s.get("ltv"), "money", note="ARPA / monthly churn"),
             rp.KPI("CAC", s.get("cac"), "money", good="down"),
             rp.KPI("LTV / CAC", s.get("ltv_to_cac"), "multiple")], cur)
    if full:
        rfm = c.tables["rfm_segments"]
        if not rfm.empty:
            rp.chart(charts.breakdown(rfm, "segment", "customers", "Customers by RFM segment", "count"))
        channels = c.tables.get("spend_by_channel")
        if channels is not None and not channels.empty:
            rp.table(channels, currency=cur)


def geography(result: Any) -> None:
    g = result.geography
    cur = result.currency
    rp.section("Geography", f"International share is volume from outside {g.summary.get('home_country')}.")
    rp.kpis([rp.KPI("Countries", g.summary.get("countries"), "count"),
             rp.KPI("International share", g.summary.get("international_share"), "percent", good=None)], cur)
    top = g.tables["top_countries"]
    if not top.empty:
        rp.chart(charts.breakdown(top, "country_name", "volume", "Volume by country", "money", cur))
        rp.table(top[["country_code", "country_name", "transactions", "volume", "success_rate", "average_value",
                      "share_of_volume"]], currency=cur)


def performance(result: Any) -> None:
    p = result.performance
    cur = result.currency
    rp.section("Providers", "Success, authorization, latency and cost per payment provider.")
    providers = p.tables["providers"]
    if providers.empty:
        rp.note("No payments in this period.")
        return
    rp.chart(charts.breakdown(providers, "provider", "success_rate", "Success rate by provider", "percent"))
    cols = [c for c in ("provider", "transactions", "success_rate", "authorization_rate", "latency_p50_ms",
                        "latency_p95_ms", "gross_revenue", "fees", "effective_fee_rate", "fee_per_net_revenue")
            if c in providers]
    rp.table(providers[cols], currency=cur)


def fraud(result: Any, full: bool = True) -> None:
    f = result.fraud
    cur = result.currency
    s = f.summary
    rp.section("Fraud", f"Risk scores 0-99; review at {s.get('review_threshold'):.0f}, block at {s.get('block_threshold'):.0f}.")
    rp.kpis([rp.KPI("Average risk score", s.get("average_risk_score"), "number", good="down"),
             rp.KPI("In review band", s.get("review_share"), "percent", good="down"),
             rp.KPI("Above block threshold", s.get("block_share"), "percent", good="down"),
             rp.KPI("Fraud alerts", s.get("fraud_alerts"), "count", good="down"),
             rp.KPI("Confirmed fraud", s.get("confirmed_fraud_alerts"), "count", good="down")], cur)
    dist = f.tables["risk_distribution"]
    if not dist.empty:
        rp.chart(charts.time_series(dist.assign(band=dist["band_start"].astype(str)), "band", ["transactions"],
                                    "Risk score distribution (bands of 10)", bars=True))
    if full:
        rp.table(f.tables["indicators"], currency=cur)
        rp.table(f.tables["chargebacks_by_country"].rename(columns={"value": "country"}), currency=cur)


def cohorts(result: Any, kind: str = "customer") -> None:
    c = result.cohorts
    rp.section("Cohorts", "Customers grouped by the month of their first purchase: the share still buying "
                          "(or their revenue relative to month 0) in each later month.")
    table = c.tables["customer_retention" if kind == "customer" else "revenue_retention"]
    if table.empty:
        rp.note("No cohorts in this window.")
        return
    matrix = table.set_index("cohort_month").drop(columns=["cohort_size"])
    rp.chart(charts.heatmap(matrix, f"{'Customer' if kind == 'customer' else 'Revenue'} retention by cohort",
                            x_title="months since first purchase", y_title="cohort"))


def realtime(section: Any, currency: str) -> None:
    """The 24-hour window (:func:`analytics_lib.metrics.realtime`)."""
    s = section.summary
    rp.section("Last 24 hours", f"From {s['window_start']:%Y-%m-%d %H:%M} to {s['window_end']:%Y-%m-%d %H:%M} UTC.")
    cards = [rp.KPI(label, s.get(key), kind, good=good) for key, label, kind, good in (
        ("transactions", "Payments", "count", None), ("transactions_per_hour", "Per hour", "number", None),
        ("success_rate", "Success rate", "percent", "up"), ("revenue", "Revenue", "money", "up"),
        ("active_users", "Active users", "count", "up"), ("open_fraud_alerts", "Open fraud alerts", "count", "down"))
        if key in s]
    rp.kpis(cards, currency)
    hourly = section.tables["hourly"]
    if not hourly.empty:
        x = "hour" if "hour" in hourly else hourly.columns[0]
        y = [c for c in ("successful", "failed") if c in hourly] or [hourly.columns[1]]
        rp.chart(charts.time_series(hourly, x, y, "Payments per hour", bars=True))
    reasons = section.tables["top_failure_reasons"]
    if not reasons.empty:
        rp.table(reasons, currency=currency)
