"""A tiny hand-made warehouse for golden metric tests. Every expected number in
tests/test_metrics_golden.py was worked out by hand from the rows below (see the comments
there). Period of interest: May 2024, UTC; reporting currency USD; EUR = 1.10 USD,
TRY = 0.03 USD on every day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from analytics_lib.warehouse import Warehouse

EUR, TRY = 1.10, 0.03


def ts(month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute, second, tzinfo=UTC)


def tx(tid, customer, amount_minor, currency, status, method, provider, country, created, *,
       outcome=None, failure=None, product=None, subscription=None, plan_type=None, attempt=1,
       original=None, billing="purchase", risk=None, indicators=(), latency_ms=1000):
    outcome = outcome or {"completed": "authorized", "refunded": "authorized", "disputed": "authorized",
                          "partially_refunded": "authorized", "failed": "issuer_declined",
                          "pending": "pending"}[status]
    succeeded = status in ("completed", "refunded", "disputed", "partially_refunded")
    return dict(
        transaction_id=tid, customer_id=customer, amount_minor=amount_minor, currency=currency,
        status=status, outcome_type=outcome, payment_method=method, provider=provider,
        created_at=created, completed_at=created + timedelta(milliseconds=latency_ms) if succeeded else None,
        failed_at=created + timedelta(seconds=1) if status == "failed" else None,
        failure_reason=failure, attempt_number=attempt, original_transaction_id=original,
        billing_reason=billing, product_id=product, subscription_id=subscription, plan_type=plan_type,
        country_code=country, risk_score=risk, fraud_indicators=list(indicators),
        created_month=f"{created:%Y-%m}",
    )


TRANSACTIONS = [
    tx("t0", "c1", 1500, "USD", "completed", "card", "stripe", "TR", ts(4, 20), product="course_a", risk=5),
    tx("t1", "c1", 10000, "USD", "completed", "card", "stripe", "TR", ts(5, 2, 10), product="course_a",
       risk=10, latency_ms=1000),
    tx("t2", "c2", 5000, "EUR", "completed", "paypal", "paypal", "DE", ts(5, 3), product="course_b", risk=20),
    tx("t3", "c3", 100000, "TRY", "completed", "card", "iyzico", "TR", ts(5, 4, 9), product="plan_pro_m",
       subscription="s3", plan_type="monthly", billing="subscription_create", risk=30),
    tx("t4", "c1", 3000, "USD", "failed", "card", "stripe", "TR", ts(5, 5), failure="insufficient_funds",
       product="course_b", risk=50),
    tx("t5", "c4", 2000, "USD", "failed", "card", "stripe", "US", ts(5, 6), outcome="blocked",
       failure="fraudulent", product="course_a", risk=90, indicators=("card_testing", "velocity")),
    tx("t6", "c2", 4000, "EUR", "refunded", "card", "adyen", "DE", ts(5, 10), product="course_c", risk=40),
    tx("t7", "c5", 6000, "USD", "pending", "bank_transfer", "stripe", "GB", ts(5, 20), product="course_a", risk=5),
    tx("t8", "c3", 100000, "TRY", "failed", "card", "iyzico", "TR", ts(5, 25), failure="insufficient_funds",
       product="plan_pro_m", subscription="s3", plan_type="monthly", billing="subscription_cycle", risk=66,
       indicators=("velocity",)),
    tx("t9", "c3", 100000, "TRY", "completed", "card", "iyzico", "TR", ts(5, 27, 8), product="plan_pro_m",
       subscription="s3", plan_type="monthly", billing="retry", attempt=2, original="t8", risk=70),
    # June, on a day after the last fx rate (2024-06-28): converting it must fail loudly
    tx("t11", "c3", 50000, "TRY", "completed", "card", "iyzico", "TR", ts(6, 29)),
    tx("t10", "c6", 8000, "USD", "disputed", "card", "stripe", "US", ts(5, 12), product="course_c", risk=80,
       indicators=("country_mismatch",), latency_ms=3000),
]

REFUNDS = [
    dict(refund_id="r1", transaction_id="t6", customer_id="c2", amount_minor=4000, currency="EUR",
         reason="requested_by_customer", status="succeeded", created_at=ts(5, 15)),
    dict(refund_id="r2", transaction_id="t1", customer_id="c1", amount_minor=2000, currency="USD",
         reason="requested_by_customer", status="succeeded", created_at=ts(6, 2)),
]

DISPUTES = [
    dict(dispute_id="d1", transaction_id="t10", customer_id="c6", amount_minor=8000, currency="USD",
         reason="fraudulent", status="needs_response", outcome=None, created_at=ts(5, 28),
         evidence_due_at=ts(6, 10), closed_at=None),
]


def fee(fid, tid, amount_minor, currency, provider, created, fee_type="processing"):
    return dict(fee_id=fid, transaction_id=tid, fee_type=fee_type, amount_minor=amount_minor,
                currency=currency, provider=provider, created_at=created)


FEES = [
    fee("f0", "t0", 74, "USD", "stripe", ts(4, 20)),
    fee("f1", "t1", 320, "USD", "stripe", ts(5, 2, 10)),
    fee("f2", "t2", 150, "EUR", "paypal", ts(5, 3)),
    fee("f3", "t3", 3000, "TRY", "iyzico", ts(5, 4, 9)),
    fee("f6", "t6", 120, "EUR", "adyen", ts(5, 10)),
    fee("f9", "t9", 3000, "TRY", "iyzico", ts(5, 27, 8)),
    fee("f10", "t10", 262, "USD", "stripe", ts(5, 12)),
    fee("f10d", "t10", 1500, "USD", "stripe", ts(5, 28), fee_type="dispute"),
]

FX = [
    dict(rate_date=date(2024, 3, 1) + timedelta(days=i), currency=cur, usd_per_unit=rate)
    for i in range(120) for cur, rate in (("EUR", EUR), ("TRY", TRY))
]

PRODUCTS = [
    dict(product_id="course_a", product_type="course", name="Python A", list_price_minor=10000, currency="USD", active=True),
    dict(product_id="course_b", product_type="course", name="Data B", list_price_minor=5000, currency="USD", active=True),
    dict(product_id="course_c", product_type="course", name="Design C", list_price_minor=4000, currency="USD", active=True),
    dict(product_id="plan_pro_m", product_type="subscription_plan", name="Pro monthly", plan_interval_months=1,
         list_price_minor=3000, currency="USD", trial_days=0, active=True),
]


def customer(cid, country, signup, channel="organic"):
    return dict(customer_id=cid, country_code=country, signup_at=signup, acquisition_channel=channel,
                is_guest=False, device_class="desktop")


CUSTOMERS = [
    customer("c1", "TR", ts(4, 1), "organic"), customer("c2", "DE", ts(5, 1), "paid_search"),
    customer("c3", "TR", ts(5, 1), "paid_search"), customer("c4", "US", ts(5, 6), "social"),
    customer("c5", "GB", ts(5, 20), "organic"), customer("c6", "US", ts(5, 11), "social"),
    *(customer(c, "TR", ts(1, 1)) for c in "ABCDEFGH"), customer("I", "DE", ts(4, 1)),
]

MARKETING = [
    dict(spend_date=date(2024, 5, 1), campaign_id="cmp_search", channel="paid_search", country_code="TR",
         spend_minor=20000, currency="USD"),
    dict(spend_date=date(2024, 5, 2), campaign_id="cmp_social", channel="social", country_code="US",
         spend_minor=10000, currency="USD"),
    dict(spend_date=date(2024, 6, 1), campaign_id="cmp_search", channel="paid_search", country_code="TR",
         spend_minor=99900, currency="USD"),
]

ALERTS = [
    dict(alert_id="a1", transaction_id="t5", customer_id="c4", alert_type="card_testing", severity="high",
         risk_score=90.0, created_at=ts(5, 6), status="confirmed_fraud"),
    dict(alert_id="a2", transaction_id="t10", customer_id="c6", alert_type="country_mismatch", severity="medium",
         risk_score=80.0, created_at=ts(5, 12), status="open"),
]

CHECKOUT = [
    dict(event_id="e1", session_id="sess1", customer_id="c8", step="view_product", occurred_at=ts(5, 27, 9),
         occurred_month="2024-05"),
]


def event(eid, sub, cust, etype, at, product, price_minor, *, interval=1, discount=0.0, effective=None,
          currency="USD", previous=None, reason=None):
    return dict(event_id=eid, subscription_id=sub, customer_id=cust, event_type=etype, occurred_at=at,
                effective_at=effective or at, product_id=product, previous_product_id=previous,
                price_minor=price_minor, currency=currency, billing_interval_months=interval,
                discount_percent=discount, reason=reason)


# MRR story for May 2024 (customers A-I, one subscription each):
#   A monthly 20 -> upgrade to 50 on 05-10          expansion +30
#   B monthly 30 -> downgrade to 10 on 05-15        contraction 20
#   C annual 120 (MRR 10), cancel asked 05-05, effective 2025-02-01 (end of the paid year)
#   D monthly 25, cancel asked 04-20, effective 05-01 00:00 (end of the paid month)
#   E trial 05-03, paid start 05-10 monthly 40 with a permanent 25 % discount (MRR 30)
#   F monthly 15 Jan-Mar (cancel effective 03-05), reactivated 05-20 at 15
#   G trial only (05-25): never counts
#   H monthly 12 started 05-06, cancelled immediately 05-18: joins and leaves inside May
#   I monthly 10 EUR since 04-10 = 11 USD, unchanged
SUBSCRIPTION_EVENTS = [
    event("ea1", "sA", "A", "start", ts(3, 1, 0), "plan_basic", 2000),
    event("ea2", "sA", "A", "upgrade", ts(5, 10), "plan_pro", 5000, previous="plan_basic"),
    event("eb1", "sB", "B", "start", ts(4, 1, 0), "plan_pro", 3000),
    event("eb2", "sB", "B", "downgrade", ts(5, 15), "plan_basic", 1000, previous="plan_pro"),
    event("ec1", "sC", "C", "start", ts(2, 1, 0), "plan_annual", 12000, interval=12),
    event("ec2", "sC", "C", "cancel", ts(5, 5), "plan_annual", 12000, interval=12,
          effective=datetime(2025, 2, 1, tzinfo=UTC), reason="voluntary"),
    event("ed1", "sD", "D", "start", ts(1, 1, 0), "plan_basic", 2500),
    event("ed2", "sD", "D", "cancel", ts(4, 20), "plan_basic", 2500, effective=ts(5, 1, 0), reason="voluntary"),
    event("ee1", "sE", "E", "trial_start", ts(5, 3), "plan_pro", 4000),
    event("ee2", "sE", "E", "start", ts(5, 10), "plan_pro", 4000, discount=25.0),
    event("ef1", "sF", "F", "start", ts(1, 5), "plan_basic", 1500),
    event("ef2", "sF", "F", "cancel", ts(2, 20), "plan_basic", 1500, effective=ts(3, 5), reason="voluntary"),
    event("ef3", "sF", "F", "reactivate", ts(5, 20), "plan_basic", 1500),
    event("eg1", "sG", "G", "trial_start", ts(5, 25), "plan_pro", 4000),
    event("eh1", "sH", "H", "start", ts(5, 6), "plan_basic", 1200),
    event("eh2", "sH", "H", "cancel", ts(5, 18), "plan_basic", 1200, reason="voluntary"),
    event("ei1", "sI", "I", "start", ts(4, 10), "plan_eur", 1000, currency="EUR"),
]


def build(warehouse: Warehouse) -> Warehouse:
    for table, rows in (
        ("fx_rates", FX), ("products", PRODUCTS), ("customers", CUSTOMERS),
        ("subscription_events", SUBSCRIPTION_EVENTS), ("transactions", TRANSACTIONS), ("fees", FEES),
        ("refunds", REFUNDS), ("disputes", DISPUTES), ("marketing_spend", MARKETING),
        ("fraud_alerts", ALERTS), ("checkout_events", CHECKOUT),
    ):
        warehouse.upsert(table, rows)
    return warehouse
