"""Customer insights: churn-risk pockets in the churn model's output, a rising subscriber churn
rate, and the latest cohorts' retention against earlier ones."""

from __future__ import annotations

from datetime import date
from itertools import combinations
from typing import Any

import pandas as pd

from analytics_lib.insights import stats
from analytics_lib.insights import text as fmt
from analytics_lib.insights.base import Insight, InsightError, RuleContext, number, rule
from analytics_lib.metrics import MetricOptions, recurring_revenue

#: dimension -> column names accepted in a churn model output (first found wins)
POCKET_DIMENSIONS = {
    "plan": ("plan", "product_id", "plan_id"),
    "country": ("country", "country_code"),
    "channel": ("channel", "acquisition_channel"),
}


def churn_frame(output: Any) -> pd.DataFrame:
    """The churn model's output as a DataFrame with customer_id, probability and, when known, mrr.

    Accepts a DataFrame (columns customer_id, probability, optional mrr and segment columns) or a
    list of :class:`analytics_lib.models.Prediction` (or their ``to_dict()``)."""
    if isinstance(output, pd.DataFrame):
        frame = output.copy()
        if "entity_id" in frame.columns and "customer_id" not in frame.columns:
            frame = frame.rename(columns={"entity_id": "customer_id"})
    else:
        rows = []
        for item in output:
            d = item.to_dict() if hasattr(item, "to_dict") else dict(item)
            details = d.get("details") or {}
            rows.append({"customer_id": d.get("customer_id", d.get("entity_id")),
                         "probability": d.get("probability"), "mrr": details.get("mrr", d.get("mrr")),
                         "horizon_days": details.get("time_horizon_days")})
        frame = pd.DataFrame(rows)
    missing = {"customer_id", "probability"} - set(frame.columns)
    if missing:
        raise InsightError(f"the churn model output needs columns customer_id and probability (missing: {', '.join(sorted(missing))})")
    frame = frame.dropna(subset=["customer_id", "probability"])
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["probability"] = frame["probability"].astype(float)
    if ((frame["probability"] < 0) | (frame["probability"] > 1)).any():
        raise InsightError("churn probabilities must lie within 0..1")
    return frame.drop_duplicates("customer_id")


@rule("churn_risk_pockets", "customer",
      "groups of subscribers (plan, country, channel) whose mean churn probability stands out in the "
      "churn model's output", needs=("model:churn",))
def churn_risk_pockets(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    frame = churn_frame(ctx.models["churn"])
    if len(frame) < o.churn_min_scored:
        return None
    dims = {d: next((c for c in cols if c in frame.columns), None) for d, cols in POCKET_DIMENSIONS.items()}
    if not any(dims.values()) and ctx.session is not None:
        segments = ctx.query("customer_segments", {"ids": frame["customer_id"].tolist()})
        frame = frame.merge(segments, on="customer_id", how="left")
        dims = {d: d for d in POCKET_DIMENSIONS}
    dims = {d: c for d, c in dims.items() if c}
    if not dims:
        return None
    arpa = ctx.value("recurring_revenue", "arpa")
    if "mrr" in frame.columns and frame["mrr"].notna().any():
        frame["mrr_value"] = frame["mrr"].astype(float).fillna(frame["mrr"].astype(float).mean())
        mrr_basis = "each subscriber's MRR from the model output"
    elif arpa is not None:
        frame["mrr_value"] = arpa
        mrr_basis = "the period's average MRR per subscriber (ARPA)"
    else:
        frame["mrr_value"] = float("nan")
        mrr_basis = "no MRR available"
    mean = float(frame["probability"].mean())
    sd = float(frame["probability"].std(ddof=1))
    if mean <= 0:
        return None
    pockets: list[dict[str, Any]] = []
    groupings = [(d,) for d in dims] + list(combinations(dims, 2))
    for grouping in groupings:
        columns = [dims[d] for d in grouping]
        for values, g in frame.groupby(columns, dropna=True):
            n = len(g)
            if n < o.churn_pocket_min_customers:
                continue
            gm = float(g["probability"].mean())
            p = stats.mean_z_p(gm, mean, sd, n)
            if gm / mean < o.churn_pocket_min_lift or p is None or p >= o.churn_pocket_p_value:
                continue
            values = values if isinstance(values, tuple) else (values,)
            pockets.append({"segment": {d: str(v) for d, v in zip(grouping, values, strict=True)},
                            "subscribers": n, "mean_probability": gm, "lift": gm / mean, "p_value": p,
                            "expected_churners": float(g["probability"].sum()),
                            "expected_mrr_loss": float((g["probability"] * g["mrr_value"]).sum()),
                            "ids": set(g["customer_id"])})
    if not pockets:
        return None
    pockets.sort(key=lambda x: (x["expected_mrr_loss"] if x["expected_mrr_loss"] == x["expected_mrr_loss"]
                                else x["expected_churners"]), reverse=True)
    listed: list[dict[str, Any]] = []
    for x in pockets:  # skip pockets mostly made of subscribers already listed
        if all(len(x["ids"] & y["ids"]) <= 0.5 * len(x["ids"]) for y in listed):
            listed.append(x)
        if len(listed) == 3:
            break
    union: set[str] = set().union(*(x["ids"] for x in listed))
    members = frame[frame["customer_id"].isin(union)]
    loss = float((members["probability"] * members["mrr_value"]).sum())
    estimated = None if loss != loss else loss * o.retention_save_rate
    names = _plan_names(ctx)
    cur = ctx.currency

    def label(x: dict[str, Any]) -> str:
        seg = x["segment"]
        out = "subscribers"
        if "plan" in seg:
            out += f" on {names.get(seg['plan'], seg['plan'])}"
        if "country" in seg:
            out += f" in {fmt.country(seg['country'])}"
        if "channel" in seg:
            out += f" acquired through {seg['channel'].replace('_', ' ')}"
        return out

    top = listed[0]
    horizon = _horizon(frame)
    parts = [
        f"{fmt.sentence_start(label(top))} have a mean{horizon} churn probability of {fmt.percent(top['mean_probability'])} against "
        f"{fmt.percent(mean)} across all {fmt.count(len(frame))} scored subscribers "
        f"({fmt.multiple(top['lift'])}, {fmt.count(top['subscribers'])} subscribers, {fmt.p_value(top['p_value'])}).",
    ]
    if len(listed) > 1:
        parts.append("Also: " + fmt.join([f"{label(x)} ({fmt.percent(x['mean_probability'])}, "
                                          f"{fmt.count(x['subscribers'])})" for x in listed[1:]]) + ".")
    if estimated is not None:
        parts.append(f"These pockets hold {fmt.count(len(members))} subscribers and {fmt.money(loss, cur)} of expected "
                     f"MRR loss; a retention campaign keeping {fmt.percent(o.retention_save_rate, 0)} of it would "
                     f"protect about {fmt.money(estimated, cur)} a month.")
    return Insight(
        id="churn_risk_pockets", category="customer",
        title=f"Churn-risk pocket: {label(top)} ({fmt.percent(top['mean_probability'])} churn probability)",
        text=" ".join(parts),
        business_impact=ctx.impact_from_revenue(estimated, default="medium"),
        confidence=stats.confidence_from_p(max(x["p_value"] for x in listed)),
        confidence_basis="z-test of each pocket's mean churn probability against all scored subscribers "
                         "(largest p-value of the listed pockets); the model's calibration is taken as given",
        recommended_actions=[
            f"Contact {label(top)} with a retention offer before their next renewal",
            "Check what the pocket has in common (price, payment failures, engagement) and fix the cause",
            "Offer an annual plan or a pause option instead of cancellation",
        ],
        estimated_revenue=estimated,
        evidence={
            "scored_subscribers": len(frame), "mean_probability": mean,
            "pockets": [{k: v for k, v in x.items() if k != "ids"} for x in listed],
            "subscribers_in_pockets": len(members), "expected_mrr_loss": None if loss != loss else loss,
            "save_rate": o.retention_save_rate, "mrr_basis": mrr_basis,
            "threshold_lift": o.churn_pocket_min_lift, "threshold_p_value": o.churn_pocket_p_value,
        },
    )


def _horizon(frame: pd.DataFrame) -> str:
    """`` 30-day`` when the model output states one horizon for every row, else nothing."""
    if "horizon_days" not in frame.columns:
        return ""
    values = frame["horizon_days"].dropna().unique()
    return f" {int(values[0])}-day" if len(values) == 1 else ""


def _plan_names(ctx: RuleContext) -> dict[str, str]:
    names: dict[str, str] = {}
    by_plan = ctx.table("recurring_revenue", "by_plan")
    if {"product_id", "plan_name"} <= set(by_plan.columns):
        names.update(zip(by_plan["product_id"].astype(str), by_plan["plan_name"].astype(str), strict=False))
    by_product = ctx.table("revenue", "by_product")
    if {"product_id", "product_name"} <= set(by_product.columns):
        for k, v in zip(by_product["product_id"].astype(str), by_product["product_name"].astype(str), strict=False):
            names.setdefault(k, v)
    return names


# -- churn rate rising -----------------------------------------------------------------------------


def churn_comparison(ctx: RuleContext) -> dict[str, Any] | None:
    """Subscriber churn of the period and of the one before (through the session), or of the last
    month against the earlier months of a multi-month result (without one)."""
    m = ctx.summary("recurring_revenue")
    rate, start = number(m.get("customer_churn_rate")), number(m.get("subscribers_start"))
    session = ctx.session
    if session is not None and rate is not None and start:
        conventions = m.get("conventions") or {}
        options = MetricOptions(mrr_cancel_at=conventions.get("cancel_at", "period_end"),
                                mrr_same_interval=conventions.get("same_interval", "count"))
        prev = ctx.cached(("recurring_previous",), lambda: recurring_revenue(
            session, ctx.period.previous(), ctx.result.filters, ctx.currency, options).summary)
        p_rate, p_start = number(prev.get("customer_churn_rate")), number(prev.get("subscribers_start"))
        if p_rate is None or not p_start:
            return None
        return {
            "current_rate": rate, "current_base": int(start), "current_churned": int(round(rate * start)),
            "previous_rate": p_rate, "previous_base": int(p_start), "previous_churned": int(round(p_rate * p_start)),
            "current_mrr_churn": number(m.get("gross_mrr_churn_rate")),
            "previous_mrr_churn": number(prev.get("gross_mrr_churn_rate")),
            "mrr_start": number(m.get("mrr_start")), "current_label": fmt.during(ctx.period),
            "previous_label": fmt.previous_during(ctx.period), "months": ctx.period.days / 30.4375,
            "basis": "previous period",
        }
    moves = ctx.table("recurring_revenue", "movements")
    if len(moves) < 2 or not {"churned_customers", "subscribers_start"} <= set(moves.columns):
        return None
    last, earlier = moves.iloc[-1], moves.iloc[:-1]
    if not last["subscribers_start"] or not earlier["subscribers_start"].sum():
        return None
    mrr_cur = (last["churned_mrr"] + last["contraction_mrr"]) / last["mrr_start"] if last.get("mrr_start") else None
    e_start = earlier["mrr_start"].sum() if "mrr_start" in earlier else 0
    mrr_prev = ((earlier["churned_mrr"] + earlier["contraction_mrr"]).sum() / e_start) if e_start else None
    return {
        "current_rate": float(last["churned_customers"] / last["subscribers_start"]),
        "current_base": int(last["subscribers_start"]), "current_churned": int(last["churned_customers"]),
        "previous_rate": float(earlier["churned_customers"].sum() / earlier["subscribers_start"].sum()),
        "previous_base": int(earlier["subscribers_start"].sum()),
        "previous_churned": int(earlier["churned_customers"].sum()),
        "current_mrr_churn": None if mrr_cur is None else float(mrr_cur),
        "previous_mrr_churn": None if mrr_prev is None else float(mrr_prev),
        "mrr_start": float(last["mrr_start"]) if "mrr_start" in last else None,
        "current_label": f"in {last['label']}", "previous_label": "in the earlier months of the period (pooled)",
        "months": 1.0, "basis": "last month against the earlier months",
    }


@rule("churn_rate_rise", "customer",
      "subscriber churn rate against the previous period (two-proportion test)", needs=(), previous_period=True)
def churn_rate_rise(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    c = churn_comparison(ctx)
    if c is None:
        return None
    if (c["current_base"] < o.churn_rise_min_subscribers or c["previous_base"] < o.churn_rise_min_subscribers
            or c["current_churned"] < o.churn_rise_min_churned or c["previous_rate"] <= 0):
        return None
    rise = c["current_rate"] / c["previous_rate"] - 1
    p = stats.two_proportion_p(c["current_churned"], c["current_base"], c["previous_churned"], c["previous_base"])
    if rise < o.churn_rise_min_relative or p is None or p >= o.churn_rise_p_value:
        return None
    cur = ctx.currency
    arpa = ctx.value("recurring_revenue", "arpa")
    estimated = None
    basis = None
    if c["current_mrr_churn"] is not None and c["previous_mrr_churn"] is not None and c["mrr_start"]:
        excess = (c["current_mrr_churn"] - c["previous_mrr_churn"]) * c["mrr_start"]
        estimated, basis = excess / max(c["months"], 1e-9), "gross MRR churn rate difference x MRR at the start"
    elif arpa is not None:
        excess = (c["current_rate"] - c["previous_rate"]) * c["current_base"] * arpa
        estimated, basis = excess / max(c["months"], 1e-9), "churn rate difference x subscribers x ARPA"
    if estimated is not None and estimated <= 0:
        estimated = None
    parts = [
        f"Subscriber churn rose to {fmt.percent(c['current_rate'])} {c['current_label']} from "
        f"{fmt.percent(c['previous_rate'])} {c['previous_label']} (+{fmt.points(c['current_rate'] - c['previous_rate'])}, "
        f"{fmt.p_value(p)}; {fmt.count(c['current_base'])} subscribers at the start).",
    ]
    if estimated is not None:
        parts.append(f"Bringing churn back to the earlier rate would keep about {fmt.money(estimated, cur)} of MRR a month.")
    return Insight(
        id="churn_rate_rise", category="customer",
        title=f"Subscriber churn up {fmt.percent(rise, 0)}: {fmt.percent(c['current_rate'])} vs {fmt.percent(c['previous_rate'])}",
        text=" ".join(parts),
        business_impact=ctx.impact_from_revenue(estimated, default="high"),
        confidence=stats.confidence_from_p(p),
        confidence_basis=f"two-proportion z-test of churned subscribers over subscribers at the start ({fmt.p_value(p)})",
        recommended_actions=[
            "Split the churn into voluntary and payment-failure cancellations; tighten dunning if failures grew",
            "Interview or survey subscribers who cancelled this period and fix the most common reason",
            "Target subscribers at risk with a save offer (discounted annual plan, pause) before renewal",
        ],
        estimated_revenue=estimated,
        evidence={**c, "relative_rise": rise, "p_value": p, "estimate_basis": basis,
                  "threshold_relative_rise": o.churn_rise_min_relative, "threshold_p_value": o.churn_rise_p_value},
    )


# -- cohorts ---------------------------------------------------------------------------------------


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@rule("cohort_retention_change", "customer",
      "second-month retention of the latest cohorts against earlier cohorts (two-proportion test)", needs=())
def cohort_retention_change(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    long = ctx.table("cohorts", "long")
    if long.empty or not {"cohort_month", "cohort_size", "months_since", "active_customers"} <= set(long.columns):
        return None
    sizes = long.groupby("cohort_month")["cohort_size"].first()
    m1 = long[long["months_since"] == 1].set_index("cohort_month")
    rows: list[dict[str, Any]] = []
    for month, size in sizes.items():
        first = date.fromisoformat(f"{str(month)[:7]}-01")
        if _add_months(first, 2) > ctx.period.end:  # the second month is not over yet
            continue
        active = int(m1.at[month, "active_customers"]) if month in m1.index else 0
        revenue = float(m1.at[month, "revenue"]) if month in m1.index and "revenue" in m1.columns else 0.0
        rows.append({"cohort": str(month)[:7], "size": int(size), "active": active, "revenue": revenue})
    if len(rows) < o.cohort_recent + o.cohort_min_earlier:
        return None
    rows.sort(key=lambda r: r["cohort"])
    recent, earlier = rows[-o.cohort_recent:], rows[:-o.cohort_recent]
    n_r, k_r = sum(r["size"] for r in recent), sum(r["active"] for r in recent)
    n_e, k_e = sum(r["size"] for r in earlier), sum(r["active"] for r in earlier)
    if n_r < o.cohort_min_recent_customers or n_e < o.cohort_min_earlier_customers or k_e == 0:
        return None
    r_r, r_e = k_r / n_r, k_e / n_e
    change = r_r / r_e - 1
    p = stats.two_proportion_p(k_r, n_r, k_e, n_e)
    if abs(change) < o.cohort_min_relative_change or p is None or p >= o.cohort_p_value:
        return None
    span = recent[0]["cohort"] if len(recent) == 1 else f"{recent[0]['cohort']} to {recent[-1]['cohort']}"
    cur = ctx.currency
    worse = change < 0
    estimated = None
    if worse and k_r:
        per_active = sum(r["revenue"] for r in recent) / k_r
        lost = (r_e - r_r) * n_r / len(recent)
        estimated = lost * per_active if per_active > 0 else None
    parts = [
        f"Customers who first paid in {span} came back in their second month at {fmt.percent(r_r)} "
        f"({fmt.count(n_r)} customers), {'down' if worse else 'up'} from {fmt.percent(r_e)} for the "
        f"{len(earlier)} earlier cohorts ({fmt.count(n_e)} customers; "
        f"{'-' if worse else '+'}{fmt.points(r_r - r_e)}, {fmt.p_value(p)}).",
    ]
    if estimated is not None:
        parts.append(f"At the earlier rate each new cohort would bring about {fmt.money(estimated, cur)} more "
                     "in its second month.")
    actions = ([
        "Compare the acquisition channels and campaigns of the recent cohorts with earlier ones",
        "Strengthen onboarding in the first month: course recommendations, reminder e-mails, first-lesson nudges",
        "Offer a second-purchase incentive to customers 3-4 weeks after their first payment",
    ] if worse else [
        "Find what changed for the recent cohorts (channel mix, onboarding, offers) and keep it",
        "Scale the acquisition channels that brought the better-retaining cohorts",
    ])
    return Insight(
        id="cohort_retention_change", category="customer",
        title=(f"Newer cohorts retain {'worse' if worse else 'better'}: second-month retention "
               f"{fmt.percent(r_r)} vs {fmt.percent(r_e)}"),
        text=" ".join(parts),
        business_impact=ctx.impact_from_revenue(estimated) if worse else "low",
        confidence=stats.confidence_from_p(p),
        confidence_basis=f"two-proportion z-test of second-month retention, recent vs earlier cohorts ({fmt.p_value(p)})",
        recommended_actions=actions,
        estimated_revenue=estimated,
        evidence={"recent_cohorts": recent, "earlier_cohorts": earlier, "recent_retention": r_r,
                  "earlier_retention": r_e, "relative_change": change, "p_value": p,
                  "threshold_relative_change": o.cohort_min_relative_change, "threshold_p_value": o.cohort_p_value},
    )
