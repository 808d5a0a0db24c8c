"""Risk insights: chargeback ratios approaching the card networks' monitoring thresholds, and
fraud spikes against the previous period."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analytics_lib.insights import stats
from analytics_lib.insights import text as fmt
from analytics_lib.insights.base import Insight, RuleContext, number, rule

NETWORK_NAMES = {"visa": "Visa", "mastercard": "Mastercard", "all": "card-network"}


def _limits(ctx: RuleContext, brand: str) -> tuple[float, int, str]:
    o = ctx.options
    if brand == "mastercard":
        return o.mastercard_chargeback_threshold, o.mastercard_min_chargebacks, "Mastercard's chargeback monitoring"
    return o.visa_dispute_threshold, o.visa_min_disputes, "Visa's dispute monitoring"


def chargeback_rows(ctx: RuleContext) -> tuple[pd.DataFrame, str]:
    """Per provider (and card brand with a session): sales and disputes opened in the period."""
    if ctx.session is not None:
        return ctx.query("card_network_disputes"), "disputes on each provider's Visa and Mastercard payments"
    by_provider = ctx.table("fraud", "chargebacks_by_provider")
    if by_provider.empty:
        return pd.DataFrame(columns=["provider", "brand", "sales", "disputes"]), ""
    frame = pd.DataFrame({"provider": by_provider["value"], "brand": "all",
                          "sales": by_provider["successful"], "disputes": by_provider["disputes"]})
    return frame, "all disputes per provider (no card-brand split without a session; Visa's stricter threshold applies)"


@rule("chargeback_threshold", "risk",
      "chargeback ratio per provider and card network against Visa's 0.9% and Mastercard's 1% "
      "monitoring thresholds", needs=())
def chargeback_threshold(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    rows, basis = chargeback_rows(ctx)
    flagged: list[dict[str, Any]] = []
    for r in rows.itertuples(index=False):
        sales, disputes = int(r.sales), int(r.disputes)
        if sales < o.chargeback_min_sales or disputes < o.chargeback_min_disputes:
            continue
        threshold, floor, programme = _limits(ctx, str(r.brand))
        ratio = disputes / sales
        warning = o.chargeback_warning_fraction * threshold
        if ratio < warning:
            continue
        monthly_disputes = disputes * ctx.monthly_factor
        flagged.append({
            "provider": str(r.provider), "brand": str(r.brand), "sales": sales, "disputes": disputes,
            "ratio": ratio, "threshold": threshold, "warning_level": warning, "count_floor": floor,
            "programme": programme, "share_of_threshold": ratio / threshold, "exceeds": ratio >= threshold,
            "monthly_disputes": monthly_disputes, "count_floor_reached": monthly_disputes >= floor,
            "probability_above_warning": stats.rate_above_probability(disputes, sales, warning),
        })
    if not flagged:
        return None
    flagged.sort(key=lambda x: x["share_of_threshold"], reverse=True)
    top = flagged[0]
    network = NETWORK_NAMES.get(top["brand"], top["brand"])
    provider = fmt.provider(top["provider"])
    period = fmt.during(ctx.period)
    subject = f"{provider}'s {network} dispute ratio" if top["brand"] != "all" else f"{provider}'s dispute ratio"
    state = "above" if top["exceeds"] else f"{fmt.percent(top['share_of_threshold'], 0)} of"
    parts = [
        f"{subject} was {fmt.percent(top['ratio'])} {period} ({fmt.count(top['disputes'])} disputes on "
        f"{fmt.count(top['sales'])} successful payments), {state} {top['programme']} threshold of "
        f"{fmt.percent(top['threshold'])}.",
    ]
    if top["count_floor_reached"]:
        parts.append(f"At about {fmt.count(top['monthly_disputes'])} disputes a month it also meets the programme's "
                     f"floor of {top['count_floor']}, so fines and monitoring can follow.")
    else:
        parts.append(f"The programme also needs {top['count_floor']} disputes a month; at about "
                     f"{fmt.count(top['monthly_disputes'])} it would not apply yet, but the ratio leaves little "
                     "room as volume grows.")
    if len(flagged) > 1:
        parts.append("Also near a threshold: " + fmt.join(
            [f"{fmt.provider(x['provider'])} {NETWORK_NAMES.get(x['brand'], x['brand'])} ({fmt.percent(x['ratio'])})"
             for x in flagged[1:4]]) + ".")
    trend = ctx.trend("chargeback_rate")
    if trend is not None and trend.trend == "up" and trend.significance in ("high", "medium") \
            and trend.previous_value is not None:
        parts.append(f"The overall chargeback rate rose from {fmt.percent(trend.previous_value)} to "
                     f"{fmt.percent(trend.current_value)} ({fmt.p_value(trend.p_value)}).")
    # a programme bites only when both the ratio and the count are reached: high impact when the
    # count is within the warning fraction of its floor too, medium for a ratio-only early warning
    severe = top["monthly_disputes"] >= o.chargeback_warning_fraction * top["count_floor"]
    confidence = top["probability_above_warning"] or 0.0
    return Insight(
        id="chargeback_threshold", category="risk",
        title=(f"Chargebacks {'above' if top['exceeds'] else 'approaching'} the {network} threshold at "
               f"{provider}: {fmt.percent(top['ratio'])} vs {fmt.percent(top['threshold'])}"),
        text=" ".join(parts),
        business_impact="high" if severe else "medium",
        confidence=stats.bounded(confidence),
        confidence_basis=(f"posterior probability (Jeffreys prior) that the true ratio is at or above the warning "
                          f"level of {fmt.percent(top['warning_level'])} after {top['disputes']} disputes in "
                          f"{top['sales']} payments"),
        recommended_actions=[
            f"Enrol {provider}'s card traffic in pre-dispute alerts (e.g. Visa RDR / Verifi, Ethoca) and "
            "refund alerted payments before they become disputes",
            "Require 3-D Secure on high-risk-score card payments (liability shift for fraud disputes)",
            "Make the statement descriptor and receipts recognisable; answer every open dispute with evidence",
        ],
        estimated_revenue=None,
        evidence={"flagged": flagged, "basis": basis,
                  "thresholds": {"visa": o.visa_dispute_threshold, "visa_min_disputes": o.visa_min_disputes,
                                 "mastercard": o.mastercard_chargeback_threshold,
                                 "mastercard_min_chargebacks": o.mastercard_min_chargebacks,
                                 "warning_fraction": o.chargeback_warning_fraction},
                  "ratio_definition": "disputes opened in the period / successful payments created in the period"},
    )


# -- fraud spikes ----------------------------------------------------------------------------------


def _confirmed(alerts: pd.DataFrame) -> int:
    if alerts.empty or "status" not in alerts:
        return 0
    return int(alerts.loc[alerts["status"] == "confirmed_fraud", "alerts"].sum())


@rule("fraud_spike", "risk",
      "share of payments scored for review/block and confirmed fraud alerts against the previous period",
      needs=("session",), previous_period=True)
def fraud_spike(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    f = ctx.summary("fraud")
    if not f:
        return None
    thresholds = {"review_threshold": f.get("review_threshold", 65.0), "block_threshold": f.get("block_threshold", 75.0)}
    prev = ctx.previous("fraud", "summary", thresholds, one_row=True)
    prev_alerts = ctx.previous("fraud", "alerts")
    days_c, days_p = ctx.period.days, ctx.period.previous().days
    signals: list[dict[str, Any]] = []
    n_c, n_p = int(f.get("scored_transactions") or 0), int(prev.get("scored_transactions") or 0)
    s_c, s_p = number(f.get("review_share")), number(prev.get("review_share"))
    if n_c >= o.fraud_min_scored and n_p >= o.fraud_min_scored and s_c is not None and s_p:
        k_c, k_p = int(round(s_c * n_c)), int(round(s_p * n_p))
        rise = s_c / s_p - 1
        p = stats.two_proportion_p(k_c, n_c, k_p, n_p)
        if k_c >= o.fraud_min_flagged and rise >= o.fraud_min_relative_increase and p is not None and p < o.fraud_p_value:
            signals.append({"signal": "flagged_share", "current": s_c, "previous": s_p, "current_count": k_c,
                            "previous_count": k_p, "current_base": n_c, "previous_base": n_p,
                            "relative_increase": rise, "p_value": p})
    c_c = int(f.get("confirmed_fraud_alerts") or 0)
    c_p = _confirmed(prev_alerts)
    if c_c >= o.fraud_min_confirmed:
        rate_c, rate_p = c_c / days_c, c_p / days_p
        rise = float("inf") if rate_p == 0 else rate_c / rate_p - 1
        p = stats.poisson_counts_p(c_c, days_c, c_p, days_p)
        if rise >= o.fraud_min_relative_increase and p is not None and p < o.fraud_p_value:
            signals.append({"signal": "confirmed_alerts", "current": c_c, "previous": c_p,
                            "relative_increase": None if rate_p == 0 else rise, "p_value": p,
                            "per_day": rate_c, "previous_per_day": rate_p})
    if not signals:
        return None
    prev_name = fmt.previous_name(ctx.period)
    parts = []
    for s in signals:
        if s["signal"] == "flagged_share":
            parts.append(
                f"Payments scoring {thresholds['review_threshold']:g} or more (review or block) rose to "
                f"{fmt.percent(s['current'])} of scored attempts from {fmt.percent(s['previous'])} {fmt.previous_during(ctx.period)} "
                f"(+{fmt.points(s['current'] - s['previous'])}, {fmt.p_value(s['p_value'])}; "
                f"{fmt.count(s['current_base'])} attempts).")
        else:
            change = "" if s["relative_increase"] is None else f", +{fmt.percent(s['relative_increase'], 0)} per day"
            parts.append(f"Confirmed fraud alerts rose to {fmt.count(s['current'])} from {fmt.count(s['previous'])} "
                         f"{fmt.previous_during(ctx.period)}{change} ({fmt.p_value(s['p_value'])}).")
    growth = _alert_type_growth(ctx.table("fraud", "alerts"), prev_alerts)
    if growth:
        parts.append(f"The largest increase is in {growth['alert_type'].replace('_', ' ')} alerts "
                     f"({fmt.count(growth['previous'])} to {fmt.count(growth['current'])}).")
    confirmed = any(s["signal"] == "confirmed_alerts" for s in signals)
    p_min = min(s["p_value"] for s in signals)
    return Insight(
        id="fraud_spike", category="risk",
        title=("Fraud spike: " + fmt.join(["confirmed fraud alerts up" if s["signal"] == "confirmed_alerts"
                                           else "risky payment share up" for s in signals])
               + f" against {prev_name}"),
        text=" ".join(parts),
        business_impact="high" if confirmed else "medium",
        confidence=stats.confidence_from_p(p_min),
        confidence_basis=("two-proportion z-test of the flagged share; exact Poisson test of confirmed alerts "
                          f"per day (smallest {fmt.p_value(p_min)})"),
        recommended_actions=[
            "Review the rules and thresholds the new traffic trips; tighten velocity and card-testing rules",
            "Step up to 3-D Secure for risk scores in the review band instead of letting them through",
            "Make sure the manual review queue is staffed for the higher volume",
        ],
        estimated_revenue=None,
        evidence={"signals": signals, "alert_type_growth": growth, "thresholds": thresholds,
                  "threshold_relative_increase": o.fraud_min_relative_increase, "threshold_p_value": o.fraud_p_value},
    )


def _alert_type_growth(current: pd.DataFrame, previous: pd.DataFrame) -> dict[str, Any] | None:
    if current.empty or "alert_type" not in current:
        return None
    c = current.groupby("alert_type")["alerts"].sum()
    p = previous.groupby("alert_type")["alerts"].sum() if not previous.empty else pd.Series(dtype=float)
    diff = c.sub(p, fill_value=0).sort_values(ascending=False)
    if diff.empty or diff.iloc[0] <= 0:
        return None
    t = diff.index[0]
    return {"alert_type": str(t), "current": int(c.get(t, 0)), "previous": int(p.get(t, 0))}
