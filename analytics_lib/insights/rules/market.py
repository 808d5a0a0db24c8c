"""Market insights: countries and payment methods whose share moved against the previous period
(two-proportion tests with a Bonferroni correction over the items tested)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from analytics_lib.insights import stats
from analytics_lib.insights import text as fmt
from analytics_lib.insights.base import Insight, RuleContext, rule


def share_shifts(current: pd.DataFrame, previous: pd.DataFrame, key: str, count: str,
                 volume: str | None, ctx: RuleContext) -> dict[str, Any] | None:
    """Items whose share of ``count`` moved significantly; None when the totals are too small."""
    o = ctx.options
    n_c, n_p = int(current[count].sum()) if len(current) else 0, int(previous[count].sum()) if len(previous) else 0
    if n_c < o.share_min_total or n_p < o.share_min_total:
        return None
    cols = [key, count] + ([volume] if volume else [])
    m = current[cols].merge(previous[cols], on=key, how="outer", suffixes=("_c", "_p")).fillna(0)
    m = m[(m[f"{count}_c"] >= o.share_min_item) | (m[f"{count}_p"] >= o.share_min_item)]
    tested = len(m)
    if tested == 0:
        return None
    alpha = o.share_family_alpha / tested
    v_c = float(current[volume].sum()) if volume else 0.0
    v_p = float(previous[volume].sum()) if volume else 0.0
    movers = []
    for r in m.itertuples(index=False):
        r = r._asdict()
        k_c, k_p = int(r[f"{count}_c"]), int(r[f"{count}_p"])
        s_c, s_p = k_c / n_c, k_p / n_p
        delta = s_c - s_p
        relative = float("inf") if s_p == 0 else delta / s_p
        p = stats.two_proportion_p(k_c, n_c, k_p, n_p)
        if (abs(delta) < o.share_min_change_points or abs(relative) < o.share_min_relative_change
                or p is None or p >= alpha):
            continue
        item: dict[str, Any] = {"item": str(r[key]), "current": k_c, "previous": k_p, "share": s_c, "previous_share": s_p,
                "change_points": delta, "relative_change": None if s_p == 0 else relative, "p_value": p,
                "adjusted_p_value": min(p * tested, 1.0)}
        if volume and v_c and v_p:
            item["volume"] = float(r[f"{volume}_c"])
            item["volume_share"] = float(r[f"{volume}_c"]) / v_c
            item["previous_volume_share"] = float(r[f"{volume}_p"]) / v_p
        movers.append(item)
    if not movers:
        return None
    movers.sort(key=lambda x: abs(x["change_points"]), reverse=True)
    return {"movers": movers, "tested": tested, "alpha_per_item": alpha, "total": n_c, "previous_total": n_p,
            "volume": v_c}


def _describe(movers: list[dict[str, Any]], name: Callable[[str], str], what: str) -> str:
    out = []
    for x in movers:
        verb = "rose" if x["change_points"] > 0 else "fell"
        out.append(f"{name(x['item'])}'s share of {what} {verb} from {fmt.percent(x['previous_share'])} to "
                   f"{fmt.percent(x['share'])} ({'+' if x['change_points'] > 0 else '-'}{fmt.points(x['change_points'])}, "
                   f"{fmt.p_value(x['p_value'])})")
    return "; ".join(out) + "."


@rule("country_share_shift", "market",
      "countries whose share of successful payments moved against the previous period", needs=("session",), previous_period=True)
def country_share_shift(ctx: RuleContext) -> Insight | None:
    current = ctx.table("geography", "countries")
    if current.empty:
        return None
    previous = ctx.previous("geography", "countries")
    s = share_shifts(current, previous, "country_code", "successful", "volume", ctx)
    if s is None:
        return None
    movers = s["movers"]
    up = [x for x in movers if x["change_points"] > 0][:3]
    down = [x for x in movers if x["change_points"] < 0][:3]
    cur = ctx.currency
    prev_name = fmt.previous_name(ctx.period)
    parts = [f"Against {prev_name}: " + _describe(up + down, fmt.country, "successful payments")]
    lost = sum(max(x.get("previous_volume_share", 0.0) - x.get("volume_share", 0.0), 0.0) for x in down) * s["volume"]
    estimated = lost * ctx.monthly_factor if down and lost > 0 else None
    if estimated is not None:
        parts.append(f"Had the shrinking markets kept their share of revenue they would have brought about "
                     f"{fmt.money(estimated, cur)} more a month.")
    title_bits = []
    if up:
        title_bits.append(f"{fmt.join([fmt.country(x['item']) for x in up])} growing")
    if down:
        title_bits.append(f"{fmt.join([fmt.country(x['item']) for x in down])} shrinking")
    actions = []
    if up:
        actions.append(f"Back the growth in {fmt.join([fmt.country(x['item']) for x in up])}: local payment "
                       "methods, prices in local currency, marketing budget")
    if down:
        actions.append(f"Investigate {fmt.join([fmt.country(x['item']) for x in down])}: success rates, prices, "
                       "competition and campaign changes")
    actions.append("Review the country mix in next month's report to confirm the trend")
    min_adj = min(x["adjusted_p_value"] for x in up + down)
    return Insight(
        id="country_share_shift", category="market",
        title="Country mix shifting: " + "; ".join(title_bits),
        text=" ".join(parts),
        business_impact=ctx.impact_from_revenue(estimated, default="medium"),
        confidence=stats.confidence_from_p(min_adj),
        confidence_basis=f"two-proportion z-tests of each country's share, Bonferroni-adjusted over "
                         f"{s['tested']} countries (smallest adjusted p = {min_adj:.3g})",
        recommended_actions=actions,
        estimated_revenue=estimated,
        evidence={**s, "movers": up + down, "threshold_change_points": ctx.options.share_min_change_points,
                  "threshold_relative_change": ctx.options.share_min_relative_change},
    )


@rule("payment_method_share_shift", "market",
      "payment methods whose share of attempts moved against the previous period", needs=("session",), previous_period=True)
def payment_method_share_shift(ctx: RuleContext) -> Insight | None:
    current = ctx.table("transactions", "by_payment_method")
    if current.empty:
        return None
    previous = ctx.previous("transactions", "by_payment_method")
    s = share_shifts(current, previous, "payment_method", "transactions", "volume", ctx)
    if s is None:
        return None
    movers = s["movers"][:4]
    name = fmt.method
    prev_name = fmt.previous_name(ctx.period)
    big = max(abs(x["change_points"]) for x in movers)
    rates = ctx.table("transactions", "by_payment_method")
    sr = dict(zip(rates["payment_method"], rates["success_rate"], strict=False)) if "success_rate" in rates else {}
    overall = ctx.value("transactions", "success_rate")
    parts = [f"Against {prev_name}: " + _describe(movers, name, "payment attempts")]
    weak = [x for x in movers if x["change_points"] > 0 and overall is not None
            and sr.get(x["item"]) is not None and sr[x["item"]] < overall]
    if weak and overall is not None:
        parts.append(f"{fmt.join([name(x['item']) for x in weak])} succeed{'s' if len(weak) == 1 else ''} less often "
                     f"than average ({fmt.join([fmt.percent(sr[x['item']]) for x in weak])} vs {fmt.percent(overall)}), "
                     "so the shift pulls the overall success rate down.")
    up = [name(x["item"]) for x in movers if x["change_points"] > 0]
    min_adj = min(x["adjusted_p_value"] for x in movers)
    return Insight(
        id="payment_method_share_shift", category="market",
        title="Payment-method mix shifting: " + fmt.join(
            [f"{name(x['item'])} {'up' if x['change_points'] > 0 else 'down'}" for x in movers]),
        text=" ".join(parts),
        business_impact="medium" if big >= 0.05 or weak else "low",
        confidence=stats.confidence_from_p(min_adj),
        confidence_basis=f"two-proportion z-tests of each method's share of attempts, Bonferroni-adjusted over "
                         f"{s['tested']} methods (smallest adjusted p = {min_adj:.3g})",
        recommended_actions=[
            *([f"Make {fmt.join(up)} prominent in checkout where it is growing"] if up else []),
            *([f"Work with the providers on {fmt.join([name(x['item']) for x in weak])} success rates"] if weak else []),
            "Check provider routing and fees for the methods that are gaining volume",
        ],
        estimated_revenue=None,
        evidence={**s, "movers": movers, "threshold_change_points": ctx.options.share_min_change_points,
                  "threshold_relative_change": ctx.options.share_min_relative_change},
    )
