"""Golden tests: the metric layer on tests/metric_fixtures.py against numbers worked out by hand.

Conversions used below: EUR 50.00 = 55.00 USD, EUR 40.00 = 44.00 USD, TRY 1000.00 = 30.00 USD,
EUR 1.50 = 1.65, EUR 1.20 = 1.32, TRY 30.00 = 0.90.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics_lib import metrics as m
from analytics_lib.metrics import MetricOptions, Period
from tests import metric_fixtures as fx

MAY = Period.month(2024, 5, "UTC")
approx = pytest.approx


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from analytics_lib.warehouse import Warehouse

    wh = fx.build(Warehouse(tmp_path_factory.mktemp("golden") / "warehouse"))
    with m.MetricSession.open(wh) as s:
        yield s


def test_transactions(session):
    t = m.transaction_analytics(session, MAY, currency="USD")
    s = t.summary
    # May attempts t1..t10: successful t1 t2 t3 t6 t9 t10, failed t4 t5 t8, pending t7
    assert (s["total_transactions"], s["successful_transactions"], s["failed_transactions"],
            s["other_transactions"]) == (10, 6, 3, 1)
    # 100 + 55 + 30 + 44 + 30 + 80
    assert s["total_volume"] == approx(339.0)
    assert s["average_transaction_value"] == approx(56.5)
    assert (s["success_rate"], s["failure_rate"]) == (approx(0.6), approx(0.3))
    # issuer declines t4 t8 of 10 attempts; authorized 6 of the 8 sent to issuers (t5 blocked
    # by our rules and t7 pending are not)
    assert s["decline_rate"] == approx(0.2)
    assert s["authorization_rate"] == approx(0.75)
    assert s["blocked_transactions"] == 1
    # t8 (failed renewal) was paid by its retry t9
    assert (s["failed_recurring_charges"], s["recovered_by_retries"], s["dunning_recovery_rate"]) == (1, 1, 1.0)

    methods = t.tables["by_payment_method"].set_index("payment_method")
    assert methods.loc["card", "transactions"] == 8
    assert methods.loc["card", "volume"] == approx(100 + 30 + 44 + 30 + 80)
    assert methods.loc["paypal", "transactions"] == 1 and methods.loc["bank_transfer", "successful"] == 0
    reasons = t.tables["failure_reasons"].set_index("failure_reason")
    assert reasons.loc["insufficient_funds", "failures"] == 2
    assert reasons.loc["fraudulent", "share_of_failures"] == approx(1 / 3)
    attempts = t.tables["failures_by_attempt"].set_index("value")
    assert attempts.loc["first attempt", "failure_rate"] == approx(3 / 9)
    assert attempts.loc["retry", "failure_rate"] == 0
    bands = t.tables["failures_by_amount_band"].set_index("value")
    # 10-50 USD: t3 t4 t5 t6 t8 t9, of which t4 t5 t8 failed
    assert (bands.loc["2: 10-50", "transactions"], bands.loc["2: 10-50", "failure_rate"]) == (6, approx(0.5))
    assert bands.loc["4: 100-250", "transactions"] == 1
    series = t.tables["time_series"]
    assert len(series) == 10 and series["transactions"].sum() == 10


def test_revenue(session):
    r = m.revenue_analytics(session, MAY, currency="USD").summary
    assert r["gross_revenue"] == approx(339.0)
    # r1 (EUR 40 on 05-15); r2 is dated June and belongs to June
    assert r["refunds"] == approx(44.0)
    # d1 opened 05-28 and not won
    assert r["chargebacks"] == approx(80.0)
    # 3.20 + 1.65 + 0.90 + 1.32 + 0.90 + 2.62 + 15.00 (dispute fee)
    assert r["fees"] == approx(25.59)
    assert r["net_revenue"] == approx(339 - 44 - 80 - 25.59)
    assert r["refund_rate"] == approx(1 / 6) and r["refund_rate_amount"] == approx(44 / 339)
    assert r["chargeback_rate"] == approx(1 / 6) and r["chargeback_rate_amount"] == approx(80 / 339)
    # paying customers c1 c2 c3 c6
    assert r["paying_customers"] == 4 and r["revenue_per_customer"] == approx(84.75)
    assert r["subscription_revenue"] == approx(60.0) and r["one_off_revenue"] == approx(279.0)
    # April had t0 (15 USD); May 2023 had nothing
    assert r["gross_revenue_previous"] == approx(15.0)
    assert r["revenue_growth_vs_previous"] == approx((339 - 15) / 15)
    assert r["revenue_growth_vs_last_year"] is None


def test_revenue_breakdowns(session):
    tables = m.revenue_analytics(session, MAY, currency="USD", with_growth=False).tables
    products = tables["by_product"].set_index("product_id")
    assert list(products.index) == ["course_c", "course_a", "plan_pro_m", "course_b"]
    assert products.loc["course_c", "revenue"] == approx(124.0)
    assert products.loc["course_c", "product_name"] == "Design C"
    currencies = tables["by_currency"].set_index("currency")
    assert currencies.loc["EUR", "revenue_original"] == approx(90.0)
    assert currencies.loc["EUR", "revenue"] == approx(99.0)
    assert currencies.loc["TRY", "revenue_original"] == approx(2000.0)
    plans = tables["by_plan_type"].set_index("plan_type")
    assert plans.loc["monthly", "revenue"] == approx(60.0) and plans.loc["unknown", "revenue"] == approx(279.0)
    daily = tables["daily"]
    assert len(daily) == 31 and daily["net_revenue"].sum() == approx(339 - 44 - 80 - 25.59)


def test_reporting_currency(session):
    eur = m.transaction_analytics(session, MAY, currency="EUR").summary
    assert eur["total_volume"] == approx(339 / 1.10)


def test_missing_fx_rate_is_an_error_naming_currency_and_day(session):
    with pytest.raises(m.MissingRateError, match=r"no FX rate for GBP \(the reporting currency\) on 2024-05-02"):
        m.transaction_analytics(session, MAY, currency="GBP")
    # a June TRY payment on a day without a TRY rate
    with pytest.raises(m.MissingRateError, match=r"no FX rate for TRY on 2024-06-29 \(needed to convert to USD\)"):
        m.transaction_analytics(session, MAY, {"country": "XX"}, currency="USD")  # re-scope first
        m.transaction_analytics(session, Period.between("2024-06-28", "2024-06-30", "UTC"), currency="USD")
    with pytest.raises(m.MetricError, match="unknown currency"):
        m.transaction_analytics(session, MAY, currency="XXX")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # period_end: D's cancel takes effect 05-01 00:00, so D is still paying at the start of May
        # start A20 B30 C10 D25 I11 = 96; end A50 B10 C10 E30 F15 I11 = 126
        (MetricOptions(), dict(start=96, end=126, new=42, expansion=30, contraction=20, churned=37,
                                reactivation=15, subs_start=5, subs_end=6, churned_customers=1)),
        # request: D left in April (asked 04-20), C leaves on 05-05
        # start A20 B30 C10 I11 = 71; end A50 B10 E30 F15 I11 = 116; churned C10 + H12
        (MetricOptions(mrr_cancel_at="request"), dict(start=71, end=116, new=42, expansion=30, contraction=20,
                                                       churned=22, reactivation=15, subs_start=4, subs_end=5,
                                                       churned_customers=1)),
        # H (joined and left inside May) left out
        (MetricOptions(mrr_same_interval="ignore"), dict(start=96, end=126, new=30, expansion=30, contraction=20,
                                                          churned=25, reactivation=15, subs_start=5, subs_end=6,
                                                          churned_customers=1)),
    ],
)
def test_mrr_movements(session, options, expected):
    mrr = m.recurring_revenue(session, MAY, currency="USD", options=options)
    s = mrr.summary
    assert s["mrr_start"] == approx(expected["start"])
    assert s["mrr"] == approx(expected["end"]) and s["arr"] == approx(12 * expected["end"])
    assert s["new_mrr"] == approx(expected["new"])
    assert s["expansion_mrr"] == approx(expected["expansion"])
    assert s["contraction_mrr"] == approx(expected["contraction"])
    assert s["churned_mrr"] == approx(expected["churned"])
    assert s["reactivation_mrr"] == approx(expected["reactivation"])
    assert s["net_new_mrr"] == approx(expected["end"] - expected["start"])
    assert (s["subscribers_start"], s["subscribers"]) == (expected["subs_start"], expected["subs_end"])
    assert s["churned_subscribers"] == expected["churned_customers"]
    row = mrr.tables["movements"].iloc[0]
    assert row["label"] == "2024-05"
    assert row["mrr_end"] == approx(row["mrr_start"] + row["new_mrr"] + row["expansion_mrr"]
                                    + row["reactivation_mrr"] - row["contraction_mrr"] - row["churned_mrr"])


def test_mrr_rates(session):
    s = m.recurring_revenue(session, MAY, currency="USD").summary
    assert s["quick_ratio"] == approx((42 + 30) / (20 + 37))
    assert s["gross_mrr_churn_rate"] == approx((37 + 20) / 96)
    assert s["net_mrr_churn_rate"] == approx((37 + 20 - 30 - 15) / 96)
    # customers paying on 05-01: A B C D I; their end MRR 50+10+10+0+11, capped 20+10+10+0+11
    assert s["net_revenue_retention"] == approx(81 / 96)
    assert s["gross_revenue_retention"] == approx(51 / 96)
    assert s["customer_churn_rate"] == approx(1 / 5)
    assert s["arpa"] == approx(126 / 6)
    # E's trial ended in a paid start; G is still trialing at the end of May
    assert s["trialing"] == 1
    by_plan = m.recurring_revenue(session, MAY).tables["by_plan"].set_index("product_id")
    assert by_plan.loc["plan_pro", "mrr"] == approx(50 + 30)
    assert by_plan.loc["plan_eur", "mrr"] == approx(11)


def test_mrr_filters_and_earlier_month(session):
    eur_only = m.recurring_revenue(session, MAY, {"currency": "EUR"}).summary
    assert eur_only["mrr"] == approx(11) and eur_only["new_mrr"] == 0
    by_provider = m.recurring_revenue(session, MAY, {"provider": "stripe"}).summary
    assert by_provider["mrr"] is None and by_provider["not_applicable_filters"] == ["provider"]
    april = m.recurring_revenue(session, Period.month(2024, 4, "UTC")).summary
    # 04-01: A20 C10 D25 = 55 (F left 03-05); 05-01: + B30 + I11 = 96; nothing churned in April
    assert (april["mrr_start"], april["mrr"], april["new_mrr"], april["churned_mrr"]) == (
        approx(55), approx(96), approx(41), approx(0))


def test_customers(session):
    c = m.customer_analytics(session, MAY, currency="USD").summary
    assert (c["total_customers"], c["new_customers"], c["returning_customers"]) == (4, 3, 1)
    assert c["arpu"] == approx(339 / 4)
    # all successful payments up to the end of May (t0 15 + May 339) over the 4 customers who ever paid
    assert c["historical_clv"] == approx(354 / 4)
    assert c["marketing_spend"] == approx(300.0)
    assert c["cac"] == approx(100.0)
    monthly_churn = 1 - (1 - 0.2) ** (30.4375 / 31)
    assert c["monthly_customer_churn_rate"] == approx(monthly_churn)
    assert c["ltv"] == approx(21 / monthly_churn)
    assert c["ltv_to_cac"] == approx(21 / monthly_churn / 100)
    # average gap per repeat customer: c1 04-20 12:00 -> 05-02 10:00 = 11 22/24 days,
    # c2 05-03 12:00 -> 05-10 12:00 = 7 days, c3 05-04 09:00 -> 05-27 08:00 = 22 23/24 days
    assert c["median_days_between_purchases"] == approx(11 + 22 / 24)
    assert c["repeat_customers"] == 3


def test_customer_tables(session):
    tables = m.customer_analytics(session, MAY, currency="USD").tables
    assert tables["rfm_segments"]["customers"].sum() == 4
    day_hour = tables["day_hour"]
    assert day_hour["payments"].sum() == 6
    # 2024-05-02 is a Thursday; t1 at 10:00 UTC
    assert ((day_hour["weekday"] == 4) & (day_hour["hour"] == 10)).any()
    pairs = tables["course_pairs"]
    # c1 bought course_a only; c2 course_b and course_c
    assert pairs.iloc[0][["course_a", "course_b", "customers"]].tolist() == ["course_b", "course_c", 1]
    channels = tables["spend_by_channel"].set_index("channel")
    assert channels.loc["paid_search", "marketing_spend"] == approx(200)
    assert channels.loc["paid_search", "new_customers"] == 2  # c2, c3
    assert channels.loc["paid_search", "cac"] == approx(100)


def test_cohorts(session):
    c = m.cohorts(session, MAY, currency="USD")
    retention = c.tables["customer_retention"].set_index("cohort_month")
    assert retention.loc["2024-04", "cohort_size"] == 1 and retention.loc["2024-05", "cohort_size"] == 3
    assert retention.loc["2024-04", "1"] == 1.0  # c1 paid again in May
    revenue = c.tables["revenue_retention"].set_index("cohort_month")
    assert revenue.loc["2024-04", "1"] == approx(100 / 15)


def test_geography(session):
    g = m.geography(session, MAY, currency="USD")
    top = g.tables["top_countries"].set_index("country_code")
    assert list(top.index) == ["TR", "DE", "US", "GB"]
    assert top.loc["TR", "transactions"] == 5 and top.loc["TR", "volume"] == approx(160)
    assert top.loc["TR", "success_rate"] == approx(0.6) and top.loc["TR", "average_value"] == approx(160 / 3)
    assert top.loc["DE", "country_name"] == "Germany"
    assert top.loc["GB", "success_rate"] == 0
    assert g.summary["international_share"] == approx(179 / 339)
    assert g.summary["international_share_of_payments"] == approx(0.5)


def test_performance(session):
    p = m.performance(session, MAY, currency="USD")
    prov = p.tables["providers"].set_index("provider")
    stripe = prov.loc["stripe"]
    assert (stripe["transactions"], stripe["successful"]) == (5, 2)
    assert stripe["authorization_rate"] == approx(2 / 3)
    assert stripe["fees"] == approx(20.82)
    assert stripe["net_revenue"] == approx(180 - 80 - 20.82)
    assert stripe["fee_per_net_revenue"] == approx(20.82 / 79.18)
    assert stripe["latency_p50_ms"] == approx(2000) and stripe["latency_p95_ms"] == approx(2900)
    assert prov.loc["adyen", "net_revenue"] == approx(44 - 44 - 1.32)
    assert p.summary["costliest_provider"] == "stripe"
    mix = p.tables["error_mix"]
    assert set(mix[mix["provider"] == "iyzico"]["failure_reason"]) == {"insufficient_funds"}


def test_fraud(session):
    f = m.fraud(session, MAY, currency="USD")
    s = f.summary
    assert s["scored_transactions"] == 10 and s["average_risk_score"] == approx(46.1)
    # >= 65: t5 90, t8 66, t9 70, t10 80; >= 75: t5, t10
    assert (s["review_share"], s["block_share"]) == (approx(0.4), approx(0.2))
    assert (s["review_count"], s["block_count"], s["blocked_by_rules"]) == (2, 2, 1)
    assert (s["fraud_alerts"], s["confirmed_fraud_alerts"]) == (2, 1)
    bands = f.tables["risk_distribution"]
    assert bands["transactions"].tolist() == [1] * 10
    ind = f.tables["indicators"].set_index("indicator")
    assert ind.loc["velocity", "transactions"] == 2 and ind.loc["country_mismatch", "dispute_rate"] == 1.0
    by_country = f.tables["chargebacks_by_country"].set_index("value")
    assert by_country.loc["US", "chargeback_rate"] == 1.0 and by_country.loc["TR", "disputes"] == 0
    stricter = m.fraud(session, MAY, options=MetricOptions(review_threshold=50, block_threshold=90)).summary
    assert (stricter["review_share"], stricter["block_share"]) == (approx(0.5), approx(0.1))


def test_realtime(session):
    rt = m.realtime(session, now=datetime(2024, 5, 27, 12, tzinfo=UTC), timezone="UTC")
    s = rt.summary
    # window 05-26 12:00 .. 05-27 12:00 holds t9 only, and c8's checkout visit
    assert s["transactions"] == 1 and s["transactions_per_hour"] == approx(1 / 24)
    assert s["success_rate"] == 1.0 and s["revenue"] == approx(30) and s["revenue_per_hour"] == approx(1.25)
    assert s["active_users"] == 2 and s["open_fraud_alerts"] == 0
    assert rt.tables["hourly"]["transactions"].sum() == 1


def test_filters_restrict_every_family(session):
    tr = m.transaction_analytics(session, MAY, {"country": ["DE"]}).summary
    assert (tr["total_transactions"], tr["total_volume"]) == (2, approx(99))
    rv = m.revenue_analytics(session, MAY, {"country": "DE"}, with_growth=False).summary
    assert (rv["refunds"], rv["chargebacks"], rv["fees"]) == (approx(44), 0, approx(1.65 + 1.32))
    both = m.transaction_analytics(session, MAY, {"payment_method": "card", "provider": ["stripe", "adyen"]}).summary
    assert both["total_transactions"] == 5  # t1 t4 t5 t10 (stripe card) + t6 (adyen)


def test_hostile_filter_values_are_only_values(session):
    for value in ("TR' OR '1'='1", "'; DROP TABLE transactions; --", "TR\") OR 1=1 --", "x" * 10_000):
        s = m.transaction_analytics(session, MAY, {"country": value}).summary
        assert s["total_transactions"] == 0
    assert m.transaction_analytics(session, MAY).summary["total_transactions"] == 10
    with pytest.raises(m.MetricError, match="unknown filter 'country; DROP'"):
        m.transaction_analytics(session, MAY, {"country; DROP": "TR"})
    with pytest.raises(m.MetricError, match="grain must be one of"):
        m.transaction_analytics(session, MAY, grain="minute'; --")


def test_comprehensive_is_json_and_consistent(session):
    result = m.comprehensive_analytics(MAY, currency="USD", session=session)
    data = result.to_dict()
    for key in ("summary", "transactions", "revenue", "recurring_revenue", "customers", "geography",
                "performance", "fraud", "cohorts", "trends"):
        assert key in data
    assert data["summary"]["gross_revenue"] == approx(339)
    assert data["summary"]["mrr"] == approx(126)
    assert data["period"] == {"start": "2024-05-01", "end": "2024-05-31", "kind": "month",
                              "timezone": "UTC", "label": "2024-05"}
    assert result.to_json().count("NaN") == 0
    trends = {t["metric"]: t for t in data["trends"]}
    assert trends["gross_revenue"]["current_value"] == approx(339)
    assert trends["gross_revenue"]["previous_value"] == approx(15)


def test_business_time_zone_buckets(tmp_path):
    from analytics_lib.warehouse import Warehouse

    wh = Warehouse(tmp_path / "wh")
    wh.upsert("transactions", [
        # 22:30 UTC on 31 May is 01:30 on 1 June in Istanbul
        fx.tx("late", "c1", 1000, "USD", "completed", "card", "stripe", "TR", datetime(2024, 5, 31, 22, 30, tzinfo=UTC)),
        # 22:00 UTC on 30 April is 01:00 on 1 May in Istanbul
        fx.tx("early", "c1", 2000, "USD", "completed", "card", "stripe", "TR", datetime(2024, 4, 30, 22, tzinfo=UTC)),
    ])
    with m.MetricSession.open(wh) as s:
        utc = m.transaction_analytics(s, Period.month(2024, 5, "UTC")).summary
        ist = m.transaction_analytics(s, Period.month(2024, 5, "Europe/Istanbul")).summary
        assert utc["total_volume"] == approx(10) and ist["total_volume"] == approx(20)
        hourly = m.transaction_analytics(s, Period.day(datetime(2024, 6, 1).date(), "Europe/Istanbul"), grain="hour")
        assert str(hourly.tables["time_series"]["bucket"].iloc[0]) == "2024-06-01 01:00:00"


def test_cancellation_taken_back_before_it_takes_effect(tmp_path):
    from analytics_lib.warehouse import Warehouse

    wh = Warehouse(tmp_path / "wh")
    wh.upsert("subscription_events", [
        fx.event("j1", "sJ", "J", "start", fx.ts(3, 1, 0), "plan_basic", 2000),
        # asked to cancel on 05-05 for the end of the paid month (06-01) ...
        fx.event("j2", "sJ", "J", "cancel", fx.ts(5, 5), "plan_basic", 2000, effective=fx.ts(6, 1, 0)),
        # ... and changed their mind on 05-20: the cancellation never takes effect
        fx.event("j3", "sJ", "J", "reactivate", fx.ts(5, 20), "plan_basic", 2000),
    ])
    with m.MetricSession.open(wh) as s:
        june = m.recurring_revenue(s, Period.month(2024, 6, "UTC")).summary
        assert (june["mrr_start"], june["mrr"], june["churned_mrr"]) == (approx(20), approx(20), 0)
        # when cancellations count at the request, J churned on 05-05 and came back on 05-20
        may = m.recurring_revenue(s, MAY, options=MetricOptions(mrr_cancel_at="request")).summary
        assert (may["mrr_start"], may["mrr"]) == (approx(20), approx(20))
        assert m.recurring_revenue(s, Period.month(2024, 6, "UTC"),
                                   options=MetricOptions(mrr_cancel_at="request")).summary["mrr"] == approx(20)


def test_filter_values_must_be_text():
    with pytest.raises(m.MetricError, match="not valid text"):
        m.Filters.of({"country": "\udcff"})
