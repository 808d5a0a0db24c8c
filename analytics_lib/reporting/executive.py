"""The executive and board reports' own parts: depth by audience level, the platform's executive
KPI grid, month-by-month strategic trends, the risk assessment, action items and the next review."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pandas as pd

from analytics_lib.metrics import (
    Period,
    recurring_revenue,
    revenue_analytics,
    transaction_analytics,
)
from analytics_lib.reporting import blocks as rp
from analytics_lib.reporting import charts
from analytics_lib.reporting import format as fmt

LEVEL_NAMES = {"c_level": "C-level summary", "vp_level": "VP briefing", "director_level": "Director detail"}
#: card networks' early-warning chargeback ratios (Visa VDMP ~0.9 %, Mastercard ECM 1.0 %; by count)
CHARGEBACK_WARNING = 0.009
CHARGEBACK_LIMIT = 0.010
SUCCESS_RATE_FLOOR = 0.85
MONTHLY_CHURN_CEILING = 0.05
PROVIDER_CONCENTRATION = 0.60
LTV_CAC_FLOOR = 3.0
OWNERS = {"revenue_opportunity": "Growth", "cost_optimization": "Payments operations", "customer": "Customer success",
          "market": "Growth", "risk": "Risk and fraud"}


@dataclass(frozen=True)
class Depth:
    insights: int
    functional: bool  # revenue, MRR, customers, geography sections
    detail: bool  # payments, providers, fraud sections and full tables


def depth(level: str) -> Depth:
    levels = {"c_level": Depth(5, False, False), "vp_level": Depth(8, True, False), "director_level": Depth(12, True, True)}
    if level not in levels:
        raise ValueError(f"level must be one of {', '.join(levels)}, not {level!r}")
    return levels[level]


def next_review(period: Period) -> date:
    """When the next report of this kind is due: one period after this one ends."""
    if period.kind in ("month", "quarter", "year"):
        months = {"month": 1, "quarter": 3, "year": 12}[period.kind]
        y, m = divmod(period.end.month - 1 + months, 12)
        return date(period.end.year + y, m + 1, 1)
    return period.end + timedelta(days=period.days)


def strategic_trends(ctx: Any, months: int = 12) -> pd.DataFrame:
    """One row per calendar month for the ``months`` months ending with the report's period:
    payments, success rate, gross and net revenue, MRR and its movements, subscribers."""
    end = ctx.period.end
    first = date(end.year, end.month, 1) if end.day != 1 else end
    y, m = divmod(first.month - 1 - months, 12)
    window = Period.between(date(first.year + y, m + 1, 1), end - timedelta(days=1), ctx.timezone)
    tx = transaction_analytics(ctx.session, window, ctx.filters, ctx.currency, grain="month").tables["time_series"]
    rev = revenue_analytics(ctx.session, window, ctx.filters, ctx.currency, with_growth=False).tables["daily"]
    mrr = recurring_revenue(ctx.session, window, ctx.filters, ctx.currency, ctx.options).tables["movements"]
    out = pd.DataFrame({"month": pd.to_datetime(tx["bucket"]).dt.strftime("%Y-%m"),
                        "transactions": tx["transactions"], "success_rate": tx["success_rate"]})
    if not rev.empty:
        r = rev.assign(month=pd.to_datetime(rev["day"]).dt.strftime("%Y-%m")).groupby("month", as_index=False)[
            ["revenue", "refunds", "chargebacks", "fees", "net_revenue"]].sum()
        out = out.merge(r, on="month", how="outer")
    if not mrr.empty:
        keep = [c for c in ("label", "mrr_end", "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr",
                            "reactivation_mrr", "subscribers_end") if c in mrr]
        out = out.merge(mrr[keep].rename(columns={"label": "month", "mrr_end": "mrr"}), on="month", how="outer")
    out = out.sort_values("month").reset_index(drop=True)
    if {"new_mrr", "churned_mrr"} <= set(out.columns):
        out["net_new_mrr"] = (out["new_mrr"].fillna(0) + out["expansion_mrr"].fillna(0) + out["reactivation_mrr"].fillna(0)
                              - out["contraction_mrr"].fillna(0) - out["churned_mrr"].fillna(0))
    return out.rename(columns={"month": "label"}).assign(month=lambda f: f["label"])


def show_trends(trends: pd.DataFrame, currency: str) -> None:
    if trends.empty:
        rp.note("No history before this period.")
        return
    if "revenue" in trends:
        rp.chart(charts.time_series(trends, "month", ["revenue", "net_revenue"], "Revenue by month", "money", currency,
                                    labels={"revenue": "gross", "net_revenue": "net"}))
    if "mrr" in trends:
        rp.chart(charts.time_series(trends, "month", ["mrr"], "MRR at month end", "money", currency))
    rp.chart(charts.time_series(trends, "month", ["transactions"], "Payments and success rate by month", bars=True,
                                secondary="success_rate", labels={"success_rate": "success rate"}))


def kpi_cards(result: Any) -> list[rp.KPI]:
    """The platform's executive KPI grid."""
    s, t = result.summary, {tr.metric: tr for tr in result.trends}
    r, c, g = result.revenue.summary, result.customers.summary, result.geography.summary

    def trend(metric: str, points: bool = False) -> dict[str, Any]:
        tr = t.get(metric)
        if tr is None:
            return {}
        return {"change": tr.change if points else tr.change_percent, "significance": tr.significance,
                "change_kind": "points" if points else "relative"}

    customer_growth = (c["new_customers"] / c["total_customers"]) if c.get("total_customers") else None
    fraud_rate = result.fraud.summary.get("confirmed_fraud_alerts")
    tx = result.transactions.summary.get("total_transactions") or 0
    return [
        rp.KPI("Revenue", s["gross_revenue"], "money", **trend("gross_revenue")),
        rp.KPI("Recurring revenue (MRR)", s.get("mrr"), "money", note=f"ARR {fmt.money(s.get('arr'), result.currency, compact=True)}"),
        rp.KPI("Growth vs last year", s.get("revenue_growth_vs_last_year"), "percent", good=None),
        rp.KPI("Revenue per customer", s.get("revenue_per_customer"), "money"),
        rp.KPI("Customer growth", customer_growth, "percent", note=f"{fmt.count(c.get('new_customers'))} new customers"),
        rp.KPI("International share", g.get("international_share"), "percent", good=None,
               note=f"{fmt.count(g.get('countries'))} countries"),
        rp.KPI("Payment success rate", s["success_rate"], "percent", **trend("success_rate", points=True)),
        rp.KPI("Processing cost ratio", s.get("processing_cost_ratio"), "percent", good="down", note="fees / gross revenue"),
        rp.KPI("LTV", s.get("ltv"), "money"),
        rp.KPI("CAC", s.get("cac"), "money", good="down"),
        rp.KPI("LTV / CAC", s.get("ltv_to_cac"), "multiple"),
        rp.KPI("Customer churn", s.get("customer_churn_rate"), "percent", good="down", note="subscribers lost, monthly"),
        rp.KPI("Chargeback rate", r.get("chargeback_rate"), "percent", good="down", **trend("chargeback_rate", points=True)),
        rp.KPI("Confirmed fraud", (fraud_rate / tx) if fraud_rate is not None and tx else None, "percent", good="down",
               note="confirmed fraud alerts / payments"),
    ]


def risk_assessment(result: Any, insights: list[Any] | None = None) -> pd.DataFrame:
    """The standing risks, each measured against its threshold, plus the period's risk insights."""
    r, s = result.revenue.summary, result.summary
    rows = []

    def add(risk: str, value: float | None, threshold: float, kind: str, higher_is_worse: bool, what: str) -> None:
        if value is None:
            return
        breach = value > threshold if higher_is_worse else value < threshold
        near = (value > threshold * 0.8) if higher_is_worse else (value < threshold * 1.05)
        level = "high" if breach else ("medium" if near else "low")
        rows.append({"risk": risk, "level": level, "measure": fmt.value(value, kind, result.currency),
                     "threshold": fmt.value(threshold, kind, result.currency), "what it means": what})

    add("Chargeback ratio", r.get("chargeback_rate"), CHARGEBACK_WARNING, "percent", True,
        "card networks put merchants above ~0.9 % (Visa) / 1 % (Mastercard) of disputes into monitoring programmes")
    add("Payment success rate", s.get("success_rate"), SUCCESS_RATE_FLOOR, "percent", False,
        "every failed payment is revenue at risk and a worse checkout experience")
    add("Subscriber churn (monthly)", s.get("customer_churn_rate"), MONTHLY_CHURN_CEILING, "percent", True,
        "churn above 5 % a month halves a subscriber base in about a year")
    add("LTV / CAC", s.get("ltv_to_cac"), LTV_CAC_FLOOR, "multiple", False,
        "below 3x, acquisition spend is hard to pay back")
    providers = result.performance.tables.get("providers")
    if providers is not None and not providers.empty and providers["transactions"].sum():
        top = providers.sort_values("transactions", ascending=False).iloc[0]
        share = float(top["transactions"] / providers["transactions"].sum())
        add(f"Provider concentration ({top['provider']})", share, PROVIDER_CONCENTRATION, "percent", True,
            "an outage at one provider would stop most payments")
    for item in insights or []:
        if getattr(item, "category", None) == "risk":
            rows.append({"risk": item.title, "level": item.business_impact, "measure": "", "threshold": "",
                         "what it means": item.text})
    order = {"high": 0, "medium": 1, "low": 2}
    frame = pd.DataFrame(rows, columns=["risk", "level", "measure", "threshold", "what it means"])
    return frame.sort_values("level", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


def action_items(insights: list[Any], risks: pd.DataFrame, limit: int = 8) -> pd.DataFrame:
    """What to do before the next review: the top insights' first actions and the high risks."""
    rows = []
    for item in insights[:limit]:
        actions = list(getattr(item, "recommended_actions", []) or [])
        if actions:
            rows.append({"action": actions[0], "why": item.title, "owner": OWNERS.get(item.category, "Payments team"),
                         "priority": item.business_impact})
    for _, risk in risks[risks["level"] == "high"].iterrows():
        if not any(r["why"] == risk["risk"] for r in rows):
            rows.append({"action": f"Bring {risk['risk'].lower()} back inside {risk['threshold'] or 'its threshold'}",
                         "why": risk["risk"], "owner": "Risk and fraud" if "hargeback" in risk["risk"] else "Payments team",
                         "priority": "high"})
    return pd.DataFrame(rows[:limit], columns=["action", "why", "owner", "priority"])
