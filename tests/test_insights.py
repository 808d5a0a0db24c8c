"""Insight rules, ranking and the executive summary.

Three kinds of tests:

* rules on hand-built metric results (``MetricSection``/``ComprehensiveAnalytics`` objects), with
  every expected number worked out by hand in the comments;
* rules that query a session, on small hand-built warehouses (one story per warehouse);
* data that must produce no insight at all: a quiet, stationary warehouse, the tiny golden-test
  warehouse, and guard values just below each threshold.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from scipy import stats as sps

from analytics_lib.insights import (
    RULES,
    Insight,
    InsightError,
    InsightOptions,
    InsightOptionsError,
    catalogue,
    executive_summary,
    generate_insights,
    rank,
)
from analytics_lib.insights import text as fmt
from analytics_lib.metrics import (
    ComprehensiveAnalytics,
    Filters,
    MetricSection,
    MetricSession,
    Period,
)
from analytics_lib.metrics.trends import Trend
from analytics_lib.warehouse import Warehouse
from tests import metric_fixtures
from tests.metric_fixtures import event, tx

MAY = Period.month(2024, 5, "UTC")
#: May has 31 days: per-month figures are period totals x 30.4375 / 31
MAY_FACTOR = 30.4375 / 31

SECTIONS = ("transactions", "revenue", "recurring_revenue", "customers", "geography", "performance", "fraud",
            "cohorts")


def make_result(sections: dict[str, MetricSection] | None = None, period: Period = MAY,
                summary: dict | None = None, trends: list[Trend] | None = None) -> ComprehensiveAnalytics:
    full = {name: MetricSection(name) for name in SECTIONS}
    full.update(sections or {})
    return ComprehensiveAnalytics(period, Filters.of(None), "USD", datetime(2024, 6, 1, tzinfo=UTC), {},
                                  summary or {}, full, trends or [])


def only(insights: list[Insight], rule_id: str) -> Insight:
    found = [i for i in insights if i.id == rule_id]
    assert len(found) == 1, [i.id for i in insights]
    return found[0]


def run(result: ComprehensiveAnalytics, rule_id: str, **kwargs) -> list[Insight]:
    options = kwargs.pop("options", {})
    return generate_insights(result, options={**options, "rules": (rule_id,)}, **kwargs)


def assert_well_formed(insight: Insight) -> None:
    d = insight.to_dict()
    json.dumps(d, allow_nan=False)
    assert insight.title and insight.text and insight.recommended_actions
    assert insight.confidence_basis
    assert 0 <= insight.confidence <= 0.99
    for bad in ("nan", "None", "inf"):
        assert bad not in insight.text.split() and bad not in insight.title.split()
    if insight.estimated_revenue is not None:
        assert math.isfinite(insight.estimated_revenue) and insight.estimated_revenue > 0


# -- revenue opportunities: high-value segments ---------------------------------------------------


def rfm_result(a_customers: int = 40, b_customers: int = 160, a_value: float = 300.0,
               b_value: float = 50.0) -> ComprehensiveAnalytics:
    segments = pd.DataFrame({
        "segment": ["Champions", "Hibernating"],
        "customers": [a_customers, b_customers],
        "share": [a_customers / (a_customers + b_customers), b_customers / (a_customers + b_customers)],
        "revenue": [a_value * a_customers, b_value * b_customers],
    })
    return make_result({"customers": MetricSection("customers", {}, {"rfm_segments": segments})})


def test_high_value_rfm_segment_fires_with_hand_numbers():
    # 40 Champions spent 12,000 (300 each); 160 others 8,000 (50 each): average 20,000 / 200 = 100,
    # so Champions are 3.0x the average (> 1.5x). No session: no period revenue, no estimate.
    insight = only(run(rfm_result(), "high_value_rfm_segment"), "high_value_rfm_segment")
    assert insight.category == "revenue_opportunity"
    assert insight.evidence["multiple"] == pytest.approx(3.0)
    assert insight.evidence["average_value_per_customer"] == pytest.approx(100.0)
    assert "$300.00" in insight.text and "3.0x" in insight.text and "$100.00" in insight.text
    assert insight.estimated_revenue is None and insight.business_impact == "medium"
    assert insight.confidence == pytest.approx(40 / 90)  # n / (n + 50)
    assert_well_formed(insight)


@pytest.mark.parametrize("kwargs", [
    {"a_customers": 40, "b_customers": 159},  # 199 customers behind the average (< 200)
    {"a_customers": 29, "b_customers": 171},  # a segment of 29 (< 30)
    # exactly 1.5x is not "more than 1.5x": 40 x 120 + 160 x 70 = 16,000, average 80, 120 / 80 = 1.5
    {"a_customers": 40, "b_customers": 160, "a_value": 120.0, "b_value": 70.0},
])
def test_high_value_rfm_segment_guards(kwargs):
    assert run(rfm_result(**kwargs), "high_value_rfm_segment") == []


def country_result(ca_volume: float = 6_400.0, ca_customers: int = 40) -> ComprehensiveAnalytics:
    countries = pd.DataFrame({
        "country_code": ["TR", "CA"], "country_name": ["Türkiye", "Canada"],
        "successful": [900, 60], "volume": [13_600.0, ca_volume], "customers": [160, ca_customers],
    })
    revenue = MetricSection("revenue", {"gross_revenue": 20_000.0, "revenue_per_customer": 100.0,
                                        "paying_customers": 200})
    return make_result({"geography": MetricSection("geography", {}, {"countries": countries}),
                        "revenue": revenue})


def test_high_value_country_fires_with_hand_numbers():
    # Canada: 6,400 / 40 = 160 per customer = 1.6x the 100 average. Estimate: 20% of Canada's
    # 6,400 per month = 1,280 x 30.4375/31 = 1,256.77; against 20,000 x 30.4375/31 of monthly
    # gross that is 6.4% (>= 2%): high impact.
    insight = only(run(country_result(), "high_value_country"), "high_value_country")
    assert insight.evidence["multiple"] == pytest.approx(1.6)
    assert insight.estimated_revenue == pytest.approx(1_280 * MAY_FACTOR)
    assert insight.business_impact == "high"
    assert "Canada" in insight.text and "$160.00" in insight.text and "1.60x" in insight.text
    assert_well_formed(insight)


def test_high_value_country_guards():
    assert run(country_result(ca_volume=6_000.0), "high_value_country") == []  # exactly 1.5x
    assert run(country_result(ca_customers=29, ca_volume=29 * 200.0), "high_value_country") == []


# -- customer: churn-risk pockets, churn rate, cohorts ----------------------------------------------


def churn_output(n_pocket: int = 60, n_rest: int = 240, p_pocket: float = 0.5, p_rest: float = 0.1) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n_pocket + n_rest)],
        "probability": [p_pocket] * n_pocket + [p_rest] * n_rest,
        "mrr": 10.0,
        "plan": ["plan_x"] * n_pocket + ["plan_y"] * n_rest,
        "country_code": "TR",
    })


def test_churn_risk_pockets_from_model_output():
    # mean = (60 x 0.5 + 240 x 0.1) / 300 = 0.18; plan_x: 0.5 / 0.18 = 2.78x. Expected MRR loss in
    # the pocket = 60 x 0.5 x 10 = 300; a campaign keeping a quarter protects 75 a month.
    # (The country column is all TR: one group at lift 1, no pocket; plan_x in TR is the same 60
    # subscribers and is not listed twice.)
    result = make_result()
    insights = run(result, "churn_risk_pockets", models={"churn": churn_output()})
    insight = only(insights, "churn_risk_pockets")
    assert insight.category == "customer"
    pocket = insight.evidence["pockets"][0]
    assert (pocket["segment"], pocket["subscribers"]) == ({"plan": "plan_x"}, 60)
    assert pocket["lift"] == pytest.approx(0.5 / 0.18)
    assert len(insight.evidence["pockets"]) == 1
    assert insight.evidence["expected_mrr_loss"] == pytest.approx(300.0)
    assert insight.estimated_revenue == pytest.approx(75.0)
    assert "50.0%" in insight.text and "18.0%" in insight.text
    assert_well_formed(insight)


def test_churn_risk_pockets_accepts_predictions():
    from analytics_lib.models import Prediction

    frame = churn_output()
    predictions = [Prediction(entity_id=r.customer_id, probability=r.probability, risk_level="low", confidence=0.5,
                              details={"mrr": 10.0}) for r in frame.itertuples()]
    # predictions carry no segment columns and there is no session to look them up: no pockets
    assert run(make_result(), "churn_risk_pockets", models={"churn": predictions}) == []


def test_churn_risk_pockets_guards_and_errors():
    result = make_result()
    assert run(result, "churn_risk_pockets") == []  # no model output: skipped
    assert run(result, "churn_risk_pockets", models={"churn": churn_output(n_rest=139)}) == []  # 199 scored
    flat = churn_output(p_pocket=0.1)
    assert run(result, "churn_risk_pockets", models={"churn": flat}) == []  # nobody stands out
    with pytest.raises(InsightError, match="probability"):
        run(result, "churn_risk_pockets", models={"churn": pd.DataFrame({"customer_id": ["a"]})})
    with pytest.raises(InsightError, match="0..1"):
        run(result, "churn_risk_pockets", models={"churn": churn_output().assign(probability=1.5)})


def movements_result(churned_last: int = 80) -> ComprehensiveAnalytics:
    moves = pd.DataFrame({
        "label": ["2024-04", "2024-05"],
        "mrr_start": [10_000.0, 10_000.0], "churned_mrr": [500.0, churned_last * 10.0],
        "contraction_mrr": [0.0, 0.0], "subscribers_start": [1000, 1000],
        "churned_customers": [50, churned_last],
    })
    period = Period(date(2024, 4, 1), date(2024, 6, 1), "custom", "UTC")
    recurring = MetricSection("recurring_revenue", {"customer_churn_rate": 0.065, "subscribers_start": 1000,
                                                    "arpa": 10.0}, {"movements": moves})
    return make_result({"recurring_revenue": recurring}, period=period)


def test_churn_rate_rise_from_monthly_movements():
    # May: 80 of 1,000 churned (8%) vs April's 50 of 1,000 (5%): +60%. Two-proportion z-test:
    # pooled 0.065, se = sqrt(0.065 x 0.935 x 2/1000) = 0.011026, z = 2.721, p = 0.0065.
    # Estimate: (0.08 - 0.05) x 10,000 of MRR at the start = 300 a month.
    insight = only(run(movements_result(), "churn_rate_rise"), "churn_rate_rise")
    assert insight.evidence["current_rate"] == pytest.approx(0.08)
    assert insight.evidence["previous_rate"] == pytest.approx(0.05)
    assert insight.evidence["p_value"] == pytest.approx(0.0065, abs=2e-4)
    assert insight.estimated_revenue == pytest.approx(300.0)
    assert "8.0%" in insight.text and "5.0%" in insight.text
    assert_well_formed(insight)


def test_churn_rate_rise_guards():
    assert run(movements_result(churned_last=59), "churn_rate_rise") == []  # +18% (< 20%)
    assert run(make_result(), "churn_rate_rise") == []  # no movements, no session


def cohort_result(recent_active: int = 50, recent_size: int = 200, period: Period | None = None) -> ComprehensiveAnalytics:
    rows = []
    for i, month in enumerate(["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"]):
        recent = i >= 3
        size = recent_size if recent else 200
        active = recent_active if recent else 80
        rows.append((month, size, 0, size, 1.0, size * 50.0, 1.0))
        rows.append((month, size, 1, active, active / size, active * 20.0, None))
    rows.append(("2024-07", 300, 0, 300, 1.0, 300 * 50.0, 1.0))  # July: its second month has not started
    long = pd.DataFrame(rows, columns=["cohort_month", "cohort_size", "months_since", "active_customers",
                                       "customer_retention", "revenue", "revenue_retention"])
    return make_result({"cohorts": MetricSection("cohorts", {"cohorts": 7}, {"long": long})},
                       period=period or Period.month(2024, 7, "UTC"))


def test_cohort_retention_decline_with_hand_numbers():
    # Recent cohorts (Apr-Jun, second month complete by 1 Aug): 150 of 600 = 25%; earlier (Jan-Mar):
    # 240 of 600 = 40%. Lost per cohort: (0.40 - 0.25) x 200 = 30 customers; a retained customer paid
    # 20 in the second month: 600 a month.
    insight = only(run(cohort_result(), "cohort_retention_change"), "cohort_retention_change")
    assert insight.evidence["recent_retention"] == pytest.approx(0.25)
    assert insight.evidence["earlier_retention"] == pytest.approx(0.40)
    assert [c["cohort"] for c in insight.evidence["recent_cohorts"]] == ["2024-04", "2024-05", "2024-06"]
    assert insight.estimated_revenue == pytest.approx(600.0)
    assert "worse" in insight.title and "25.0%" in insight.text and "40.0%" in insight.text
    assert_well_formed(insight)


def test_cohort_retention_improvement_and_guards():
    better = only(run(cohort_result(recent_active=110), "cohort_retention_change"), "cohort_retention_change")
    assert "better" in better.title and better.estimated_revenue is None and better.business_impact == "low"
    assert run(cohort_result(recent_active=76), "cohort_retention_change") == []  # 38% vs 40%: -5%
    assert run(cohort_result(recent_active=12, recent_size=40), "cohort_retention_change") == []  # 120 (< 150)
    # a June period: June's cohort has no complete second month, leaving 5 cohorts (< 3 + 3)
    assert run(cohort_result(period=Period.month(2024, 6, "UTC")), "cohort_retention_change") == []


# -- risk: chargebacks from the result (no session) ----------------------------------------------------


def chargeback_result(disputes: int = 8, successful: int = 1000) -> ComprehensiveAnalytics:
    by_provider = pd.DataFrame({"value": ["stripe", "adyen"], "successful": [successful, 1000],
                                "disputes": [disputes, 4], "fraud_disputes": [2, 1],
                                "chargeback_rate": [disputes / successful, 0.004]})
    return make_result({"fraud": MetricSection("fraud", {}, {"chargebacks_by_provider": by_provider})})


def test_chargeback_threshold_from_result_tables():
    # Stripe: 8 disputes on 1,000 payments = 0.80%, above 75% of Visa's 0.9% (0.675%), below 0.9%.
    # Adyen: 4 disputes (< 5): not judged. 8 disputes a month are far from the floor of 100: medium.
    insight = only(run(chargeback_result(), "chargeback_threshold"), "chargeback_threshold")
    assert "approaching" in insight.title and "Stripe" in insight.title
    assert "0.80%" in insight.text and "0.90%" in insight.text
    assert insight.business_impact == "medium" and insight.estimated_revenue is None
    assert insight.confidence == pytest.approx(sps.beta.sf(0.00675, 8.5, 992.5))
    assert [f["provider"] for f in insight.evidence["flagged"]] == ["stripe"]
    assert_well_formed(insight)


def test_chargeback_threshold_guards():
    assert run(chargeback_result(disputes=6), "chargeback_threshold") == []  # 0.60% (< 0.675%)
    assert run(chargeback_result(disputes=8, successful=199), "chargeback_threshold") == []  # 199 payments
    # a stricter warning fraction puts 0.6% in range: the fraction is an option
    assert run(chargeback_result(disputes=6), "chargeback_threshold",
               options={"chargeback_warning_fraction": 0.6})


# -- a quiet result: nothing --------------------------------------------------------------------------


def test_quiet_result_produces_no_insight():
    segments = pd.DataFrame({"segment": ["Champions", "Loyal", "Lost"], "customers": [300, 300, 400],
                             "revenue": [36_000.0, 30_000.0, 34_000.0]})  # 120 / 100 / 85 vs 100
    countries = pd.DataFrame({"country_code": ["TR", "DE"], "successful": [600, 400],
                              "volume": [60_000.0, 44_000.0], "customers": [500, 400]})  # 120 / 110 vs 104
    chargebacks = pd.DataFrame({"value": ["stripe"], "successful": [2000], "disputes": [6]})  # 0.3%
    sections = {
        "customers": MetricSection("customers", {}, {"rfm_segments": segments}),
        "geography": MetricSection("geography", {}, {"countries": countries}),
        "revenue": MetricSection("revenue", {"gross_revenue": 104_000.0, "revenue_per_customer": 104.0,
                                             "paying_customers": 1000}),
        "fraud": MetricSection("fraud", {}, {"chargebacks_by_provider": chargebacks}),
    }
    result = make_result(sections)
    assert generate_insights(result, models={"churn": churn_output(p_pocket=0.1)}) == []


# -- ranking, options, the record ------------------------------------------------------------------


def insight(id_, impact, revenue, confidence=0.5, category="market") -> Insight:
    return Insight(id=id_, category=category, title=id_, text=id_, business_impact=impact, confidence=confidence,
                   recommended_actions=["act"], estimated_revenue=revenue, evidence={}, confidence_basis="test")


def test_rank_orders_by_impact_then_revenue_then_confidence():
    ranked = rank([insight("a", "low", 10_000), insight("b", "high", None, 0.9), insight("c", "high", 500),
                   insight("d", "medium", 50), insight("e", "high", None, 0.5)])
    assert [i.id for i in ranked] == ["c", "b", "e", "d", "a"]


def test_insight_record_validates_and_serialises():
    with pytest.raises(InsightError, match="category"):
        insight("x", "high", None, category="other")
    with pytest.raises(InsightError, match="business_impact"):
        insight("x", "huge", None)
    with pytest.raises(InsightError, match="confidence"):
        insight("x", "high", None, confidence=1.5)
    import numpy as np

    record = insight("x", "high", 12.5)
    record.evidence = {"n": np.int64(3), "rate": np.float64("nan"), "when": [np.float32(0.5)]}
    assert record.to_dict()["evidence"] == {"n": 3, "rate": None, "when": [0.5]}


def test_options_and_rule_selection():
    with pytest.raises(InsightOptionsError, match="unknown insight option"):
        generate_insights(make_result(), options={"visa_threshold": 0.01})
    with pytest.raises(InsightOptionsError, match="must not be negative"):
        InsightOptions(high_value_ltv_multiple=-1)
    with pytest.raises(InsightError, match="unknown rule"):
        generate_insights(make_result(), options={"rules": ["no_such_rule"]})
    # a stricter multiple turns the 3.0x Champions off; the option is read, not a hidden constant
    assert run(rfm_result(), "high_value_rfm_segment", options={"high_value_ltv_multiple": 3.5}) == []
    ids = [r["id"] for r in catalogue()]
    assert set(ids) == set(RULES) and len(ids) == 11
    assert {r["category"] for r in catalogue()} == {"revenue_opportunity", "cost_optimization", "customer",
                                                    "market", "risk"}


def test_session_must_read_the_results_snapshot(warehouse):
    metric_fixtures.build(warehouse)
    with MetricSession.open(warehouse) as session:
        result = make_result()  # versions {} differ from the session's
        with pytest.raises(InsightError, match="versions"):
            generate_insights(result, session=session)


# -- executive summary -------------------------------------------------------------------------------


def summary_result(**overrides) -> ComprehensiveAnalytics:
    headline = {
        "gross_revenue": 169_232.75, "net_revenue": 155_877.77, "revenue_growth_vs_previous": -0.0226,
        "revenue_growth_vs_last_year": 1.4753, "mrr": 64_011.5, "arr": 768_138.0, "transactions": 5967,
        "success_rate": 0.8731, "authorization_rate": 0.9003, "customers": 4653, "new_customers": 1176,
        "refund_rate": 0.0228, "chargeback_rate": 0.0056, "processing_cost_ratio": 0.0491,
        "international_share": 0.7249, "ltv": 286.95, "cac": 11.19, "ltv_to_cac": 25.64,
        "customer_churn_rate": 0.0545,
    }
    headline.update(overrides)
    sections = {
        "recurring_revenue": MetricSection("recurring_revenue", {"net_new_mrr": 5874.1, "new_mrr": 7308.95,
                                                                 "churned_mrr": 2930.37, "quick_ratio": 2.81}),
        "geography": MetricSection("geography", {"home_country": "TR", "countries": 13}),
        "fraud": MetricSection("fraud", {"review_share": 0.0456, "block_share": 0.0317, "confirmed_fraud_alerts": 266}),
        "cohorts": MetricSection("cohorts", {"average_month_1_retention": 0.306}),
        "performance": MetricSection("performance", {"best_success_provider": "paypal", "best_success_rate": 0.94}),
    }
    trend = Trend("gross_revenue", 169_232.75, 173_143.97, -3911.2, -0.0226, "down", "low", 0.135, "welch_t_daily")
    return make_result(sections, period=Period.month(2026, 10, "Europe/Istanbul"), summary=headline, trends=[trend])


def test_executive_summary_sentences_from_the_numbers():
    risk = insight("chargeback_threshold", "high", None, category="risk")
    risk.title = "Chargebacks approaching the Visa threshold at Stripe: 0.80% vs 0.90%"
    opportunity = insight("high_value_rfm_segment", "high", 17_804.0, category="revenue_opportunity")
    opportunity.title = "High-value segment: Champions are worth 1.9x the average customer"
    result = summary_result()
    c = executive_summary(result, [opportunity, risk], level="c_level")
    assert 3 <= len(c) <= 6
    assert c[0] == ("In October 2026 gross revenue was $169,233, down 2.3% on September 2026 (within normal "
                    "variation) and up 147.5% on a year earlier; net revenue after refunds, chargebacks and fees "
                    "was $155,878.")
    assert "$64,012" in c[1] and "$768,138" in c[1] and "$5,874" in c[1]
    assert c[2] == "4,653 customers paid, 1,176 of them for the first time; 5.5% of subscribers cancelled."
    assert "87.3%" in c[3] and "4.9%" in c[3]
    assert any("Visa threshold" in s for s in c)
    assert c[-1].startswith("The largest opportunity found") and "$17,804" in c[-1]
    vp = executive_summary(result, [opportunity, risk], level="vp_level")
    director = executive_summary(result, [opportunity, risk], level="director_level")
    assert len(c) < len(vp) <= 9 and len(vp) < len(director) <= 13
    assert any("LTV/CAC 25.6" in s for s in vp)
    assert any("72.5% of revenue came from outside Türkiye" in s for s in vp)
    assert any("PayPal had the highest success rate" in s for s in director)
    with pytest.raises(InsightError, match="level"):
        executive_summary(result, [], level="board")


def test_executive_summary_never_speaks_of_a_missing_number():
    result = summary_result(revenue_growth_vs_previous=None, revenue_growth_vs_last_year=None, mrr=None,
                            arr=None, customer_churn_rate=None, processing_cost_ratio=None, ltv=None,
                            chargeback_rate=None, refund_rate=None)
    for level in ("c_level", "vp_level", "director_level"):
        sentences = executive_summary(result, [], level=level)
        text = " ".join(sentences)
        assert "None" not in text and "nan" not in text
        assert "recurring revenue" not in text and "cancelled" not in text and "on a year earlier" not in text
        assert "LTV" not in text and "Chargebacks" not in text
        assert sentences[0] == "In October 2026 gross revenue was $169,233; net revenue after refunds, chargebacks and fees was $155,878."
    assert executive_summary(make_result(), [], level="c_level") == []  # nothing known, nothing said


def test_text_formatting():
    assert fmt.money(1234.567, "USD") == "$1,235"
    assert fmt.money(11.191, "EUR") == "€11.19"
    assert fmt.money(-20, "USD") == "-$20.00"
    assert fmt.money(1500, "CHF") == "1,500 CHF"
    assert fmt.percent(0.0056) == "0.56%" and fmt.percent(0.873) == "87.3%"
    assert fmt.decimal(-1e-17) == "0.00" and fmt.probability(1.0) == "over 99%"
    assert fmt.period_name(Period.quarter(2026, 3)) == "Q3 2026"
    custom = Period.between("2024-05-03", "2024-05-09")
    assert fmt.during(custom) == "from 3 May 2024 to 9 May 2024"
    assert fmt.previous_during(custom) == "in the previous 7 days"
    assert fmt.during(Period.day(date(2024, 5, 1))) == "on 1 May 2024"
    assert fmt.previous_during(MAY) == "in April 2024"


# -- rules with a session, on hand-built warehouses -----------------------------------------------------


def ts(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


def pay(tid: str, created: datetime, *, customer: str | None = None, amount: int = 5000, status: str = "completed",
        method: str = "card", provider: str = "stripe", country: str = "US", risk: float = 10.0,
        brand: str | None = None, code: str | None = None, product: str = "course_a") -> dict:
    row = tx(tid, customer or f"u_{tid}", amount, "USD", status, method, provider, country, created,
             product=product, risk=risk, failure="insufficient_funds" if status == "failed" else None)
    row["card_brand"] = brand if brand is not None else ("visa" if method == "card" else None)
    row["discount_code"] = code
    return row


def fee(tid: str, amount: int, provider: str, created: datetime) -> dict:
    return metric_fixtures.fee(f"f_{tid}", tid, amount, "USD", provider, created)


def load(warehouse: Warehouse, **tables: list[dict]) -> Warehouse:
    for name, rows in tables.items():
        if rows:
            warehouse.upsert(name, rows)
    return warehouse


def insights_for(warehouse: Warehouse, period: Period, **kwargs) -> tuple[list[Insight], ComprehensiveAnalytics]:
    from analytics_lib.metrics import comprehensive_analytics

    with MetricSession.open(warehouse) as session:
        result = comprehensive_analytics(period, session=session)
        return generate_insights(result, session=session, **kwargs), result


def test_quiet_warehouse_produces_no_insight(warehouse):
    # April and May alike: 600 customers a month, each paying 50.00 once, spread evenly over two
    # providers with the same 5% fee, three countries, no discounts, disputes, alerts or risky scores;
    # one payment in ten fails. Every share, rate and value is the same in both months.
    transactions, fees = [], []
    for month in (4, 5):
        for i in range(600):
            tid = f"m{month}_{i}"
            provider = ("stripe", "adyen")[i % 2]
            status = "failed" if i % 10 == 0 else "completed"
            transactions.append(pay(tid, ts(month, 1 + i % 28, 8 + i % 12), customer=f"c{i}", status=status,
                                    provider=provider, country=("US", "DE", "TR")[i % 3]))
            if status == "completed":
                fees.append(fee(tid, 250, provider, ts(month, 1 + i % 28, 8 + i % 12)))
    load(warehouse, transactions=transactions, fees=fees)
    flat_churn = pd.DataFrame({"customer_id": [f"c{i}" for i in range(300)], "probability": 0.2})
    insights, result = insights_for(warehouse, MAY, models={"churn": flat_churn})
    assert insights == []
    sentences = executive_summary(result, insights)
    assert 3 <= len(sentences) <= 6 and "None" not in " ".join(sentences)


def test_tiny_golden_warehouse_produces_no_insight(warehouse):
    metric_fixtures.build(warehouse)
    tiny_churn = pd.DataFrame({"customer_id": list("ABCDE"), "probability": [0.9, 0.1, 0.1, 0.1, 0.1],
                               "plan": ["x", "y", "y", "y", "y"]})
    insights, _ = insights_for(warehouse, MAY, models={"churn": tiny_churn})
    assert insights == []


def pricing_rows(promo_extra: int = 0) -> list[dict]:
    # 121 days (1 Jan - 30 Apr 2024), 20 purchases of a 50.00 course a day; every fifth day (25 days)
    # half of them used a 20% code (40.00). ``promo_extra`` more discounted purchases on those days.
    rows = []
    for d in range(121):
        day = ts(1, 1, 0) + timedelta(days=d)
        promo = d % 5 == 0
        for k in range(20 + (promo_extra if promo else 0)):
            discounted = promo and (k < 10 or k >= 20)
            rows.append(pay(f"p{d}_{k}", day + timedelta(minutes=10 * k), amount=4000 if discounted else 5000,
                            code="PROMO20" if discounted else None))
    return rows


def test_pricing_headroom_when_discounts_sold_no_more(warehouse):
    # Purchases are 20 a day whatever the price: log(quantity) does not move with log(price), the
    # elasticity is 0 (> -0.5), its standard error 0. April's one-off revenue: 30 x 20 x 50 minus
    # 6 promo days x 10 x 10 = 29,400; per month 29,400 x 30.4375/30 = 29,828.75; a 5% increase at
    # elasticity 0 adds 5%: 1,491.44.
    load(warehouse, transactions=pricing_rows())
    insights, _ = insights_for(warehouse, Period.month(2024, 4, "UTC"), options={"rules": ("pricing_headroom",)})
    insight = only(insights, "pricing_headroom")
    assert insight.evidence["elasticity"] == pytest.approx(0.0, abs=1e-9)
    assert insight.evidence["discounted_purchases"] == 250 and insight.evidence["full_price_purchases"] == 2170
    assert insight.evidence["days"] == 121
    assert insight.estimated_revenue == pytest.approx(29_400 * 30.4375 / 30 * 0.05)
    assert "elasticity is 0.00" in insight.text and "$1,491" in insight.text
    assert_well_formed(insight)


def test_no_pricing_headroom_when_discounts_sold_more(warehouse):
    # On promo days 40 purchases at a mean price index of (10 x 1 + 30 x 0.8) / 40 = 0.85 against 20 at
    # 1.0: elasticity ln(2) / ln(0.85) = -4.27, elastic: no headroom is claimed.
    load(warehouse, transactions=pricing_rows(promo_extra=20))
    insights, _ = insights_for(warehouse, Period.month(2024, 4, "UTC"), options={"rules": ("pricing_headroom",)})
    assert insights == []


def test_pricing_headroom_needs_enough_discounted_sales(warehouse):
    rows = [r for r in pricing_rows() if not (r["discount_code"] and r["created_at"].day > 2)]
    load(warehouse, transactions=rows)  # a handful of discounted purchases (< 100)
    insights, _ = insights_for(warehouse, Period.month(2024, 4, "UTC"), options={"rules": ("pricing_headroom",)})
    assert insights == []


def provider_rows(adyen_successes: int = 380) -> tuple[list[dict], list[dict]]:
    # May: Stripe and Adyen both take 400 card payments of 100.00 from the US. Stripe: 360 succeed,
    # fee 5.00 each (5%); Adyen: ``adyen_successes`` succeed, fee 3.00 (3%).
    transactions, fees = [], []
    for provider, successes, fee_minor in (("stripe", 360, 500), ("adyen", adyen_successes, 300)):
        for i in range(400):
            tid = f"{provider}{i}"
            created = ts(5, 1 + i % 30, 10, i % 60)
            ok = i < successes
            transactions.append(pay(tid, created, amount=10_000, provider=provider, status="completed" if ok else "failed"))
            if ok:
                fees.append(fee(tid, fee_minor, provider, created))
    return transactions, fees


def test_provider_cost_with_hand_numbers(warehouse):
    # Shared cell: card / US. Stripe's gross 36,000 at 5%, Adyen 3% on the same mix: gap 2 points.
    # Adyen succeeds on 95% vs 90%. Saving: half of 36,000 x 0.02 = 360 per 31 days = 353.47 a month.
    # Failed payments recovered: 0.5 x 400 x 0.05 x 100 = 1,000 per 31 days = 981.85 (not in the estimate).
    # Confidence: P(diff > -1 point), se = sqrt(.9 x .1/400 + .95 x .05/400) = 0.01854: z = 3.24 -> 0.99.
    transactions, fees = provider_rows()
    load(warehouse, transactions=transactions, fees=fees)
    insights, _ = insights_for(warehouse, MAY, options={"rules": ("provider_cost",)})
    insight = only(insights, "provider_cost")
    assert (insight.evidence["from"], insight.evidence["to"]) == ("stripe", "adyen")
    assert insight.evidence["fee_rate_a"] == pytest.approx(0.05) and insight.evidence["fee_rate_b"] == pytest.approx(0.03)
    assert insight.evidence["success_rate_a"] == pytest.approx(0.90)
    assert insight.evidence["success_rate_b"] == pytest.approx(0.95)
    assert insight.estimated_revenue == pytest.approx(360 * MAY_FACTOR)
    assert insight.evidence["monthly_recovered_payments"] == pytest.approx(1000 * MAY_FACTOR)
    assert insight.confidence == pytest.approx(0.99)
    assert "Stripe" in insight.title and "Adyen" in insight.title and "$353.47" in insight.text
    assert insight.category == "cost_optimization" and insight.business_impact == "low"
    assert_well_formed(insight)


def test_no_provider_move_to_a_provider_that_fails_more(warehouse):
    transactions, fees = provider_rows(adyen_successes=340)  # 85% < Stripe's 90%
    load(warehouse, transactions=transactions, fees=fees)
    insights, _ = insights_for(warehouse, MAY, options={"rules": ("provider_cost",)})
    assert insights == []


def busy_rows() -> dict[str, list[dict]]:
    """April vs May 2024: the country mix, the method mix, fraud scores, confirmed alerts and Visa
    disputes all change. 1,000 successful payments of 50.00 each month.

    countries  April TR 500 / DE 500     May TR 300 / DE 700
    methods    April card 800 / paypal 200   May card 500 / paypal 500 (cards through Stripe, Visa)
    risk >= 65 April 40                   May 100
    confirmed fraud alerts   April 10 (30 days)   May 40 (31 days)
    disputes   May: 10 on Stripe's Visa payments (500 Visa sales): 2.0%
    """
    transactions, alerts, disputes = [], [], []
    for month, tr, cards, risky, confirmed in ((4, 500, 800, 40, 10), (5, 300, 500, 100, 40)):
        for i in range(1000):
            tid = f"b{month}_{i}"
            card = i < cards
            created = ts(month, 1 + i % 28, 6 + i % 16)
            transactions.append(pay(tid, created, country="TR" if i % 1000 < tr else "DE",
                                    method="card" if card else "paypal", provider="stripe" if card else "paypal",
                                    risk=80.0 if i >= 1000 - risky else 10.0))
            if i >= 1000 - confirmed:
                alerts.append(dict(alert_id=f"a{tid}", transaction_id=tid, customer_id=f"u_{tid}",
                                   alert_type="card_testing", severity="high", risk_score=80.0, created_at=created,
                                   status="confirmed_fraud"))
            if month == 5 and i < 10:
                disputes.append(dict(dispute_id=f"d{tid}", transaction_id=tid, customer_id=f"u_{tid}",
                                     amount_minor=5000, currency="USD", reason="fraudulent", status="needs_response",
                                     outcome=None, created_at=created + timedelta(days=1), evidence_due_at=None,
                                     closed_at=None))
    return {"transactions": transactions, "fraud_alerts": alerts, "disputes": disputes}


def test_market_and_risk_rules_on_a_busy_month(warehouse):
    load(warehouse, **busy_rows())
    insights, result = insights_for(warehouse, MAY)
    assert sorted(i.id for i in insights) == ["chargeback_threshold", "country_share_shift", "fraud_spike",
                                              "payment_method_share_shift"]
    for i in insights:
        assert_well_formed(i)

    country = only(insights, "country_share_shift")
    movers = {m["item"]: m for m in country.evidence["movers"]}
    assert movers["TR"]["share"] == pytest.approx(0.3) and movers["TR"]["previous_share"] == pytest.approx(0.5)
    assert movers["DE"]["change_points"] == pytest.approx(0.2)
    assert country.evidence["tested"] == 2
    # Türkiye lost 20 points of revenue share: 0.2 x 50,000 = 10,000 in May, per month x 30.4375/31
    assert country.estimated_revenue == pytest.approx(10_000 * MAY_FACTOR)
    assert "Türkiye" in country.text and "50.0%" in country.text and "30.0%" in country.text

    methods = only(insights, "payment_method_share_shift")
    m = {x["item"]: x for x in methods.evidence["movers"]}
    assert m["paypal"]["share"] == pytest.approx(0.5) and m["paypal"]["previous_share"] == pytest.approx(0.2)
    assert methods.estimated_revenue is None and "PayPal" in methods.title

    fraud = only(insights, "fraud_spike")
    signals = {s["signal"]: s for s in fraud.evidence["signals"]}
    assert signals["flagged_share"]["current"] == pytest.approx(0.10)
    assert signals["flagged_share"]["previous"] == pytest.approx(0.04)
    assert signals["confirmed_alerts"]["relative_increase"] == pytest.approx((40 / 31) / (10 / 30) - 1)
    assert fraud.business_impact == "high" and "card testing" in fraud.text

    chargeback = only(insights, "chargeback_threshold")
    top = chargeback.evidence["flagged"][0]
    assert (top["provider"], top["brand"], top["sales"], top["disputes"]) == ("stripe", "visa", 500, 10)
    assert top["ratio"] == pytest.approx(0.02) and top["exceeds"]
    assert "above" in chargeback.title and "Visa" in chargeback.title
    assert chargeback.business_impact == "medium"  # 10 disputes, far from Visa's floor of 100

    # with a floor of 12 disputes, 10 is within 75% of it: the programme could bite, high impact
    stricter, _ = insights_for(warehouse, MAY, options={"visa_min_disputes": 12, "rules": ("chargeback_threshold",)})
    assert only(stricter, "chargeback_threshold").business_impact == "high"

    sentences = executive_summary(result, insights, level="c_level")
    assert any("Risks to watch" in s for s in sentences)


def churn_tables() -> dict[str, list[dict]]:
    """300 monthly subscriptions at 10.00 from 1 Jan 2024; 15 end on 10 Feb, 45 on 10 Mar.
    Subscribers 0-59 live in Brazil, the rest in Türkiye."""
    events, customers, subscriptions = [], [], []
    for i in range(300):
        cust, sub = f"s{i}", f"sub{i}"
        events.append(event(f"e{i}a", sub, cust, "start", ts(1, 1, 0), "plan_m", 1000))
        ended = None
        if 240 <= i < 255:
            ended = ts(2, 10)
        elif i >= 255:
            ended = ts(3, 10)
        if ended:
            events.append(event(f"e{i}b", sub, cust, "cancel", ended, "plan_m", 1000, reason="voluntary"))
        customers.append(metric_fixtures.customer(cust, "BR" if i < 60 else "TR", ts(1, 1, 0)))
        subscriptions.append(dict(subscription_id=sub, customer_id=cust, product_id="plan_m",
                                  status="canceled" if ended else "active", price_minor=1000, currency="USD",
                                  billing_interval_months=1, discount_percent=0.0, started_at=ts(1, 1, 0),
                                  cancel_at_period_end=False, ended_at=ended))
    return {"subscription_events": events, "customers": customers, "subscriptions": subscriptions}


def test_churn_rate_rise_and_pockets_through_the_session(warehouse):
    # February: 15 of 300 left (5.0%); March: 45 of 285 (15.8%). MRR churn 150 / 3,000 = 5% and
    # 450 / 2,850 = 15.8%: the excess (0.15789 - 0.05) x 2,850 = 307.5 over 31 days -> 301.92 a month.
    load(warehouse, **churn_tables())
    march = Period.month(2024, 3, "UTC")
    # the churn model's output has ids and probabilities only: countries come from the warehouse.
    # 60 Brazilians at 0.5, 240 others at 0.1: the Brazil pocket, 300 expected MRR lost at ARPA 10, 75 kept.
    scores = pd.DataFrame({"customer_id": [f"s{i}" for i in range(300)],
                           "probability": [0.5] * 60 + [0.1] * 240})
    insights, result = insights_for(warehouse, march, models={"churn": scores},
                                    options={"rules": ("churn_rate_rise", "churn_risk_pockets")})
    assert result.recurring_revenue.summary["arpa"] == pytest.approx(10.0)
    rise = only(insights, "churn_rate_rise")
    assert rise.evidence["previous_rate"] == pytest.approx(15 / 300)
    assert rise.evidence["current_rate"] == pytest.approx(45 / 285)
    assert rise.estimated_revenue == pytest.approx((45 / 285 - 0.05) * 2850 * 30.4375 / 31)
    assert "March 2024" in rise.text and "February 2024" in rise.text
    pocket = only(insights, "churn_risk_pockets")
    assert pocket.evidence["pockets"][0]["segment"] == {"country": "BR"}
    assert pocket.estimated_revenue == pytest.approx(75.0)
    assert "Brazil" in pocket.title


# -- a realistic warehouse ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Warehouse:
    from analytics_lib.synth import generate

    wh = Warehouse(tmp_path_factory.mktemp("insights") / "warehouse")
    generate(wh, customers=800, months=14, seed=5, end=date(2025, 6, 30))
    return wh


def test_insights_on_a_synthetic_warehouse_are_consistent(synthetic):
    period = Period.month(2025, 6, "Europe/Istanbul")
    insights, result = insights_for(synthetic, period)
    assert [i.id for i in insights] == [i.id for i in rank(insights)]
    assert len({i.id for i in insights}) == len(insights)
    for i in insights:
        assert_well_formed(i)
    gross = result.revenue.summary["gross_revenue"]
    for i in insights:  # no estimate claims more than the month's whole gross revenue
        assert (i.estimated_revenue or 0) < gross * 30.4375 / period.days
    rfm = [i for i in insights if i.id == "high_value_rfm_segment"]
    if rfm:  # with a session the segment's revenue of the period is measured (customers.rfm x payments)
        assert 0 < rfm[0].evidence["segment_revenue_in_period"] <= gross
        assert rfm[0].estimated_revenue == pytest.approx(
            0.2 * rfm[0].evidence["segment_revenue_in_period"] * 30.4375 / period.days)
    for level, (low, high) in {"c_level": (3, 6), "vp_level": (5, 9), "director_level": (7, 13)}.items():
        sentences = executive_summary(result, insights, level=level)
        assert low <= len(sentences) <= high
        assert "None" not in " ".join(sentences) and "nan" not in " ".join(sentences)
