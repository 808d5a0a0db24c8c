"""Cost optimisation: route volume to a cheaper provider that succeeds at least as often on the
same payment methods (and, with a session, the same buyer countries)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analytics_lib.insights import stats
from analytics_lib.insights import text as fmt
from analytics_lib.insights.base import Insight, RuleContext, rule
from analytics_lib.metrics import MissingRateError


def provider_cells(ctx: RuleContext) -> pd.DataFrame:
    """Per provider and cell (payment method x buyer country): attempts, successful attempts, their
    amount and the provider's fees on them. The result's tables have no provider x country split,
    and a provider that serves other countries is no like-for-like alternative, so this rule
    queries the session."""
    cells = ctx.query("provider_cells").copy()
    if len(cells) and cells["missing_fee_rates"].sum() > 0:
        raise MissingRateError(f"{int(cells['missing_fee_rates'].sum())} fee(s) in the period have no FX rate "
                               f"to {ctx.currency}: provider fee rates cannot be compared")
    cells["cell"] = cells["payment_method"].astype(str) + " / " + cells["country_code"].astype(str)
    return cells[["provider", "cell", "attempts", "successes", "gross", "fees"]]


def compare(a: pd.DataFrame, b: pd.DataFrame, ctx: RuleContext) -> dict[str, Any] | None:
    """Provider b on provider a's mix of the cells both serve: fee rates, success rates, saving."""
    o = ctx.options
    m = a.merge(b, on="cell", suffixes=("_a", "_b"))
    m = m[(m["attempts_a"] >= o.provider_min_cell_attempts) & (m["attempts_b"] >= o.provider_min_cell_attempts)
          & (m["gross_a"] > 0) & (m["gross_b"] > 0)]
    if m.empty:
        return None
    n_a, n_b = int(m["attempts_a"].sum()), int(m["attempts_b"].sum())
    if n_a < o.provider_min_attempts or n_b < o.provider_min_attempts:
        return None
    gross_a = float(m["gross_a"].sum())
    fee_a = m["fees_a"] / m["gross_a"]
    fee_b = m["fees_b"] / m["gross_b"]
    weight_money = m["gross_a"] / gross_a
    rate_a = float((weight_money * fee_a).sum())
    rate_b = float((weight_money * fee_b).sum())
    sr_a_cell = m["successes_a"] / m["attempts_a"]
    sr_b_cell = m["successes_b"] / m["attempts_b"]
    weight = m["attempts_a"] / n_a
    sr_a = float((weight * sr_a_cell).sum())
    sr_b = float((weight * sr_b_cell).sum())
    var = float((weight**2 * (sr_a_cell * (1 - sr_a_cell) / m["attempts_a"]
                              + sr_b_cell * (1 - sr_b_cell) / m["attempts_b"])).sum())
    se = math.sqrt(max(var, 0.0))
    saving = o.provider_shift_share * gross_a * (rate_a - rate_b) * ctx.monthly_factor
    average_value = gross_a / max(float(m["successes_a"].sum()), 1.0)
    recovered = o.provider_shift_share * n_a * max(sr_b - sr_a, 0.0) * average_value * ctx.monthly_factor
    return {
        "cells": sorted(m["cell"].astype(str)), "attempts_a": n_a, "attempts_b": n_b, "gross_a": gross_a,
        "fee_rate_a": rate_a, "fee_rate_b": rate_b, "fee_gap": rate_a - rate_b,
        "success_rate_a": sr_a, "success_rate_b": sr_b, "success_standard_error": se,
        "monthly_saving": saving, "monthly_recovered_payments": recovered,
        "confidence": stats.normal_probability_above(sr_b - sr_a, se, -o.provider_success_margin),
    }


@rule("provider_cost", "cost_optimization",
      "fees and success rates of providers on the same methods (and countries): move volume to a "
      "cheaper provider that succeeds at least as often",
      needs=("session",))
def provider_cost(ctx: RuleContext) -> Insight | None:
    o = ctx.options
    cells = provider_cells(ctx)
    basis = "payment method x country"
    if cells.empty:
        return None
    providers = sorted(cells["provider"].dropna().unique())
    by = {p: cells[cells["provider"] == p].groupby("cell", as_index=False)[
        ["attempts", "successes", "gross", "fees"]].sum() for p in providers}
    monthly_gross = ctx.monthly_gross() or 0.0
    candidates = []
    for a in providers:
        for b in providers:
            if a == b:
                continue
            c = compare(by[a], by[b], ctx)
            if c is None or c["fee_gap"] < o.provider_min_fee_gap or c["success_rate_b"] < c["success_rate_a"]:
                continue
            if c["monthly_saving"] < o.provider_min_saving_share * monthly_gross:
                continue
            candidates.append({"from": a, "to": b, **c})
    if not candidates:
        return None
    candidates.sort(key=lambda c: c["monthly_saving"], reverse=True)
    best = candidates[0]
    cur = ctx.currency
    a, b = fmt.provider(best["from"]), fmt.provider(best["to"])
    cells_text = fmt.join([_cell(c) for c in best["cells"][:4]]) + (f" and {len(best['cells']) - 4} more" if len(best["cells"]) > 4 else "")
    parts = [
        f"On the {basis} cells both serve ({cells_text}), {a} charged {fmt.percent(best['fee_rate_a'])} of the "
        f"gross it processed in fees against {fmt.percent(best['fee_rate_b'])} at {b} on the same mix, while "
        f"{b} succeeded on {fmt.percent(best['success_rate_b'])} of attempts against {fmt.percent(best['success_rate_a'])} "
        f"for {a} ({fmt.count(best['attempts_a'])} and {fmt.count(best['attempts_b'])} attempts).",
        f"Routing {fmt.percent(o.provider_shift_share, 0)} of {a}'s {fmt.money(best['gross_a'] * ctx.monthly_factor, cur)} "
        f"a month there to {b} would save about {fmt.money(best['monthly_saving'], cur)} a month in fees.",
    ]
    if best["monthly_recovered_payments"] >= 1:
        parts.append(f"At {b}'s success rate it would also recover about "
                     f"{fmt.money(best['monthly_recovered_payments'], cur)} a month of payments that now fail "
                     "(not included in the estimate).")
    return Insight(
        id="provider_cost", category="cost_optimization",
        title=f"Route volume from {a} to {b}: about {fmt.money(best['monthly_saving'], cur)} a month in fees",
        text=" ".join(parts),
        business_impact=ctx.impact_from_revenue(best["monthly_saving"]),
        confidence=stats.bounded(best["confidence"]),
        confidence_basis=f"normal approximation: probability that {b}'s success rate on {a}'s mix is no more "
                         f"than {fmt.points(o.provider_success_margin)} below {a}'s",
        recommended_actions=[
            f"Route {fmt.percent(o.provider_shift_share, 0)} of {a}'s traffic in the shared methods and countries to {b}, "
            "watching success rates for two weeks",
            f"Use the gap to renegotiate {a}'s pricing before moving volume",
            "Keep both providers live for failover; route by cost and success rate per method and country",
        ],
        estimated_revenue=best["monthly_saving"],
        evidence={**best, "cells_basis": basis, "shift_share": o.provider_shift_share,
                  "threshold_fee_gap": o.provider_min_fee_gap,
                  "other_candidates": [{k: c[k] for k in ("from", "to", "monthly_saving", "fee_gap")}
                                       for c in candidates[1:4]]},
    )


def _cell(cell: str) -> str:
    method, _, country = cell.partition(" / ")
    return f"{fmt.method(method).lower() if method != 'paypal' else 'PayPal'} in {fmt.country(country)}"
