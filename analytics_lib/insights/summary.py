"""The executive summary: plain sentences built from the result's numbers and the insights.

Every sentence is built only from numbers that exist: a missing number (None) drops its clause,
or the whole sentence when the sentence is about it. ``c_level`` gives 3-6 sentences; ``vp_level``
adds unit economics, MRR movements and geography; ``director_level`` adds operations (authorisation,
failures, dunning, providers, fraud scoring, cohorts).
"""

from __future__ import annotations

from collections.abc import Callable

from analytics_lib.insights import text as fmt
from analytics_lib.insights.base import Insight, InsightError, ResultReader, number
from analytics_lib.metrics import ComprehensiveAnalytics

LEVELS = ("c_level", "vp_level", "director_level")
MAX_SENTENCES = {"c_level": 6, "vp_level": 9, "director_level": 13}


class _Numbers(ResultReader):
    """The result's finite numbers by section and key (None when missing); ``"headline"`` is the
    result's own summary."""

    def __init__(self, result: ComprehensiveAnalytics):
        self.result = result

    def get(self, section: str, key: str) -> float | None:
        return self.value(section, key)


def _change(value: float) -> str:
    return f"{'up' if value >= 0 else 'down'} {fmt.percent(abs(value))}"


def revenue(n: _Numbers, insights: list[Insight]) -> str | None:
    gross = n.get("headline", "gross_revenue")
    if gross is None:
        return None
    s = f"{fmt.sentence_start(fmt.during(n.period))} gross revenue was {n.money(gross)}"
    growth = n.get("headline", "revenue_growth_vs_previous")
    clauses = []
    if growth is not None:
        c = f"{_change(growth)} on {fmt.previous_name(n.period)}"
        t = n.trend("gross_revenue")
        if t is not None and t.significance == "low":
            c += " (within normal variation)"
        clauses.append(c)
    yoy = n.get("headline", "revenue_growth_vs_last_year")
    if yoy is not None:
        clauses.append(f"{_change(yoy)} on a year earlier")
    if clauses:
        s += ", " + " and ".join(clauses)
    net = n.get("headline", "net_revenue")
    if net is not None:
        s += f"; net revenue after refunds, chargebacks and fees was {n.money(net)}"
    return s + "."


def recurring(n: _Numbers, insights: list[Insight]) -> str | None:
    mrr = n.get("headline", "mrr")
    if not mrr:
        return None
    s = f"Monthly recurring revenue stood at {n.money(mrr)} at the end of the period"
    arr = n.get("headline", "arr")
    if arr is not None:
        s += f" ({n.money(arr)} a year)"
    net_new = n.get("recurring_revenue", "net_new_mrr")
    if net_new is not None:
        s += f", {'a net gain' if net_new >= 0 else 'a net loss'} of {n.money(abs(net_new))} over the period"
    return s + "."


def mrr_movements(n: _Numbers, insights: list[Insight]) -> str | None:
    new, churned = n.get("recurring_revenue", "new_mrr"), n.get("recurring_revenue", "churned_mrr")
    if new is None or churned is None or not (new or churned):
        return None
    gains = [f"new subscriptions added {n.money(new)} of MRR"]
    expansion = n.get("recurring_revenue", "expansion_mrr")
    if expansion:
        gains.append(f"upgrades {n.money(expansion)}")
    losses = [f"cancellations removed {n.money(churned)}"]
    contraction = n.get("recurring_revenue", "contraction_mrr")
    if contraction:
        losses.append(f"downgrades {n.money(contraction)}")
    s = (", ".join(gains) + ", while " + " and ".join(losses))
    quick = n.get("recurring_revenue", "quick_ratio")
    if quick is not None:
        s += f" (quick ratio {quick:.1f})"
    return fmt.sentence_start(s) + "."


def customers(n: _Numbers, insights: list[Insight]) -> str | None:
    total = n.get("headline", "customers")
    if total is None:
        return None
    s = f"{fmt.count(total)} customers paid"
    new = n.get("headline", "new_customers")
    if new is not None:
        s += f", {fmt.count(new)} of them for the first time"
    churn = n.get("headline", "customer_churn_rate")
    if churn is not None:
        s += f"; {fmt.percent(churn)} of subscribers cancelled"
    return s + "."


def unit_economics(n: _Numbers, insights: list[Insight]) -> str | None:
    ltv, cac = n.get("headline", "ltv"), n.get("headline", "cac")
    if ltv is None or cac is None:
        return None
    s = f"A subscriber's lifetime value is estimated at {n.money(ltv)} against an acquisition cost of {n.money(cac)}"
    ratio = n.get("headline", "ltv_to_cac")
    if ratio is not None:
        s += f" (LTV/CAC {ratio:.1f})"
    return s + "."


def geography(n: _Numbers, insights: list[Insight]) -> str | None:
    share = n.get("headline", "international_share")
    home = n.raw("geography", "home_country")
    if share is None or not home:
        return None
    s = f"{fmt.percent(share)} of revenue came from outside {fmt.country(str(home))}"
    countries = n.get("geography", "countries")
    if countries is not None:
        s += f", from buyers in {fmt.count(countries)} countries"
    return s + "."


def operations(n: _Numbers, insights: list[Insight]) -> str | None:
    rate = n.get("headline", "success_rate")
    if rate is None:
        return None
    s = f"{fmt.percent(rate)} of payment attempts succeeded"
    t = n.trend("success_rate")
    if t is not None and t.significance in ("high", "medium") and t.previous_value is not None and t.trend != "stable":
        s += f" ({'up' if t.trend == 'up' else 'down'} from {fmt.percent(t.previous_value)})"
    cost = n.get("headline", "processing_cost_ratio")
    if cost is not None:
        s += f", and provider fees took {fmt.percent(cost)} of gross revenue"
    return s + "."


def authorisation(n: _Numbers, insights: list[Insight]) -> str | None:
    auth = n.get("headline", "authorization_rate")
    if auth is None:
        return None
    s = f"Issuers approved {fmt.percent(auth)} of the attempts sent to them"
    t = n.result.sections.get("transactions")
    reasons = t.tables.get("failure_reasons") if t is not None else None
    if reasons is not None and len(reasons) and number(reasons.iloc[0].get("share_of_failures")) is not None:
        top = reasons.iloc[0]
        s += (f"; the most common failure was {str(top['failure_reason']).replace('_', ' ')} "
              f"({fmt.percent(float(top['share_of_failures']))} of failures)")
    return s + "."


def dunning(n: _Numbers, insights: list[Insight]) -> str | None:
    rate = n.get("transactions", "dunning_recovery_rate")
    failed = n.get("transactions", "failed_recurring_charges")
    if rate is None or not failed:
        return None
    return (f"Retries recovered {fmt.percent(rate)} of the {fmt.count(failed)} recurring charges that failed "
            "on the first attempt.")


def providers(n: _Numbers, insights: list[Insight]) -> str | None:
    best, best_rate = n.raw("performance", "best_success_provider"), n.get("performance", "best_success_rate")
    costly, cost = n.raw("performance", "costliest_provider"), n.get("performance", "costliest_fee_per_net_revenue")
    parts = []
    if best and best_rate is not None:
        parts.append(f"{fmt.provider(best)} had the highest success rate ({fmt.percent(best_rate)})")
    if costly and cost is not None:
        parts.append(f"{fmt.provider(costly)} cost the most, {fmt.percent(cost)} of its net revenue in fees")
    if not parts:
        return None
    s = "; ".join(parts)
    return fmt.sentence_start(s) + "."


def risks(n: _Numbers, insights: list[Insight]) -> str | None:
    risk = [i for i in insights if i.category == "risk"]
    cb = n.get("headline", "chargeback_rate")
    refund = n.get("headline", "refund_rate")
    facts = []
    if cb is not None:
        facts.append(f"chargebacks were {fmt.percent(cb)} of successful payments")
    if refund is not None:
        facts.append(f"refunds {fmt.percent(refund)}")
    s = ""
    if facts:
        s = fmt.sentence_start(fmt.join(facts))
    if risk:
        watch = fmt.join([f"\u201c{i.title}\u201d" for i in risk[:2]])
        label = "Risk to watch" if len(risk[:2]) == 1 else "Risks to watch"
        s = f"{s}. {label}: {watch}" if s else f"{label}: {watch}"
    return s + "." if s else None


def fraud(n: _Numbers, insights: list[Insight]) -> str | None:
    review, block = n.get("fraud", "review_share"), n.get("fraud", "block_share")
    if review is None:
        return None
    s = f"Fraud scoring flagged {fmt.percent(review)} of scored attempts for review or block"
    if block is not None:
        s += f" ({fmt.percent(block)} above the block threshold)"
    confirmed = n.get("fraud", "confirmed_fraud_alerts")
    if confirmed is not None:
        s += f"; {fmt.count(confirmed)} fraud alerts were confirmed"
    return s + "."


def cohorts(n: _Numbers, insights: list[Insight]) -> str | None:
    m1 = n.get("cohorts", "average_month_1_retention")
    if m1 is None:
        return None
    return f"On average {fmt.percent(m1)} of new customers paid again in their second month."


def opportunity(n: _Numbers, insights: list[Insight]) -> str | None:
    money = [i for i in insights if i.category != "risk" and i.estimated_revenue]
    if money:
        top = max(money, key=lambda i: i.estimated_revenue or 0.0)
        return (f"The largest opportunity found is \u201c{top.title}\u201d, worth about "
                f"{n.money(top.estimated_revenue or 0.0)} a month.")
    others = [i for i in insights if i.category != "risk"]
    if others:
        return f"The top finding is \u201c{others[0].title}\u201d."
    return None


def insight_overview(n: _Numbers, insights: list[Insight]) -> str | None:
    if not insights:
        return None
    counts: dict[str, int] = {}
    for i in insights:
        counts[i.category] = counts.get(i.category, 0) + 1
    names = {"revenue_opportunity": "revenue opportunit", "cost_optimization": "cost saving",
             "customer": "customer finding", "market": "market trend", "risk": "risk"}
    bits = []
    for cat, k in counts.items():
        word = names[cat]
        word = (word + ("ies" if k > 1 else "y")) if word.endswith("opportunit") else (word + ("s" if k > 1 else ""))
        bits.append(f"{k} {word}")
    return f"The insight rules found {fmt.join(bits)}."


SENTENCES: dict[str, list[Callable[[_Numbers, list[Insight]], str | None]]] = {
    "c_level": [revenue, recurring, customers, operations, risks, opportunity],
    "vp_level": [revenue, recurring, mrr_movements, customers, unit_economics, geography, operations, risks,
                 opportunity],
    "director_level": [revenue, recurring, mrr_movements, customers, unit_economics, geography, operations,
                       authorisation, dunning, providers, fraud, risks, cohorts, insight_overview, opportunity],
}


def executive_summary(result: ComprehensiveAnalytics, insights: list[Insight] | None = None,
                      level: str = "c_level") -> list[str]:
    """Plain sentences about the period, built from the numbers (and the ranked insights).

    Parameters
    ----------
    result : ComprehensiveAnalytics
    insights : list of Insight, optional
        Usually ``generate_insights(result, ...)``: the risks and the top opportunity come from it.
    level : {"c_level", "vp_level", "director_level"}
        Depth: about 6, 9 and 13 sentences at most.
    """
    if level not in LEVELS:
        raise InsightError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    n = _Numbers(result)
    out: list[str] = []
    for build in SENTENCES[level]:
        sentence = build(n, list(insights or []))
        if sentence:
            out.append(sentence)
    limit = MAX_SENTENCES[level]
    if len(out) > limit:  # keep the closing opportunity sentence
        out = out[: limit - 1] + out[-1:]
    return out
