"""Revenue opportunities: high-value segments (RFM and countries) and pricing headroom measured
from the price elasticity around discounts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from analytics_lib.insights import stats
from analytics_lib.insights import text as fmt
from analytics_lib.insights.base import Insight, RuleContext, rule
from analytics_lib.metrics import Period

#: what to do about a high-value RFM segment, by segment name (default: grow it)
SEGMENT_ACTIONS = {
    "Cannot lose them": [
        "Run a win-back campaign for {segment}: they were among the most valuable customers but "
        "have not paid recently",
        "Offer them a personal incentive (bundle, annual plan at a saving) to return",
        "Ask the lapsed ones why they stopped (short survey) and fix the top reason",
    ],
}
DEFAULT_SEGMENT_ACTIONS = [
    "Build look-alike audiences from {segment} customers for acquisition campaigns",
    "Offer {segment} customers a loyalty or referral programme",
    "Create premium bundles or annual plans aimed at {segment} customers",
]


def above_average(groups: pd.DataFrame, amount: str, average: float, ctx: RuleContext) -> pd.DataFrame:
    """The groups (RFM segments, countries) with enough customers whose ``amount`` per customer
    is over the threshold multiple of ``average``, highest multiple first, with their ``value``
    (per customer) and ``multiple`` (of the average)."""
    o = ctx.options
    rows = groups[groups["customers"] >= o.high_value_min_segment_customers].copy()
    rows["value"] = rows[amount] / rows["customers"]
    rows["multiple"] = rows["value"] / average
    return rows[rows["multiple"] > o.high_value_ltv_multiple].sort_values("multiple", ascending=False)


def also_above(high: pd.DataFrame, name: Callable[[Any], str], ctx: RuleContext) -> list[str]:
    """The sentence naming the next three groups above the threshold (none: no sentence)."""
    others = [f"{name(r)} ({fmt.money(r.value, ctx.currency)}, {fmt.multiple(r.multiple)})"
              for r in high.iloc[1:4].itertuples()]
    if not others:
        return []
    return [f"Also above {fmt.multiple(ctx.options.high_value_ltv_multiple)}: {fmt.join(others)}."]


@rule("high_value_rfm_segment", "revenue_opportunity",
      "RFM segments whose lifetime revenue per customer exceeds a multiple of the average",
      needs=())
def high_value_rfm_segment(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    seg = ctx.table("customers", "rfm_segments")
    if seg.empty or not {"segment", "customers", "revenue"} <= set(seg.columns):
        return None
    seg = seg[seg["customers"] > 0]
    total_customers = int(seg["customers"].sum())
    if total_customers < o.high_value_min_customers:
        return None
    average = float(seg["revenue"].sum()) / total_customers
    if average <= 0:
        return None
    high = above_average(seg, "revenue", average, ctx)
    if high.empty:
        return None
    top = high.iloc[0]
    name = str(top["segment"])
    cur = ctx.currency
    parts = [
        f"{name}: {fmt.count(top['customers'])} customers ({fmt.percent(top['customers'] / total_customers)} "
        f"of everyone who has paid) have spent {fmt.money(top['value'], cur)} each to date, "
        f"{fmt.multiple(top['multiple'])} the average of {fmt.money(average, cur)}."
    ]
    parts += also_above(high, lambda r: str(r.segment), ctx)
    estimated = None
    period_revenue = None
    if ctx.session is not None:
        by_segment = ctx.query("rfm_segment_revenue")
        row = by_segment[by_segment["segment"] == name]
        if not row.empty:
            period_revenue = float(row["revenue"].iloc[0])
            estimated = o.segment_growth_assumption * period_revenue * ctx.monthly_factor
            parts.append(
                f"They paid {fmt.money(period_revenue, cur)} {fmt.during(ctx.period)}; growing that by "
                f"{fmt.percent(o.segment_growth_assumption, 0)} would add about {fmt.money(estimated, cur)} a month.")
    actions = [a.format(segment=name) for a in SEGMENT_ACTIONS.get(name, DEFAULT_SEGMENT_ACTIONS)]
    return Insight(
        id="high_value_rfm_segment", category="revenue_opportunity",
        title=f"High-value segment: {name} are worth {fmt.multiple(top['multiple'])} the average customer",
        text=" ".join(parts),
        business_impact=ctx.impact_from_revenue(estimated),
        confidence=stats.sample_confidence(int(top["customers"])),
        confidence_basis=f"sample size: {int(top['customers'])} customers in the segment (n/(n+50); the "
                         "result carries no per-customer variance)",
        recommended_actions=actions,
        estimated_revenue=estimated,
        evidence={
            "segment": name, "segment_customers": int(top["customers"]), "all_customers": total_customers,
            "segment_value_per_customer": float(top["value"]), "average_value_per_customer": average,
            "multiple": float(top["multiple"]), "threshold_multiple": o.high_value_ltv_multiple,
            "segment_revenue_in_period": period_revenue,
            "growth_assumption": o.segment_growth_assumption,
            "other_segments": [{"segment": r.segment, "value_per_customer": float(r.value),
                                "multiple": float(r.multiple), "customers": int(r.customers)}
                               for r in high.iloc[1:].itertuples()],
            "value_basis": "revenue of all successful payments up to the period end per customer (RFM monetary)",
        },
    )


@rule("high_value_country", "revenue_opportunity",
      "countries whose revenue per paying customer exceeds a multiple of the average",
      needs=())
def high_value_country(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    countries = ctx.table("geography", "countries")
    if countries.empty or not {"country_code", "volume", "customers"} <= set(countries.columns):
        return None
    average = ctx.value("revenue", "revenue_per_customer")
    paying = ctx.value("revenue", "paying_customers")
    if average is None or average <= 0 or paying is None or paying < o.high_value_min_customers:
        return None
    high = above_average(countries, "volume", average, ctx)
    if high.empty:
        return None
    top = high.iloc[0]
    cur = ctx.currency
    name = fmt.country(top["country_code"])
    gross = ctx.value("revenue", "gross_revenue") or 0.0
    estimated = o.segment_growth_assumption * float(top["volume"]) * ctx.monthly_factor
    parts = [
        f"Customers in {name} paid {fmt.money(top['value'], cur)} each {fmt.during(ctx.period)}, "
        f"{fmt.multiple(top['multiple'])} the {fmt.money(average, cur)} average per paying customer "
        f"({fmt.count(top['customers'])} customers, {fmt.percent(top['volume'] / gross) if gross else 'n/a'} of revenue)."
    ]
    parts += also_above(high, lambda r: fmt.country(r.country_code), ctx)
    parts.append(f"Growing the revenue from {name} by {fmt.percent(o.segment_growth_assumption, 0)} would add "
                 f"about {fmt.money(estimated, cur)} a month.")
    return Insight(
        id="high_value_country", category="revenue_opportunity",
        title=f"High-value market: customers in {name} are worth {fmt.multiple(top['multiple'])} the average",
        text=" ".join(parts),
        business_impact=ctx.impact_from_revenue(estimated),
        confidence=stats.sample_confidence(int(top["customers"])),
        confidence_basis=f"sample size: {int(top['customers'])} paying customers in {name} (n/(n+50))",
        recommended_actions=[
            f"Raise acquisition spend in {name} while its customer acquisition cost stays below their value",
            f"Localise checkout and offers for {name} (currency, payment methods, language)",
            f"Promote premium courses and annual plans to customers in {name}",
        ],
        estimated_revenue=estimated,
        evidence={
            "country": str(top["country_code"]), "customers": int(top["customers"]),
            "revenue": float(top["volume"]), "value_per_customer": float(top["value"]),
            "average_value_per_customer": average, "multiple": float(top["multiple"]),
            "threshold_multiple": o.high_value_ltv_multiple, "growth_assumption": o.segment_growth_assumption,
            "other_countries": [{"country": r.country_code, "value_per_customer": float(r.value),
                                 "multiple": float(r.multiple), "customers": int(r.customers)}
                                for r in high.iloc[1:].itertuples()],
            "value_basis": "gross revenue of the period per paying customer",
        },
    )


# -- pricing headroom ------------------------------------------------------------------------------


def measure_elasticity(daily: pd.DataFrame) -> dict[str, float] | None:
    """Price elasticity of daily one-off purchases: OLS of log(purchases) on log(price index),
    with day-of-week effects and a linear trend. Returns the slope (the elasticity), its
    standard error and the number of days; None when the design is singular."""
    d = daily[(daily["purchases"] > 0) & (daily["price_index"] > 0)].copy()
    if len(d) < 10:
        return None
    day = pd.to_datetime(d["day"])
    y = np.log(d["purchases"].to_numpy(float))
    x_price = np.log(d["price_index"].to_numpy(float))
    trend = ((day - day.min()).dt.days / 365.0).to_numpy(float)
    weekday = day.dt.day_of_week.to_numpy()
    columns = [np.ones(len(d)), x_price, trend]
    columns += [(weekday == w).astype(float) for w in range(1, 7) if (weekday == w).any()]
    x = np.column_stack(columns)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        return None
    beta, _, _, _ = np.linalg.lstsq(x, y, rcond=None)
    residuals = y - x @ beta
    dof = len(y) - x.shape[1]
    if dof <= 0:
        return None
    sigma2 = float(residuals @ residuals) / dof
    cov = sigma2 * np.linalg.inv(x.T @ x)
    return {"elasticity": float(beta[1]), "standard_error": float(np.sqrt(max(cov[1, 1], 0.0))),
            "days": int(len(d))}


@rule("pricing_headroom", "revenue_opportunity",
      "price elasticity of one-off purchases measured around discounts; headroom when demand is inelastic",
      needs=("session",))
def pricing_headroom(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    period = ctx.period
    window = Period(period.end - timedelta(days=o.pricing_lookback_days), period.end, "custom", period.timezone)
    start, end = window.start_utc, window.end_utc
    daily = ctx.query("pricing_daily", {
        "start": start, "end": end, "start_month": f"{start:%Y-%m}", "end_month": f"{end:%Y-%m}",
    })
    if daily.empty:
        return None
    purchases = int(daily["purchases"].sum())
    discounted = int(daily["discounted"].sum())
    full_price = purchases - discounted
    spread = float(np.log(daily["price_index"].clip(lower=1e-9)).std(ddof=1)) if len(daily) > 1 else 0.0
    if (len(daily) < o.pricing_min_days or discounted < o.pricing_min_discounted
            or full_price < o.pricing_min_full_price or not spread >= o.pricing_min_price_spread):
        return None
    fit = measure_elasticity(daily)
    if fit is None:
        return None
    e, se = fit["elasticity"], fit["standard_error"]
    p_inelastic = stats.normal_probability_above(e, se, -1.0)
    if e <= -o.pricing_max_elasticity or p_inelastic < o.pricing_min_inelastic_probability:
        return None
    one_off = ctx.value("revenue", "one_off_revenue")
    cur = ctx.currency
    delta = o.price_test_increase
    e_used = min(e, 0.0)  # a positive slope is not evidence that a price rise sells more
    lift = (1 + delta) * (1 + e_used * delta) - 1
    estimated = None if not one_off else one_off * ctx.monthly_factor * lift
    low, high = e - 1.96 * se, e + 1.96 * se
    parts = [
        f"On the {fit['days']} days with one-off purchases in the {o.pricing_lookback_days} days to "
        f"{fmt.period_end_name(period)}, days with deeper discounts did not sell proportionally more: the "
        f"measured price elasticity is {fmt.decimal(e)} (95% interval {fmt.decimal(low)} to {fmt.decimal(high)}; "
        f"{fmt.count(discounted)} discounted and {fmt.count(full_price)} full-price purchases).",
        f"Demand is inelastic around current prices (probability {fmt.probability(p_inelastic)} that the "
        "elasticity is above -1).",
    ]
    if estimated is not None and one_off:
        parts.append(
            f"A {fmt.percent(delta, 0)} price increase would lift one-off revenue of "
            f"{fmt.money(one_off * ctx.monthly_factor, cur)} a month by about {fmt.money(estimated, cur)} "
            f"({fmt.percent(lift)}) if the elasticity holds.")
    return Insight(
        id="pricing_headroom", category="revenue_opportunity",
        title=f"Pricing headroom: demand for one-off purchases is inelastic (elasticity {fmt.decimal(e)})",
        text=" ".join(parts),
        business_impact=ctx.impact_from_revenue(estimated),
        confidence=stats.bounded(p_inelastic),
        confidence_basis=f"probability that the elasticity is above -1 (inelastic), from the OLS estimate "
                         f"and its standard error over {fit['days']} days",
        recommended_actions=[
            f"A/B test a {fmt.percent(delta, 0)} price increase on one-off courses in a few markets before rolling it out",
            "Replace blanket discount codes with targeted offers: discounts did not buy proportionally more sales",
            "Introduce value-based tiers (e.g. course + certificate or mentoring) above the current price",
        ],
        estimated_revenue=estimated,
        evidence={
            "elasticity": e, "standard_error": se, "interval_95": [low, high], "days": fit["days"],
            "probability_inelastic": p_inelastic, "threshold_elasticity": -o.pricing_max_elasticity,
            "purchases": purchases, "discounted_purchases": discounted, "full_price_purchases": full_price,
            "daily_log_price_spread": spread, "lookback_days": o.pricing_lookback_days,
            "price_increase": delta, "monthly_one_off_revenue": None if not one_off else one_off * ctx.monthly_factor,
            "revenue_lift": lift,
            "model": "log(daily purchases) ~ log(mean price index) + weekday + linear trend (OLS)",
        },
    )
