"""Anomaly rules on hand-built warehouses: each rule fires with numbers worked out by hand, none
fires on steady data, ids are stable and recording alerts is idempotent.

The warehouses: on Wednesday 2026-03-18 at 10:30 UTC (time zone UTC, so hours read as they are)
the windows are the last complete hour 09:00-10:00 ("previous") and 10:00-10:30 ("current").
The eight Wednesdays before hold the same hours: 40 payments in 09:00-10:00 (36 succeeded, 4
failed, 2 scored 65 or more) and 20 in 10:00-10:30 (18, 2, 1), half through stripe and half
through adyen. Each test changes week 0 and works out what the rule must say.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from scipy import stats as sps

from analytics_lib.live.anomalies import (
    COLUMNS,
    AnomalyOptions,
    _Span,
    alert_id,
    customer_subject,
    detect_anomalies,
    recent_alerts,
    record_alerts,
)
from analytics_lib.metrics import MetricSession
from analytics_lib.warehouse import Warehouse

NOW = datetime(2026, 3, 18, 10, 30, tzinfo=UTC)  # a Wednesday
PREV = (datetime(2026, 3, 18, 9, tzinfo=UTC), datetime(2026, 3, 18, 10, tzinfo=UTC))
CUR = (datetime(2026, 3, 18, 10, tzinfo=UTC), NOW)
UTC_OPTIONS = AnomalyOptions(timezone="UTC")
STEADY_PREV = {"stripe": (20, 18, 1), "adyen": (20, 18, 1)}  # provider -> (payments, succeeded, high risk)
STEADY_CUR = {"stripe": (10, 9, 1), "adyen": (10, 9, 0)}


class Builder:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def payment(self, at: datetime, *, status: str = "completed", provider: str = "stripe", risk: float = 10.0,
                amount_minor: int = 4999, currency: str = "USD", customer: str | None = None,
                country: str = "TR", ip_country: str | None = None) -> str:
        tid = f"txn_{len(self.rows):06d}"
        ok = status == "completed"
        self.rows.append({
            "transaction_id": tid, "customer_id": customer or f"cus_{len(self.rows):06d}",
            "amount_minor": amount_minor, "currency": currency, "status": status,
            "outcome_type": "authorized" if ok else "issuer_declined", "payment_method": "card",
            "provider": provider, "created_at": at, "completed_at": at + timedelta(seconds=1) if ok else None,
            "failed_at": None if ok else at + timedelta(seconds=1), "failure_reason": None if ok else "card_declined",
            "attempt_number": 1, "billing_reason": "purchase", "country_code": country,
            "ip_country": ip_country or country, "risk_score": risk, "created_month": f"{at:%Y-%m}",
        })
        return tid

    def span(self, start: datetime, end: datetime, counts: dict[str, tuple[int, int, int]]) -> None:
        """Payments spread evenly over [start, end): per provider (n, succeeded, high risk)."""
        items = []
        for provider, (n, ok, high) in counts.items():
            items += [(provider, i < ok, i < high) for i in range(n)]
        step = (end - start) / max(len(items), 1)
        for i, (provider, ok, high) in enumerate(items):
            self.payment(start + step * (i + 0.5), status="completed" if ok else "failed", provider=provider,
                         risk=80.0 if high else 10.0)

    def week(self, k: int, prev: dict | None = None, cur: dict | None = None) -> None:
        shift = timedelta(weeks=k)
        self.span(PREV[0] - shift, PREV[1] - shift, STEADY_PREV if prev is None else prev)
        self.span(CUR[0] - shift, CUR[1] - shift, STEADY_CUR if cur is None else cur)

    def history(self, weeks: int = 8) -> Builder:
        self.payment(NOW - timedelta(weeks=weeks, days=1))  # the warehouse starts before the oldest week
        for k in range(1, weeks + 1):
            self.week(k)
        return self

    def write(self, tmp_path, fx: list[dict] | None = None) -> Warehouse:
        wh = Warehouse(tmp_path / "warehouse")
        wh.upsert("fx_rates", fx or [{"rate_date": NOW.date(), "currency": "EUR", "usd_per_unit": 1.10}])
        wh.upsert("transactions", self.rows)
        return wh


def detect(wh: Warehouse, now: datetime = NOW, **options) -> pd.DataFrame:
    with MetricSession.open(wh) as session:
        return detect_anomalies(session, now, options=AnomalyOptions(timezone="UTC", **options), currency="USD")


def only(frame: pd.DataFrame, alert_type: str, subject: str = "all") -> dict:
    rows = frame[(frame.alert_type == alert_type) & (frame.subject == subject)]
    assert len(rows) == 1, frame[["alert_type", "subject", "message"]]
    return rows.iloc[0].to_dict()


def test_steady_weeks_raise_no_alert(tmp_path):
    b = Builder().history()
    b.week(0)
    frame = detect(b.write(tmp_path))
    assert frame.empty
    assert list(frame.columns) == list(COLUMNS)


def test_volume_spike(tmp_path):
    b = Builder().history()
    b.week(0, prev={"stripe": (60, 54, 3), "adyen": (60, 54, 3)})  # 120 payments, same rates
    frame = detect(b.write(tmp_path))
    alert = only(frame, "volume_spike")
    # expected (8 * 40 + 1/2) / 8 = 40.0625; every week had 40, so no wobble beyond Poisson and
    # the p-value is the Poisson view's: NB(n = 320.5, p = 8/9) at or above 120
    assert alert["expected_value"] == pytest.approx(40.0625)
    assert alert["value"] == 120
    assert alert["confidence"] == pytest.approx(1 - sps.nbinom.sf(119, 320.5, 8 / 9))
    assert alert["severity"] == "medium"  # 120 / 40.06 = 3.0x: between 2x and 4x
    assert alert["unit"] == "payments"
    assert (alert["window_start"], alert["window_end"]) == PREV
    assert alert["alert_id"] == alert_id("volume_spike", "all", "2026-03-18T09:00")
    assert alert["message"].startswith("120 payments between 09:00 and 10:00 (UTC), 3.0x the 40.1 expected "
                                       "from the same hour on the last 8 Wednesdays")
    assert set(frame.alert_type) == {"volume_spike"}  # rates unchanged: nothing else


def test_volume_drop_of_an_outage(tmp_path):
    b = Builder().history()
    b.week(0, prev={})  # nothing between 09:00 and 10:00
    frame = detect(b.write(tmp_path))
    alert = only(frame, "volume_drop")
    assert alert["value"] == 0 and alert["expected_value"] == pytest.approx(40.0625)
    assert 1 - alert["confidence"] == pytest.approx((8 / 9) ** 320.5)  # P(X = 0) = 4.4e-17
    assert alert["severity"] == "critical"
    assert "100% below the 40.1 expected" in alert["message"]
    assert set(frame.alert_type) == {"volume_drop"}  # no payments: no rate to test


def test_success_rate_drop_overall_and_for_the_failing_provider(tmp_path):
    b = Builder().history()
    b.week(0, prev={"stripe": (20, 2, 1), "adyen": (20, 18, 1)})  # stripe fails 18 of 20
    frame = detect(b.write(tmp_path))
    overall = only(frame, "success_rate_drop")
    # 20 of 40 settled against (8 * 36 + 1/2) / (8 * 40 + 1) = 0.898754; identical weeks: tau2 = 0
    p0 = 288.5 / 321
    z = (0.5 - p0) / math.sqrt(p0 * (1 - p0) * (1 / 40 + 1 / 320))
    assert overall["value"] == 0.5 and overall["expected_value"] == pytest.approx(p0)
    assert overall["confidence"] == pytest.approx(1 - sps.norm.cdf(z))
    assert overall["severity"] == "critical"  # 39.9 points
    assert overall["message"].startswith("Success rate 50.0% (20 of 40 settled payments) between 09:00 and "
                                         "10:00 (UTC), 39.9 points below the 89.9%")
    stripe = only(frame, "success_rate_drop", "provider:stripe")
    p0s = 144.5 / 161  # (8 * 18 + 1/2) / (8 * 20 + 1)
    zs = (0.1 - p0s) / math.sqrt(p0s * (1 - p0s) * (1 / 20 + 1 / 160))
    assert zs == pytest.approx(-11.09, abs=0.01)
    assert stripe["value"] == pytest.approx(0.1) and stripe["confidence"] == pytest.approx(1 - sps.norm.cdf(zs))
    assert stripe["message"].startswith("stripe: success rate 10.0% (2 of 20 settled payments)")
    assert "provider:adyen" not in set(frame.subject)


def test_a_filter_scopes_the_rules(tmp_path):
    b = Builder().history()
    b.week(0, prev={"stripe": (20, 2, 1), "adyen": (20, 18, 1)})
    with MetricSession.open(b.write(tmp_path)) as session:
        frame = detect_anomalies(session, NOW, options=UTC_OPTIONS, filters={"provider": "adyen"})
    assert frame.empty  # adyen alone is steady


def test_pending_payments_are_compared_at_the_same_age(tmp_path):
    """A window whose newest payments are still pending is not a success-rate drop: a payment
    counts as succeeded or failed only once it was by the detection time, in every week."""
    b = Builder().history()
    b.week(0)
    wh = b.write(tmp_path)
    late = [dict(r) for r in b.rows if r["created_at"] >= CUR[0] and r["status"] == "completed"]
    for r in late[:12]:  # settled after NOW: pending as of NOW
        r["completed_at"] = NOW + timedelta(hours=2)
    wh.upsert("transactions", late[:12])
    assert detect(wh, rules=("success_rate_drop",)).empty


def test_fraud_score_spike(tmp_path):
    b = Builder().history()
    b.week(0, prev={"stripe": (20, 18, 6), "adyen": (20, 18, 6)})  # 12 of 40 scored 65+
    frame = detect(b.write(tmp_path))
    alert = only(frame, "fraud_score_spike")
    p0 = 16.5 / 321  # (8 * 2 + 1/2) / (8 * 40 + 1)
    z = (0.3 - p0) / math.sqrt(p0 * (1 - p0) * (1 / 40 + 1 / 320))
    assert z == pytest.approx(6.713, abs=1e-3)
    assert alert["value"] == pytest.approx(0.3) and alert["expected_value"] == pytest.approx(p0)
    assert alert["confidence"] == pytest.approx(1 - sps.norm.sf(z))
    assert alert["severity"] == "critical"  # 0.3 / 0.0514 = 5.8x
    assert alert["message"].startswith("30.0% of scored payments (12 of 40) had a risk score of 65 or more")


def test_high_value_payments_in_the_reporting_currency(tmp_path):
    b = Builder().history()
    b.week(0)
    usd = b.payment(CUR[0] + timedelta(minutes=5), amount_minor=1_250_000)  # 12,500.00 USD
    eur = b.payment(CUR[0] + timedelta(minutes=6), amount_minor=950_000, currency="EUR")  # 10,450 USD
    b.payment(CUR[0] + timedelta(minutes=7), amount_minor=900_000, currency="EUR")  # 9,900 USD: below
    frame = detect(b.write(tmp_path), rules=("high_value_payment",))
    assert len(frame) == 2
    big = only(frame, "high_value_payment", f"transaction:{usd}")
    # none of the 8 * 60 = 480 baseline payments (49.99 USD) was as large: p = 1 / 481
    assert big["value"] == 12_500 and big["expected_value"] == 10_000 and big["unit"] == "USD"
    assert big["confidence"] == pytest.approx(1 - 1 / 481)
    assert big["severity"] == "medium"  # 1.25x the threshold
    assert big["alert_id"] == alert_id("high_value_payment", f"transaction:{usd}", "")
    assert big["message"] == ("A 12,500.00 USD card payment (completed) at 10:05 (UTC), 1.2x the 10,000.00 USD "
                              "threshold; larger than 100.0% of the 480 payments in the same hour on the last "
                              "8 Wednesdays.")
    converted = only(frame, "high_value_payment", f"transaction:{eur}")
    assert converted["value"] == pytest.approx(10_450)  # 9,500 EUR x 1.10 USD per EUR
    # the threshold is an option, in the reporting currency
    assert len(detect(b.write(tmp_path), rules=("high_value_payment",), high_value_threshold=50_000)) == 0


def test_unusual_country(tmp_path):
    b = Builder().history()
    b.week(0)
    day = timedelta(days=1)
    for i in range(6):  # six payments from TR in the last weeks
        b.payment(NOW - (i + 2) * day, customer="cus_traveller")
    for i in range(3):  # too little history
        b.payment(NOW - (i + 2) * day, customer="cus_newish")
    for i, country in enumerate(["TR", "TR", "TR", "DE", "FR"]):  # pays from many countries
        b.payment(NOW - (i + 2) * day, customer="cus_global", ip_country=country)
    for i in range(6):  # six from TR, and a payment from TR again
        b.payment(NOW - (i + 2) * day, customer="cus_home")
    tx = b.payment(CUR[0] + timedelta(minutes=3), customer="cus_traveller", ip_country="DE", risk=70.0)
    b.payment(CUR[0] + timedelta(minutes=4), customer="cus_newish", ip_country="DE")
    b.payment(CUR[0] + timedelta(minutes=5), customer="cus_global", ip_country="US")
    b.payment(CUR[0] + timedelta(minutes=6), customer="cus_home")
    frame = detect(b.write(tmp_path), rules=("unusual_country",))
    assert len(frame) == 1
    alert = frame.iloc[0].to_dict()
    subject = customer_subject("cus_traveller")
    assert alert["subject"] == subject and "cus_traveller" not in alert["message"]
    # Good-Turing with add-one: 6 payments, none seen once -> P(new) = 1 / 7
    assert alert["confidence"] == pytest.approx(6 / 7)
    assert alert["value"] == 1 and alert["expected_value"] == pytest.approx(1 / 7, abs=1e-4)
    assert alert["severity"] == "medium"  # risk 70: at least the review threshold 65
    assert alert["alert_id"] == alert_id("unusual_country", subject, "DE")
    assert alert["message"] == (f"Customer {subject.split(':')[1]} paid from DE for the first time at 10:03 (UTC): "
                                "their 6 payments in the previous 90 days came from TR (6); risk score 70.")
    assert tx  # the payment exists; the alert never names personal data


def test_no_baseline_alerts_without_enough_history(tmp_path):
    b = Builder().history(weeks=3)  # fewer than min_baseline_weeks = 4
    b.week(0, prev={"stripe": (200, 20, 100)})
    frame = detect(b.write(tmp_path))
    assert not set(frame.alert_type) & {"volume_spike", "success_rate_drop", "fraud_score_spike"}
    frame = detect(b.write(tmp_path), min_baseline_weeks=3)
    assert {"volume_spike", "success_rate_drop", "fraud_score_spike"} <= set(frame.alert_type)


def test_ids_are_stable_and_recording_is_idempotent(tmp_path):
    b = Builder().history()
    b.week(0, prev={"stripe": (60, 54, 3), "adyen": (60, 54, 3)})
    wh = b.write(tmp_path)
    first = detect(wh)
    later = detect(wh, NOW + timedelta(minutes=5))  # the same hour, seen again
    assert only(first, "volume_spike")["alert_id"] == only(later, "volume_spike")["alert_id"]
    pd.testing.assert_frame_equal(first, detect(wh))  # same instant, same alerts

    result = record_alerts(wh, first)
    assert (result.inserted, result.updated) == (1, 0)
    version = wh.versions()["anomaly_alerts"]
    again = record_alerts(wh, first)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1)
    assert wh.versions()["anomaly_alerts"] == version  # nothing changed, no commit
    record_alerts(wh, later)
    record_alerts(wh, first)  # an older detection recorded late does not win
    with wh.snapshot() as snap:
        stored = snap.sql("SELECT * FROM anomaly_alerts")
    assert len(stored) == 1
    row = stored.iloc[0]
    assert row.detected_at == NOW  # the first detection
    assert row.window_end == PREV[1] and row.alert_month == "2026-03"
    with MetricSession.open(wh) as session:
        recent = recent_alerts(session, NOW + timedelta(minutes=5))
    assert list(recent.alert_id) == [only(first, "volume_spike")["alert_id"]]


def test_record_alerts_of_nothing_writes_nothing(tmp_path):
    wh = Warehouse(tmp_path / "warehouse")
    assert record_alerts(wh, pd.DataFrame(columns=list(COLUMNS))).rows == 0
    assert not wh.exists("anomaly_alerts")


def test_the_current_hour_is_tested_once_it_is_long_enough(tmp_path):
    b = Builder().history()
    b.week(0, cur={"stripe": (60, 54, 3), "adyen": (60, 54, 3)})  # 120 in 10:00-10:30 (expected 20)
    wh = b.write(tmp_path)
    alert = only(detect(wh), "volume_spike")
    assert (alert["window_start"], alert["window_end"]) == CUR
    assert alert["alert_id"] == alert_id("volume_spike", "all", "2026-03-18T10:00")
    assert detect(wh, min_window_minutes=31).empty  # 30 minutes are not enough


def test_baseline_weeks_keep_the_local_wall_clock_across_dst():
    berlin = ZoneInfo("Europe/Berlin")
    span = _Span("previous", datetime(2026, 4, 1, 8, 0, tzinfo=UTC), datetime(2026, 4, 1, 9, 0, tzinfo=UTC))
    start, end = span.shifted(1, berlin)  # 10:00 CEST -> 10:00 CET a week earlier
    assert start == datetime(2026, 3, 25, 9, 0, tzinfo=UTC) and end - start == timedelta(hours=1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rules": ("volume",)}, "unknown anomaly rule 'volume'"),
    ({"baseline_weeks": 0}, "baseline_weeks"),
    ({"alpha": 0.9}, "alpha"),
    ({"high_value_threshold": -5}, "high_value_threshold"),
    ({"timezone": "Mars/Base"}, "unknown time zone"),
])
def test_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AnomalyOptions(**kwargs)


def test_now_must_be_an_instant(tmp_path):
    wh = Builder().history(weeks=1).write(tmp_path)
    with MetricSession.open(wh) as session, pytest.raises(ValueError, match="timezone-aware"):
        detect_anomalies(session, datetime(2026, 3, 18, 10, 30))
