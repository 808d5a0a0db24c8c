"""Property tests of the metric layer on small random warehouses (hypothesis).

Every example writes a random warehouse with ``Warehouse.upsert`` into its own temporary
directory, opens a :class:`MetricSession` on it and checks, through the public API functions,
identities that must hold for any data: parts add up to their totals, net revenue is gross minus
its deductions, filters only ever shrink results, MRR movements explain the change of MRR, hostile
filter values are inert. Where a number has a simple definition it is also recomputed here from
the generated rows (an "oracle": plain Python following the definitions in the SQL headers), so
a wrong conversion day, a period-boundary slip or a lost row shows up as a counterexample.

The generated data: payments in USD, EUR, TRY and JPY (exponent 0) around the period, every
status, outcomes consistent with the status, refunds never above their payment (partial and
several per payment, some pending or failed), disputes in every state, fee lines, daily FX rates
that change from day to day (so converting at the wrong day's rate is visible), and
subscription histories (trial, start, upgrade, downgrade, cancel now or at period end,
reactivate) over monthly and annual plans with permanent discounts.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analytics_lib import metrics as m
from analytics_lib.metrics import (
    FILTER_COLUMNS,
    Filters,
    MetricError,
    MetricOptions,
    MetricSession,
    Period,
)
from analytics_lib.metrics.engine import load_queries
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.currency import CURRENCY_EXPONENTS

# -- domains ----------------------------------------------------------------------------------

CURRENCIES = ("USD", "EUR", "TRY", "JPY")
REPORTING = ("USD", "EUR", "TRY")
#: USD per unit on a "base" day; every day's rate wiggles around it (see usd_per_unit)
BASE_RATES = {"EUR": 1.08, "TRY": 0.031, "JPY": 0.0064, "GBP": 1.27}
FX_FIRST, FX_LAST = date(2023, 12, 1), date(2025, 6, 30)
SUCCESSFUL = ("completed", "refunded", "partially_refunded", "disputed")
STATUSES = (*SUCCESSFUL, "failed", "pending", "canceled")
METHODS = ("card", "paypal", "apple_pay", "bank_transfer")
PROVIDERS = ("stripe", "adyen", "iyzico")
COUNTRIES = ("TR", "US", "DE", "GB")
PLAN_TYPES = ("course", "monthly", "annual", None)
PRODUCTS = ("course_py", "course_ds", "plan_basic", "plan_annual", None)
CAMPAIGNS = ("cmp_spring", "cmp_brand", None)
DISCOUNT_CODES = ("SPRING10", "WELCOME", None)
FAILURE_REASONS = ("insufficient_funds", "expired_card", "do_not_honor", "fraudulent", None)
CUSTOMERS = tuple(f"cus_{i}" for i in range(6))

#: values a filter may take: the domain, lower-case spellings (currency and country are
#: normalised to upper case), padding (stripped), and values that match nothing
FILTER_DOMAIN: dict[str, tuple[str, ...]] = {
    "currency": (*CURRENCIES, "usd", " eur ", "GBP"),
    "country": (*COUNTRIES, "tr", "FR"),
    "payment_method": (*METHODS, "CARD", "wire"),
    "provider": (*PROVIDERS, " stripe", "braintree"),
    "plan_type": ("course", "monthly", "annual", "weekly"),
    "product": ("course_py", "course_ds", "plan_basic", "plan_annual", "(none)"),
    "campaign": ("cmp_spring", "cmp_brand", "cmp_none"),
    "discount_code": ("SPRING10", "WELCOME", "spring10"),
}
assert set(FILTER_DOMAIN) == set(FILTER_COLUMNS), "a new filter needs a domain here"

PERIODS = (
    Period.month(2024, 5, "UTC"),
    Period.month(2024, 5, "Europe/Istanbul"),  # local midnight = 21:00 UTC the day before
    Period.month(2024, 3, "Europe/London"),  # clocks go forward on 31 March
    Period.between("2024-04-28", "2024-05-04", "America/New_York"),
)
MARGIN = timedelta(days=3)
DAY_S = 86_400

REL = 1e-6  # relative tolerance for sums of money taken in a different order


def close(a: float | None, b: float | None, rel: float = REL) -> bool:
    a = 0.0 if a is None else float(a)
    b = 0.0 if b is None else float(b)
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)


def usd_per_unit(currency: str, day: date) -> float:
    if currency == "USD":
        return 1.0
    i = sorted(BASE_RATES).index(currency)
    return BASE_RATES[currency] * (1 + 0.01 * ((day.toordinal() * (i + 3)) % 7))


def to_reporting(minor: int, currency: str, at: datetime, rc: str) -> float:
    """Minor units of ``currency`` -> major units of ``rc`` at the rate of ``at``'s UTC day."""
    major = minor / float(10 ** CURRENCY_EXPONENTS[currency])
    if currency == rc:
        return major
    day = at.astimezone(UTC).date()
    return major * (usd_per_unit(currency, day) / usd_per_unit(rc, day))


FX_ROWS = [
    {
        "rate_date": FX_FIRST + timedelta(days=k),
        "currency": c,
        "usd_per_unit": usd_per_unit(c, FX_FIRST + timedelta(days=k)),
    }
    for k in range((FX_LAST - FX_FIRST).days + 1)
    for c in sorted(BASE_RATES)
]


# -- generated data sets ----------------------------------------------------------------------


@dataclass
class Dataset:
    period: Period
    currency: str
    transactions: list[dict] = field(default_factory=list)
    refunds: list[dict] = field(default_factory=list)
    disputes: list[dict] = field(default_factory=list)
    fees: list[dict] = field(default_factory=list)
    customers: list[dict] = field(default_factory=list)
    subscriptions: list[dict] = field(default_factory=list)
    subscription_events: list[dict] = field(default_factory=list)

    def __repr__(self) -> str:  # the falsifying example hypothesis prints
        tables = ", ".join(f"{k}={len(v)}" for k, v in self.tables().items() if v)
        return (
            f"Dataset({self.period.label} {self.period.timezone} in {self.currency}: {tables}) "
            + repr(self.tables())
        )

    def tables(self) -> dict[str, list[dict]]:
        return {
            "customers": self.customers,
            "subscriptions": self.subscriptions,
            "subscription_events": self.subscription_events,
            "transactions": self.transactions,
            "fees": self.fees,
            "refunds": self.refunds,
            "disputes": self.disputes,
        }


def durations(max_days: int, min_seconds: int = 0) -> st.SearchStrategy[timedelta]:
    """Up to ``max_days``, spread evenly over days and hours (one wide ``st.integers`` would
    mostly produce tiny values)."""
    return st.builds(
        lambda d, h, s: max(timedelta(days=d, hours=h, seconds=s), timedelta(seconds=min_seconds)),
        st.integers(0, max_days - 1),
        st.integers(0, 23),
        st.integers(0, 3599),
    )


def instants(period: Period) -> st.SearchStrategy[datetime]:
    """Instants around the period, with extra weight on the exact local-midnight boundaries."""
    lo = period.start_utc - MARGIN
    days = (period.end_utc + MARGIN - lo).days + 1
    anywhere = durations(days).map(lambda d: lo + d)
    edges = st.tuples(
        st.sampled_from([period.start_utc, period.end_utc]),
        st.sampled_from([-1_000_000, -1, 0, 1, 999_999]),
    ).map(lambda p: p[0] + timedelta(microseconds=p[1]))
    return st.one_of(anywhere, anywhere, anywhere, edges)


def payment_row(
    tid: str,
    customer: str,
    amount: int,
    currency: str,
    status: str,
    created: datetime,
    **overrides: Any,
) -> dict:
    success = status in SUCCESSFUL
    row = {
        "transaction_id": tid,
        "customer_id": customer,
        "amount_minor": amount,
        "currency": currency,
        "status": status,
        "outcome_type": "authorized"
        if success
        else "pending"
        if status in ("pending", "canceled")
        else "issuer_declined",
        "payment_method": "card",
        "provider": "stripe",
        "created_at": created,
        "completed_at": created + timedelta(milliseconds=800) if success else None,
        "failed_at": created + timedelta(seconds=1) if status == "failed" else None,
        "failure_reason": None,
        "attempt_number": 1,
        "billing_reason": "purchase",
        "country_code": "TR",
        "fraud_indicators": [],
        "created_month": f"{created.astimezone(UTC):%Y-%m}",
    }
    row.update(overrides)
    return row


@st.composite
def payments_data(draw: st.DrawFn, period: Period | None = None, max_payments: int = 24) -> Dataset:
    period = period or draw(st.sampled_from(PERIODS))
    data = Dataset(period, draw(st.sampled_from(REPORTING)))
    for i in range(draw(st.integers(0, max_payments))):
        tid = f"tx_{i}"
        status = draw(st.sampled_from(STATUSES))
        currency = draw(st.sampled_from(CURRENCIES))
        amount = draw(st.integers(1, 2_000_000))
        created = draw(instants(period))
        customer = draw(st.sampled_from(CUSTOMERS))
        outcome = None
        if status == "failed":
            outcome = draw(st.sampled_from(["issuer_declined", "blocked", "provider_error"]))
        data.transactions.append(
            payment_row(
                tid,
                customer,
                amount,
                currency,
                status,
                created,
                **({"outcome_type": outcome} if outcome else {}),
                payment_method=draw(st.sampled_from(METHODS)),
                provider=draw(st.sampled_from(PROVIDERS)),
                country_code=draw(st.sampled_from(COUNTRIES)),
                failure_reason=draw(st.sampled_from(FAILURE_REASONS))
                if status == "failed"
                else None,
                plan_type=draw(st.sampled_from(PLAN_TYPES)),
                product_id=draw(st.sampled_from(PRODUCTS)),
                campaign_id=draw(st.sampled_from(CAMPAIGNS)),
                discount_code=draw(st.sampled_from(DISCOUNT_CODES)),
                risk_score=draw(st.one_of(st.none(), st.floats(0, 100, allow_nan=False))),
            )
        )
        if status in SUCCESSFUL:
            left = amount  # refunds of one payment never add up to more than the payment
            for j in range(draw(st.integers(0, 2))):
                if left <= 0:
                    break
                part = draw(st.integers(1, left))
                left -= part
                data.refunds.append(
                    {
                        "refund_id": f"{tid}:re{j}",
                        "transaction_id": tid,
                        "customer_id": customer,
                        "amount_minor": part,
                        "currency": currency,
                        "status": draw(
                            st.sampled_from(["succeeded", "succeeded", "pending", "failed"])
                        ),
                        "reason": "requested_by_customer",
                        "created_at": created + draw(durations(20)),
                    }
                )
            if draw(st.integers(0, 3)) == 0:
                status_d = draw(st.sampled_from(["needs_response", "under_review", "won", "lost"]))
                data.disputes.append(
                    {
                        "dispute_id": f"{tid}:dp",
                        "transaction_id": tid,
                        "customer_id": customer,
                        "amount_minor": draw(st.integers(1, amount)),
                        "currency": currency,
                        "reason": "fraudulent",
                        "status": status_d,
                        "outcome": status_d if status_d in ("won", "lost") else None,
                        "created_at": created + draw(durations(20)),
                    }
                )
        for j in range(draw(st.integers(0, 2))):
            data.fees.append(
                {
                    "fee_id": f"{tid}:fee{j}",
                    "transaction_id": tid,
                    "fee_type": draw(st.sampled_from(["processing", "fixed", "fx", "dispute"])),
                    "amount_minor": draw(st.integers(1, max(1, amount // 10))),
                    "currency": currency,
                    "provider": data.transactions[-1]["provider"],
                    "created_at": created + draw(durations(4)),
                }
            )
    return data


PLANS = {"plan_basic": 1, "plan_pro": 1, "plan_annual": 12}
STEPS = (
    "trial_start",
    "start",
    "upgrade",
    "downgrade",
    "cancel_now",
    "cancel_at_end",
    "reactivate",
)
SUB_CUSTOMERS = ("k0", "k1", "k2", "k3")
DISCOUNTS = ((0.0, None), (10.0, "SPRING10"), (50.0, "HALF"))
MRR_PERIODS = (
    Period.quarter(2024, 2, "UTC"),
    Period.between("2024-03-15", "2024-06-10", "Europe/Istanbul"),  # partial first and last month
    Period.month(2024, 4, "Europe/London"),
)
EVENTS_FROM = datetime(2024, 1, 1, tzinfo=UTC)


def subscription_event(
    sub: str,
    customer: str,
    n: int,
    kind: str,
    occurred: datetime,
    terms: dict,
    effective: datetime | None = None,
    previous: str | None = None,
) -> dict:
    """One subscription_events row carrying the subscription's terms after the event."""
    return {
        "event_id": f"{sub}:{n}",
        "subscription_id": sub,
        "customer_id": customer,
        "event_type": kind,
        "occurred_at": occurred,
        "effective_at": effective or occurred,
        "product_id": terms["product"],
        "previous_product_id": previous,
        "price_minor": terms["price"],
        "currency": terms["currency"],
        "billing_interval_months": PLANS[terms["product"]],
        "discount_percent": terms["discount"],
        "reason": "voluntary" if kind == "cancel" else None,
    }


@st.composite
def subscription_data(
    draw: st.DrawFn, early_reactivation: bool = False, max_subscriptions: int = 6
) -> Dataset:
    """Random subscription histories.

    Each subscription follows a valid life: an optional trial, a start, plan changes while
    active, a cancellation (immediate, or at the end of the paid period) and possibly a
    reactivation. Without ``early_reactivation`` a reactivation comes after the cancellation has
    taken effect. With it, a customer may also take back a pending cancellation before it takes
    effect (what the synthetic generator does), which under ``mrr_cancel_at="period_end"`` means
    the cancellation never takes effect.
    """
    data = Dataset(draw(st.sampled_from(MRR_PERIODS)), draw(st.sampled_from(REPORTING)))
    countries: dict[str, str] = {}
    for i in range(draw(st.integers(0, max_subscriptions))):
        sub = f"sub_{i}"
        customer = draw(st.sampled_from(SUB_CUSTOMERS))
        countries.setdefault(customer, draw(st.sampled_from(COUNTRIES)))
        currency = draw(st.sampled_from(("USD", "EUR", "TRY")))
        discount, code = draw(st.sampled_from(DISCOUNTS))
        terms = {
            "product": draw(st.sampled_from(sorted(PLANS))),
            "price": draw(st.integers(100, 60_000)),
            "currency": currency,
            "discount": discount,
        }
        t = EVENTS_FROM + draw(durations(150))
        state, ends_at, cancelled_at = "none", None, None
        events: list[dict] = []
        for step in draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=7)):
            gap = draw(durations(40, min_seconds=1))
            if step == "trial_start" and state == "none":
                t += gap
                events.append(
                    subscription_event(sub, customer, len(events), "trial_start", t, terms)
                )
                state = "trial"
            elif step == "start" and state in ("none", "trial"):
                t += gap
                events.append(subscription_event(sub, customer, len(events), "start", t, terms))
                state = "active"
            elif step in ("upgrade", "downgrade") and state == "active":
                t += gap
                previous = terms["product"]
                old_mrr = terms["price"] / PLANS[previous]
                terms = {
                    **terms,
                    "product": draw(st.sampled_from(sorted(PLANS))),
                    "price": draw(st.integers(100, 60_000)),
                }
                kind = (
                    "upgrade"
                    if terms["price"] / PLANS[terms["product"]] >= old_mrr
                    else "downgrade"
                )
                events.append(
                    subscription_event(
                        sub, customer, len(events), kind, t, terms, previous=previous
                    )
                )
            elif step in ("cancel_now", "cancel_at_end") and state in ("active", "trial"):
                t += gap
                cancelled_at = t
                ends_at = t if step == "cancel_now" else t + draw(durations(35, min_seconds=2))
                events.append(
                    subscription_event(
                        sub, customer, len(events), "cancel", t, terms, effective=ends_at
                    )
                )
                state = "cancelled"
            elif step == "reactivate" and state == "cancelled":
                assert ends_at is not None and cancelled_at is not None
                if (
                    early_reactivation
                    and ends_at - cancelled_at > timedelta(seconds=1)
                    and draw(st.booleans())
                ):
                    span = int((ends_at - cancelled_at).total_seconds())
                    t = cancelled_at + timedelta(
                        seconds=max(1, span * draw(st.integers(1, 99)) // 100)
                    )
                else:
                    t = max(t, ends_at) + gap
                events.append(
                    subscription_event(sub, customer, len(events), "reactivate", t, terms)
                )
                state = "active"
        if not events:
            continue
        data.subscription_events += events
        data.subscriptions.append(
            {
                "subscription_id": sub,
                "customer_id": customer,
                "product_id": terms["product"],
                "status": {"trial": "trialing", "cancelled": "canceled"}.get(state, "active"),
                "price_minor": terms["price"],
                "currency": currency,
                "billing_interval_months": PLANS[terms["product"]],
                "discount_percent": discount,
                "discount_code": code,
                "started_at": events[0]["occurred_at"],
                "cancel_at_period_end": False,
            }
        )
    data.customers = [
        {"customer_id": c, "country_code": k, "is_guest": False}
        for c, k in sorted(countries.items())
    ]
    return data


# -- running the metric layer ----------------------------------------------------------------


def build(data: Dataset, location: Path) -> Warehouse:
    wh = Warehouse(location)
    wh.upsert("fx_rates", FX_ROWS)
    for name, rows in data.tables().items():
        if rows:
            wh.upsert(name, rows)
    return wh


@contextmanager
def session_on(data: Dataset) -> Iterator[MetricSession]:
    with (
        tempfile.TemporaryDirectory(prefix="metric-props-") as tmp,
        MetricSession.open(build(data, Path(tmp) / "warehouse")) as session,
    ):
        yield session


PROPERTY_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the oracle: definitions of the SQL headers, recomputed in Python ----------------------------


def normalised(filters: dict[str, Any]) -> dict[str, set[str]]:
    """What ``Filters.of`` makes of a mapping: stripped, blank values dropped, codes upper-cased."""
    out: dict[str, set[str]] = {}
    for name, values in filters.items():
        items = [values] if isinstance(values, str) else list(values)
        items = [v.strip() for v in items if v.strip()]
        if name in ("currency", "country"):
            items = [v.upper() for v in items]
        if items:
            out[name] = set(items)
    return out


def passes(row: dict, filters: dict[str, set[str]]) -> bool:
    return all(row.get(FILTER_COLUMNS[name]) in values for name, values in filters.items())


def expected(data: Dataset, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    f = normalised(filters or {})
    p, rc = data.period, data.currency

    def inside(at: datetime) -> bool:
        return p.start_utc <= at < p.end_utc

    kept = {t["transaction_id"]: t for t in data.transactions if passes(t, f)}
    pay = [t for t in kept.values() if inside(t["created_at"])]
    ok = [t for t in pay if t["status"] in SUCCESSFUL]
    refunds = [
        r
        for r in data.refunds
        if r["transaction_id"] in kept and r["status"] == "succeeded" and inside(r["created_at"])
    ]
    disputes = [d for d in data.disputes if d["transaction_id"] in kept and inside(d["created_at"])]
    fees = [e for e in data.fees if e["transaction_id"] in kept and inside(e["created_at"])]

    def money(rows: list[dict]) -> float:
        return sum(
            to_reporting(r["amount_minor"], r["currency"], r["created_at"], rc) for r in rows
        )

    # customers: first successful payment ever (after filters, up to the period end)
    first: dict[str, datetime] = {}
    for t in kept.values():
        if t["status"] in SUCCESSFUL and t["created_at"] < p.end_utc:
            first[t["customer_id"]] = min(
                first.get(t["customer_id"], t["created_at"]), t["created_at"]
            )
    paying = {t["customer_id"] for t in ok}
    return {
        "new_customers": sum(first[c] >= p.start_utc for c in paying),
        "returning_customers": sum(first[c] < p.start_utc for c in paying),
        "customers_ever": len(first),
        "total_transactions": len(pay),
        "successful_transactions": len(ok),
        "failed_transactions": sum(t["status"] == "failed" for t in pay),
        "other_transactions": sum(t["status"] in ("pending", "canceled") for t in pay),
        "authorized_attempts": sum(t["outcome_type"] == "authorized" for t in pay),
        "issuer_attempts": sum(t["outcome_type"] in ("authorized", "issuer_declined") for t in pay),
        "blocked_transactions": sum(t["outcome_type"] == "blocked" for t in pay),
        "total_volume": money(ok),
        "gross_revenue": money(ok),
        "refunds": money(refunds),
        "refund_count": len(refunds),
        "chargebacks": money([d for d in disputes if d["status"] != "won"]),
        "disputed_amount": money(disputes),
        "dispute_count": len(disputes),
        "fees": money(fees),
        "paying_customers": len({t["customer_id"] for t in ok}),
        "by_currency_original": {
            c: sum(t["amount_minor"] for t in ok if t["currency"] == c)
            / 10 ** CURRENCY_EXPONENTS[c]
            for c in {t["currency"] for t in ok}
        },
    }


COUNTS = (
    "total_transactions",
    "successful_transactions",
    "failed_transactions",
    "other_transactions",
    "authorized_attempts",
    "issuer_attempts",
    "blocked_transactions",
    "refund_count",
    "dispute_count",
    "paying_customers",
)
MONEY = ("total_volume", "gross_revenue", "refunds", "chargebacks", "disputed_amount", "fees")


def observed(
    session: MetricSession, data: Dataset, filters: dict[str, Any] | None = None
) -> dict[str, Any]:
    t = m.transaction_analytics(session, data.period, filters, data.currency).summary
    r = m.revenue_analytics(session, data.period, filters, data.currency, with_growth=False).summary
    c = m.customer_analytics(session, data.period, filters, data.currency).summary
    return {
        **t,
        **r,
        **{
            k: c[k]
            for k in ("total_customers", "new_customers", "returning_customers", "customers_ever")
        },
    }


def assert_sums(frame: pd.DataFrame, column: str, total: float, what: str) -> None:
    got = float(frame[column].sum()) if len(frame) else 0.0
    assert close(got, total), f"{what}: sum of {column} = {got}, total {total}"


# -- 1. transactions: parts add up ----------------------------------------------------------------


@PROPERTY_SETTINGS
@given(data=payments_data())
def test_transaction_breakdowns_add_up_to_the_summary(data: Dataset) -> None:
    exp = expected(data)
    with session_on(data) as session:
        t = m.transaction_analytics(session, data.period, currency=data.currency)
        s = t.summary
        for key in (
            "total_transactions",
            "successful_transactions",
            "failed_transactions",
            "other_transactions",
            "authorized_attempts",
            "issuer_attempts",
            "blocked_transactions",
        ):
            assert s[key] == exp[key], key
        assert close(s["total_volume"], exp["total_volume"])
        total = s["total_transactions"]
        assert (
            s["successful_transactions"] + s["failed_transactions"] + s["other_transactions"]
            == total
        )

        for name in ("by_payment_method", "by_provider"):
            frame = t.tables[name]
            assert int(frame["transactions"].sum()) == total, name
            assert int(frame["successful"].sum()) == s["successful_transactions"], name
            assert int(frame["failed"].sum()) == s["failed_transactions"], name
            assert_sums(frame, "volume", s["total_volume"], name)
        countries = m.geography(session, data.period, currency=data.currency).tables["countries"]
        assert int(countries["transactions"].sum()) == total
        assert int(countries["successful"].sum()) == s["successful_transactions"]
        assert_sums(countries, "volume", s["total_volume"], "countries")

        reasons = t.tables["failure_reasons"]
        assert int(reasons["failures"].sum()) == s["failed_transactions"]
        for dim in m.api.FAILURE_DIMENSIONS:
            frame = t.tables[f"failures_by_{dim}"]
            assert int(frame["transactions"].sum()) == total, dim
            assert int(frame["failed"].sum()) == s["failed_transactions"], dim

        for grain in m.GRAINS:
            series = m.transaction_analytics(
                session, data.period, currency=data.currency, grain=grain
            ).tables["time_series"]
            assert int(series["transactions"].sum()) == total, grain
            assert int(series["successful"].sum()) == s["successful_transactions"], grain
            assert int(series["failed"].sum()) == s["failed_transactions"], grain
            assert_sums(series, "volume", s["total_volume"], f"time_series by {grain}")
            assert series["bucket"].is_monotonic_increasing and series["bucket"].is_unique, grain


# -- 2. revenue: gross to net ---------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(data=payments_data())
def test_revenue_gross_to_net_and_breakdowns(data: Dataset) -> None:
    exp = expected(data)
    with session_on(data) as session:
        t = m.transaction_analytics(session, data.period, currency=data.currency).summary
        rev = m.revenue_analytics(session, data.period, currency=data.currency)
        r = rev.summary
        assert close(r["gross_revenue"], t["total_volume"], rel=1e-12)
        assert math.isclose(
            r["net_revenue"],
            r["gross_revenue"] - r["refunds"] - r["chargebacks"] - r["fees"],
            rel_tol=1e-12,
            abs_tol=1e-9,
        )
        for key in ("gross_revenue", "refunds", "chargebacks", "disputed_amount", "fees"):
            assert close(r[key], exp[key]), (key, r[key], exp[key])
        for key in ("refund_count", "dispute_count", "paying_customers"):
            assert r[key] == exp[key], key
        assert r["successful_payments"] == t["successful_transactions"]
        assert close(r["subscription_revenue"] + r["one_off_revenue"], r["gross_revenue"])
        for name in ("by_product", "by_currency", "by_plan_type"):
            assert_sums(rev.tables[name], "revenue", r["gross_revenue"], name)
            assert int(rev.tables[name]["payments"].sum()) == r["successful_payments"], name
        original = rev.tables["by_currency"].set_index("currency")["revenue_original"].to_dict()
        assert original.keys() == exp["by_currency_original"].keys()
        for currency, amount in exp["by_currency_original"].items():
            assert close(original[currency], amount), currency
        daily = rev.tables["daily"]
        assert len(daily) == data.period.days
        for column, key in (
            ("revenue", "gross_revenue"),
            ("refunds", "refunds"),
            ("chargebacks", "chargebacks"),
            ("fees", "fees"),
            ("net_revenue", "net_revenue"),
        ):
            assert_sums(daily, column, r[key], f"daily {column}")
        assert int(daily["transactions"].sum()) == t["total_transactions"]

        c = m.customer_analytics(session, data.period, currency=data.currency).summary
        assert c["total_customers"] == r["paying_customers"]
        assert c["new_customers"] + c["returning_customers"] == c["total_customers"]
        for key in ("new_customers", "returning_customers", "customers_ever"):
            assert c[key] == exp[key], key


def _provider_example() -> Dataset:
    """A provider whose payment is before the period but whose refund and fee fall inside it."""
    p = Period.month(2024, 5, "UTC")
    data = Dataset(p, "USD")
    data.transactions = [
        payment_row(
            "tx_a",
            "cus_0",
            1000,
            "USD",
            "completed",
            datetime(2024, 4, 28, tzinfo=UTC),
            provider="adyen",
        ),
        payment_row(
            "tx_b",
            "cus_1",
            1000,
            "USD",
            "completed",
            datetime(2024, 5, 3, tzinfo=UTC),
            provider="stripe",
        ),
    ]
    data.refunds = [
        {
            "refund_id": "re_a",
            "transaction_id": "tx_a",
            "customer_id": "cus_0",
            "amount_minor": 400,
            "currency": "USD",
            "status": "succeeded",
            "created_at": datetime(2024, 5, 2, tzinfo=UTC),
        }
    ]
    data.fees = [
        {
            "fee_id": "fee_a",
            "transaction_id": "tx_a",
            "fee_type": "dispute",
            "amount_minor": 1500,
            "currency": "USD",
            "provider": "adyen",
            "created_at": datetime(2024, 5, 2, tzinfo=UTC),
        }
    ]
    return data


@PROPERTY_SETTINGS
@given(data=payments_data())
@example(data=_provider_example())
def test_performance_providers_add_up_to_revenue(data: Dataset) -> None:
    with session_on(data) as session:
        r = m.revenue_analytics(
            session, data.period, currency=data.currency, with_growth=False
        ).summary
        providers = m.performance(session, data.period, currency=data.currency).tables["providers"]
        assert_sums(providers, "gross_revenue", r["gross_revenue"], "providers")
        assert_sums(providers, "fees", r["fees"], "providers")
        assert_sums(providers, "net_revenue", r["net_revenue"], "providers")


# -- 3. filters only ever shrink ---------------------------------------------------------------------


def filter_values(name: str) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(FILTER_DOMAIN[name]), min_size=1, max_size=3)


@PROPERTY_SETTINGS
@given(data=payments_data(), choice=st.data())
def test_filters_only_shrink(data: Dataset, choice: st.DataObject) -> None:
    names = sorted(FILTER_COLUMNS)
    first = choice.draw(st.sampled_from(names), label="first filter")
    second = choice.draw(st.sampled_from([n for n in names if n != first]), label="second filter")
    f1 = {first: choice.draw(filter_values(first), label=first)}
    f2 = {second: choice.draw(filter_values(second), label=second)}
    with session_on(data) as session:
        results = {
            label: observed(session, data, f)
            for label, f in (("none", None), ("first", f1), ("second", f2), ("both", {**f1, **f2}))
        }
        for label, f in (("first", f1), ("second", f2), ("both", {**f1, **f2})):
            exp = expected(data, f)  # the filtered figures are also right, not just smaller
            for key in (*COUNTS, "new_customers", "returning_customers", "customers_ever"):
                assert results[label][key] == exp[key], (label, key)
            for key in MONEY:
                assert close(results[label][key], exp[key]), (label, key)
        # new_customers is not in this list on purpose: "new" is relative to the filtered history,
        # so a customer who bought a course before and a plan now is new under product=plan
        for smaller, larger in (
            ("first", "none"),
            ("second", "none"),
            ("both", "first"),
            ("both", "second"),
        ):
            for key in (*COUNTS, "total_customers", "customers_ever"):
                assert results[smaller][key] <= results[larger][key], (smaller, larger, key)
            for key in MONEY:
                assert results[smaller][key] <= results[larger][key] * (1 + 1e-9) + 1e-9, (
                    smaller,
                    larger,
                    key,
                )


# -- 4. MRR ----------------------------------------------------------------------------------------

MRR_OPTIONS = [
    MetricOptions(mrr_cancel_at=c, mrr_same_interval=s)
    for c in ("period_end", "request")
    for s in ("count", "ignore")
]
MOVEMENTS = ("new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "reactivation_mrr")


def event_mrr(event: dict, rc: str) -> float:
    if event["event_type"] in ("trial_start", "cancel"):
        return 0.0
    factor = 1.0
    if event["currency"] != rc:
        day = event["occurred_at"].astimezone(UTC).date()
        factor = usd_per_unit(event["currency"], day) / usd_per_unit(rc, day)
    scale = 10 ** CURRENCY_EXPONENTS[event["currency"]]
    return round(
        event["price_minor"]
        / scale
        * (1 - event["discount_percent"] / 100.0)
        / event["billing_interval_months"]
        * factor,
        6,
    )


def mrr_replay(
    data: Dataset, at: datetime, cancel_at: str, filters: dict[str, Any] | None = None
) -> dict[str, float]:
    """Customer -> MRR in force at ``at``: per subscription, the terms of its latest event that
    took effect strictly before ``at`` (a cancellation takes effect when access ends, or when it
    was asked for under ``request``; under ``period_end`` a cancellation that the customer took
    back before it took effect never takes effect)."""
    f = normalised(filters or {})
    country = {c["customer_id"]: c["country_code"] for c in data.customers}
    code = {s["subscription_id"]: s["discount_code"] for s in data.subscriptions}
    revoked = set()
    if cancel_at == "period_end":  # a cancellation taken back before it took effect never does
        for c in data.subscription_events:
            if c["event_type"] == "cancel" and any(
                e["subscription_id"] == c["subscription_id"]
                and e["event_type"] != "cancel"
                and c["occurred_at"] < e["occurred_at"] < c["effective_at"]
                for e in data.subscription_events
            ):
                revoked.add(c["event_id"])
    latest: dict[str, tuple[datetime, dict]] = {}
    for e in data.subscription_events:
        if e["event_id"] in revoked:
            continue
        if "currency" in f and e["currency"] not in f["currency"]:
            continue
        if "country" in f and country.get(e["customer_id"]) not in f["country"]:
            continue
        if "discount_code" in f and code.get(e["subscription_id"]) not in f["discount_code"]:
            continue
        ts = (
            e["occurred_at"]
            if (e["event_type"] == "cancel" and cancel_at == "request")
            else e["effective_at"]
        )
        if ts < at and (e["subscription_id"] not in latest or ts > latest[e["subscription_id"]][0]):
            latest[e["subscription_id"]] = (ts, e)
    out: dict[str, float] = {}
    for _ts, e in latest.values():
        out[e["customer_id"]] = out.get(e["customer_id"], 0.0) + event_mrr(e, data.currency)
    return {c: round(v, 6) for c, v in out.items()}


def month_bounds(period: Period) -> list[tuple[str, datetime, datetime]]:
    """The calendar months the period touches, cut to the period, as UTC instants."""
    tz = ZoneInfo(period.timezone)
    out, first = [], period.start.replace(day=1)
    while first < period.end:
        nxt = (first + timedelta(days=32)).replace(day=1)
        lo, hi = max(first, period.start), min(nxt, period.end)
        out.append(
            (
                f"{first:%Y-%m}",
                datetime.combine(lo, datetime.min.time(), tz).astimezone(UTC),
                datetime.combine(hi, datetime.min.time(), tz).astimezone(UTC),
            )
        )
        first = nxt
    return out


def _instant(value: Any) -> datetime:
    return pd.Timestamp(value).to_pydatetime().astimezone(UTC)


def mrr_runs(
    session: MetricSession, data: Dataset, filters: dict[str, Any] | None = None
) -> dict[tuple[str, str], Any]:
    return {
        (o.mrr_cancel_at, o.mrr_same_interval): m.recurring_revenue(
            session, data.period, filters, data.currency, o
        )
        for o in MRR_OPTIONS
    }


@PROPERTY_SETTINGS
@given(data=subscription_data(early_reactivation=True))
def test_mrr_movements_explain_the_change_of_mrr(data: Dataset) -> None:
    bounds = month_bounds(data.period)
    with session_on(data) as session:
        runs = mrr_runs(session, data)
    for (cancel_at, same), result in runs.items():
        moves = result.tables["movements"]
        if not data.subscription_events:
            assert moves.empty and result.summary["mrr"] == 0
            continue
        assert list(moves["label"]) == [b[0] for b in bounds], (cancel_at, same)
        previous_end = None
        for (label, lo, hi), row in zip(bounds, moves.to_dict("records"), strict=True):
            where = (cancel_at, same, label)
            assert _instant(row["interval_start"]) == lo and _instant(row["interval_end"]) == hi, (
                where
            )
            explained = (
                row["mrr_start"]
                + row["new_mrr"]
                + row["expansion_mrr"]
                + row["reactivation_mrr"]
                - row["contraction_mrr"]
                - row["churned_mrr"]
            )
            assert math.isclose(row["mrr_end"], explained, rel_tol=1e-9, abs_tol=1e-6), where
            for movement in MOVEMENTS:
                assert row[movement] >= -1e-9, (where, movement)
            if previous_end is not None:
                assert math.isclose(row["mrr_start"], previous_end, rel_tol=1e-12, abs_tol=1e-9), (
                    where
                )
            previous_end = row["mrr_end"]
            # the MRR in force at both ends, replayed from the events
            for edge, column, count in (
                (lo, "mrr_start", "subscribers_start"),
                (hi, "mrr_end", "subscribers_end"),
            ):
                state = mrr_replay(data, edge, cancel_at)
                assert math.isclose(row[column], sum(state.values()), rel_tol=1e-9, abs_tol=1e-5), (
                    where,
                    column,
                )
                assert row[count] == sum(v > 0 for v in state.values()), (where, count)
        s = result.summary
        assert math.isclose(s["mrr"], moves["mrr_end"].iloc[-1], abs_tol=1e-9)
        assert math.isclose(s["arr"], 12 * s["mrr"], rel_tol=1e-12, abs_tol=1e-9)
        assert math.isclose(s["net_new_mrr"], s["mrr"] - s["mrr_start"], rel_tol=1e-9, abs_tol=1e-5)
    for cancel_at in ("period_end", "request"):
        counted, ignored = runs[(cancel_at, "count")], runs[(cancel_at, "ignore")]
        a, b = counted.tables["movements"], ignored.tables["movements"]
        if a.empty:
            continue
        for column in ("mrr_start", "mrr_end", "expansion_mrr", "contraction_mrr"):
            assert (a[column] - b[column]).abs().max() < 1e-9, column
        # counting joiners-and-leavers adds the same amount to what comes in and what goes out
        added_in = (a["new_mrr"] + a["reactivation_mrr"]) - (b["new_mrr"] + b["reactivation_mrr"])
        added_out = a["churned_mrr"] - b["churned_mrr"]
        assert ((added_in - added_out).abs() < 1e-6).all()
        assert (added_out >= -1e-9).all()


MRR_FILTERS = ("currency", "country", "discount_code")


@PROPERTY_SETTINGS
@given(data=subscription_data(), choice=st.data())
def test_mrr_filters_only_shrink(data: Dataset, choice: st.DataObject) -> None:
    name = choice.draw(st.sampled_from(MRR_FILTERS), label="filter")
    values = choice.draw(filter_values(name), label="values")
    options = MetricOptions(
        mrr_cancel_at=choice.draw(st.sampled_from(["period_end", "request"]), label="cancel_at")
    )
    with session_on(data) as session:
        whole = m.recurring_revenue(session, data.period, None, data.currency, options)
        part = m.recurring_revenue(session, data.period, {name: values}, data.currency, options)
    if part.tables["movements"].empty:
        return
    a, b = part.tables["movements"], whole.tables["movements"]
    for column in ("mrr_start", "mrr_end", "subscribers_start", "subscribers_end"):
        assert (a[column] <= b[column] + 1e-9).all(), column
    for (label, _lo, hi), row in zip(month_bounds(data.period), a.to_dict("records"), strict=True):
        state = mrr_replay(data, hi, options.mrr_cancel_at, {name: values})
        assert math.isclose(row["mrr_end"], sum(state.values()), rel_tol=1e-9, abs_tol=1e-5), label


def _downgrade_example() -> Dataset:
    """plan_pro at 50.00 a month, downgraded in April to plan_basic at 10.00 a month."""
    data = Dataset(Period.quarter(2024, 2, "UTC"), "USD")
    base = {
        "subscription_id": "sub_0",
        "customer_id": "k0",
        "currency": "USD",
        "billing_interval_months": 1,
        "discount_percent": 0.0,
        "reason": None,
    }
    data.subscription_events = [
        {
            **base,
            "event_id": "e1",
            "event_type": "start",
            "occurred_at": datetime(2024, 3, 5, tzinfo=UTC),
            "effective_at": datetime(2024, 3, 5, tzinfo=UTC),
            "product_id": "plan_pro",
            "price_minor": 5000,
        },
        {
            **base,
            "event_id": "e2",
            "event_type": "downgrade",
            "occurred_at": datetime(2024, 4, 10, tzinfo=UTC),
            "effective_at": datetime(2024, 4, 10, tzinfo=UTC),
            "product_id": "plan_basic",
            "previous_product_id": "plan_pro",
            "price_minor": 1000,
        },
    ]
    data.customers = [{"customer_id": "k0", "country_code": "TR", "is_guest": False}]
    return data


@PROPERTY_SETTINGS
@given(data=subscription_data(), choice=st.data())
@example(data=_downgrade_example(), choice=None)
def test_mrr_plan_filters_only_shrink(data: Dataset, choice: st.DataObject | None) -> None:
    if choice is None:
        name, values = "product", ["plan_pro"]
    else:
        name = choice.draw(st.sampled_from(["product", "plan_type"]), label="filter")
        values = choice.draw(
            st.lists(
                st.sampled_from(["plan_basic", "plan_pro", "plan_annual", "monthly", "annual"]),
                min_size=1,
                max_size=2,
            ),
            label="values",
        )
    with session_on(data) as session:
        whole = m.recurring_revenue(session, data.period, None, data.currency)
        part = m.recurring_revenue(session, data.period, {name: values}, data.currency)
    if part.tables["movements"].empty:
        return
    a, b = part.tables["movements"], whole.tables["movements"]
    for column in ("mrr_start", "mrr_end", "subscribers_end"):
        assert (a[column] <= b[column] + 1e-9).all(), column


def _early_reactivation_example() -> Dataset:
    """Start in March, ask to cancel at period end (5 May) on 10 April, take it back on 20 April."""
    data = Dataset(Period.quarter(2024, 2, "UTC"), "USD")
    base = {
        "subscription_id": "sub_0",
        "customer_id": "k0",
        "currency": "USD",
        "billing_interval_months": 1,
        "discount_percent": 0.0,
        "product_id": "plan_basic",
        "price_minor": 1000,
    }
    data.subscription_events = [
        {
            **base,
            "event_id": "e1",
            "event_type": "start",
            "occurred_at": datetime(2024, 3, 5, tzinfo=UTC),
            "effective_at": datetime(2024, 3, 5, tzinfo=UTC),
        },
        {
            **base,
            "event_id": "e2",
            "event_type": "cancel",
            "occurred_at": datetime(2024, 4, 10, tzinfo=UTC),
            "effective_at": datetime(2024, 5, 5, tzinfo=UTC),
            "reason": "voluntary",
        },
        {
            **base,
            "event_id": "e3",
            "event_type": "reactivate",
            "occurred_at": datetime(2024, 4, 20, tzinfo=UTC),
            "effective_at": datetime(2024, 4, 20, tzinfo=UTC),
        },
    ]
    data.customers = [{"customer_id": "k0", "country_code": "TR", "is_guest": False}]
    return data


@PROPERTY_SETTINGS
@given(data=subscription_data(early_reactivation=True))
@example(data=_early_reactivation_example())
def test_mrr_cancel_at_period_end_never_below_cancel_at_request(data: Dataset) -> None:
    """A cancellation counted when access ends can only keep MRR longer than one counted when asked."""
    with session_on(data) as session:
        at_end = m.recurring_revenue(
            session, data.period, None, data.currency, MetricOptions(mrr_cancel_at="period_end")
        )
        at_request = m.recurring_revenue(
            session, data.period, None, data.currency, MetricOptions(mrr_cancel_at="request")
        )
    a, b = at_end.tables["movements"], at_request.tables["movements"]
    if a.empty:
        return
    assert (a["mrr_end"] >= b["mrr_end"] - 1e-9).all(), (list(a["mrr_end"]), list(b["mrr_end"]))


# -- 5. a session's answers do not depend on what it answered before ------------------------------
#
# MetricSession keeps scoped tables per scope and history tables (customer months, MRR events)
# across periods, keyed by filters, currency, time zone and MRR conventions. Whatever sequence of
# questions a shared session (a dashboard kernel, comprehensive_analytics) has answered, each
# answer must equal the one a fresh session gives.

REUSE_FILTERS = (
    None,
    {"country": ["TR", "US"]},
    {"currency": "EUR"},
    {"product": "course_py"},
    {"provider": "stripe"},
    {"discount_code": "SPRING10"},
)


def answers(
    session: MetricSession, period: Period, filters: Any, currency: str, options: MetricOptions
) -> dict:
    t = m.transaction_analytics(session, period, filters, currency).summary
    r = m.revenue_analytics(session, period, filters, currency).summary
    mrr = m.recurring_revenue(session, period, filters, currency, options)
    c = m.customer_analytics(session, period, filters, currency, options, recurring=mrr).summary
    co = m.cohorts(session, period, filters, currency).tables["long"]
    moves = mrr.tables.get("movements")
    return {
        "transactions": t,
        "revenue": r,
        "customers": {
            k: c[k]
            for k in (
                "total_customers",
                "new_customers",
                "returning_customers",
                "arpu",
                "historical_clv",
                "customers_ever",
                "repeat_customers",
                "median_days_between_purchases",
                "ltv",
            )
        },
        "cohorts": co.to_dict("records"),
        "mrr": mrr.summary,
        "movements": None if moves is None else moves.to_dict("records"),
    }


def same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(
            a, b, rel_tol=1e-9, abs_tol=1e-9
        ), (where, a, b)
    else:
        assert a == b or (pd.isna(a) and pd.isna(b)), (where, a, b)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    payments=payments_data(max_payments=16),
    subscriptions=subscription_data(max_subscriptions=4),
    choice=st.data(),
)
def test_a_session_answers_the_same_whatever_it_answered_before(
    payments: Dataset, subscriptions: Dataset, choice: st.DataObject
) -> None:
    data = payments
    for name in ("customers", "subscriptions", "subscription_events"):
        setattr(data, name, getattr(subscriptions, name))
    calls = choice.draw(
        st.lists(
            st.tuples(
                st.sampled_from(PERIODS + MRR_PERIODS),
                st.sampled_from(REUSE_FILTERS),
                st.sampled_from(REPORTING),
                st.sampled_from(MRR_OPTIONS),
            ),
            min_size=2,
            max_size=4,
        ),
        label="calls",
    )
    with tempfile.TemporaryDirectory(prefix="metric-props-") as tmp:
        wh = build(data, Path(tmp) / "warehouse")
        with MetricSession.open(wh) as shared:
            in_sequence = [answers(shared, *call) for call in calls]
        for call, got in zip(calls, in_sequence, strict=True):
            with MetricSession.open(wh) as fresh:
                same(
                    got,
                    answers(fresh, *call),
                    f"{call[0].label} {call[0].timezone} {call[1]} {call[2]}",
                )


# -- 6. hostile filter values ---------------------------------------------------------------------

HOSTILE = (
    "TR' OR '1'='1",
    "'; DROP TABLE transactions; --",
    'stripe"; DELETE FROM refunds; --',
    "') OR 1=1 --",
    "%",
    "_",
    "*",
    "NULL",
    "null",
    "\\",
    "$1",
    "?",
    "getvariable('f_country')",
    "card' UNION SELECT * FROM fx_rates --",
    "İstanbul",
    "Ünïcödé ✓ 🎉",
    "ＴＲ",
    "\u200bTR",
    "TR\x00",
    "\t\n",
    "A" * 10_000,
    "TR,US",
    "x" * 100_001,
)
FAMILIES = sorted(
    p.name[:-4]
    for p in resources.files("analytics_lib.metrics").joinpath("sql").iterdir()
    if p.name.endswith(".sql")
)


def _hostile_dataset() -> Dataset:
    """A fixed small warehouse in which every filter has a matching value."""
    p = Period.month(2024, 5, "Europe/Istanbul")
    data = Dataset(p, "USD")
    at = datetime(2024, 5, 10, 9, tzinfo=UTC)
    for i, (method, provider, country, plan, product, campaign, code, currency) in enumerate(
        [
            ("card", "stripe", "TR", "course", "course_py", "cmp_spring", "SPRING10", "TRY"),
            ("paypal", "adyen", "US", "monthly", "plan_basic", "cmp_brand", "WELCOME", "USD"),
            ("apple_pay", "iyzico", "DE", "annual", "plan_annual", None, None, "EUR"),
            ("card", "stripe", "GB", None, None, "cmp_spring", "SPRING10", "JPY"),
        ]
    ):
        tid = f"tx_{i}"
        data.transactions.append(
            payment_row(
                tid,
                f"cus_{i}",
                5000 + i,
                currency,
                "completed" if i != 3 else "failed",
                at + timedelta(days=i),
                payment_method=method,
                provider=provider,
                country_code=country,
                plan_type=plan,
                product_id=product,
                campaign_id=campaign,
                discount_code=code,
                risk_score=10.0 * i,
            )
        )
        data.fees.append(
            {
                "fee_id": f"{tid}:fee",
                "transaction_id": tid,
                "fee_type": "processing",
                "amount_minor": 100,
                "currency": currency,
                "provider": provider,
                "created_at": at + timedelta(days=i),
            }
        )
    data.refunds = [
        {
            "refund_id": "re_0",
            "transaction_id": "tx_0",
            "customer_id": "cus_0",
            "amount_minor": 1000,
            "currency": "TRY",
            "status": "succeeded",
            "created_at": at + timedelta(days=5),
        }
    ]
    data.disputes = [
        {
            "dispute_id": "dp_1",
            "transaction_id": "tx_1",
            "customer_id": "cus_1",
            "amount_minor": 5001,
            "currency": "USD",
            "reason": "fraudulent",
            "status": "lost",
            "outcome": "lost",
            "created_at": at + timedelta(days=6),
        }
    ]
    sub = {
        "subscription_id": "sub_0",
        "customer_id": "cus_1",
        "currency": "USD",
        "billing_interval_months": 1,
        "discount_percent": 10.0,
        "product_id": "plan_basic",
        "price_minor": 5001,
    }
    data.subscription_events = [
        {
            **sub,
            "event_id": "ev_0",
            "event_type": "start",
            "occurred_at": datetime(2024, 3, 1, tzinfo=UTC),
            "effective_at": datetime(2024, 3, 1, tzinfo=UTC),
        }
    ]
    data.subscriptions = [
        {
            **{k: v for k, v in sub.items()},
            "status": "active",
            "discount_code": "WELCOME",
            "started_at": datetime(2024, 3, 1, tzinfo=UTC),
            "cancel_at_period_end": False,
        }
    ]
    data.customers = [
        {"customer_id": f"cus_{i}", "country_code": c, "is_guest": False}
        for i, c in enumerate(["TR", "US", "DE", "GB"])
    ]
    return data


HOSTILE_DATA = _hostile_dataset()


@pytest.fixture(scope="module")
def hostile_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    return build(HOSTILE_DATA, tmp_path_factory.mktemp("hostile") / "warehouse")


def _headline_counts(session: MetricSession, period: Period, filters: Any) -> dict[str, float]:
    """Every family once; the counts and amounts that a filter must never raise."""
    t = m.transaction_analytics(session, period, filters, "USD").summary
    r = m.revenue_analytics(session, period, filters, "USD").summary
    mrr = m.recurring_revenue(session, period, filters, "USD")
    c = m.customer_analytics(session, period, filters, "USD", recurring=mrr).summary
    g = m.geography(session, period, filters, "USD").tables["countries"]
    perf = m.performance(session, period, filters, "USD").tables["providers"]
    fr = m.fraud(session, period, filters, "USD").summary
    co = m.cohorts(session, period, filters, "USD").summary
    rt = m.realtime(
        session,
        now=datetime(2024, 5, 14, tzinfo=UTC),
        hours=24 * 7,
        filters=filters,
        currency="USD",
    ).summary
    m.trend_analysis(session, period, filters, "USD")
    return {
        **{
            k: t[k]
            for k in (
                "total_transactions",
                "successful_transactions",
                "failed_transactions",
                "total_volume",
            )
        },
        **{
            k: r[k]
            for k in (
                "gross_revenue",
                "refunds",
                "chargebacks",
                "fees",
                "refund_count",
                "dispute_count",
                "paying_customers",
            )
        },
        "mrr": mrr.summary["mrr"] or 0.0,
        "total_customers": c["total_customers"],
        "countries": len(g),
        "providers": len(perf),
        "scored_transactions": fr["scored_transactions"],
        "cohorts": co["cohorts"],
        "realtime_transactions": rt["transactions"],
        "realtime_revenue": rt["revenue"],
    }


def _sql_texts() -> dict[str, dict[str, str]]:
    return {family: dict(load_queries(family)) for family in FAMILIES}


def _assert_sql_unchanged(before: dict[str, dict[str, str]]) -> None:
    """The SQL that runs is the SQL in the files, whatever the filter values were."""
    assert _sql_texts() == before
    load_queries.cache_clear()
    assert _sql_texts() == before


def test_listed_hostile_values_on_every_filter(hostile_warehouse: Warehouse) -> None:
    """Every listed hostile value on every filter: no error, no count or amount above the unfiltered."""
    period = HOSTILE_DATA.period
    sql_before = _sql_texts()
    versions_before = hostile_warehouse.versions()
    with MetricSession.open(hostile_warehouse) as session:
        rows_before = {
            t: session.snapshot.count(t) for t in ("transactions", "refunds", "fx_rates")
        }

        def numbers(filters: Any) -> dict[str, float]:
            t = m.transaction_analytics(session, period, filters, "USD").summary
            r = m.revenue_analytics(session, period, filters, "USD", with_growth=False).summary
            mrr = m.recurring_revenue(session, period, filters, "USD").summary
            return {
                "total_transactions": t["total_transactions"],
                "total_volume": t["total_volume"],
                "refunds": r["refunds"],
                "fees": r["fees"],
                "chargebacks": r["chargebacks"],
                "paying_customers": r["paying_customers"],
                "mrr": mrr["mrr"] or 0.0,
            }

        baseline = numbers(None)
        assert baseline["total_transactions"] == 4 and baseline["mrr"] > 0
        cases: list[Any] = []
        for value in HOSTILE:  # each value in every filter at once (every value gets bound) ...
            cases.append({name: value for name in FILTER_COLUMNS})
            cases.append(Filters.parse([f"{name}={value}" for name in FILTER_COLUMNS]))
        for name in FILTER_COLUMNS:  # ... and each filter with all values and one real value
            cases.append({name: [*HOSTILE, *FILTER_DOMAIN[name][:1]]})
        for filters in cases:
            for key, number in numbers(filters).items():
                assert number <= baseline[key] + 1e-9, (filters, key)
        assert {t: session.snapshot.count(t) for t in rows_before} == rows_before
    assert hostile_warehouse.versions() == versions_before
    _assert_sql_unchanged(sql_before)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(FILTER_COLUMNS)),
    value=st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=60)),
)
def test_hostile_filter_values_are_inert_in_every_family(
    hostile_warehouse: Warehouse, name: str, value: str
) -> None:
    period = HOSTILE_DATA.period
    sql_before = _sql_texts()
    versions_before = hostile_warehouse.versions()
    with MetricSession.open(hostile_warehouse) as session:
        rows_before = {
            t: session.snapshot.count(t) for t in ("transactions", "refunds", "fx_rates")
        }
        baseline = _headline_counts(session, period, None)
        for filters in ({name: value}, {name: [value, "definitely-not-a-value"]}):
            got = _headline_counts(session, period, filters)
            for key, number in got.items():
                assert number <= baseline[key] + 1e-9, (
                    name,
                    value[:40],
                    key,
                    number,
                    baseline[key],
                )
        assert {t: session.snapshot.count(t) for t in rows_before} == rows_before
    assert hostile_warehouse.versions() == versions_before
    _assert_sql_unchanged(sql_before)


def test_hostile_values_match_only_themselves(hostile_warehouse: Warehouse) -> None:
    """A filter value is compared as a whole value: no pattern, no case folding (except codes)."""
    period = HOSTILE_DATA.period
    with MetricSession.open(hostile_warehouse) as session:

        def count(filters: Any) -> int:
            return m.transaction_analytics(session, period, filters, "USD")["total_transactions"]

        assert count(None) == 4
        assert count({"provider": "stripe"}) == 2
        assert count({"provider": "STRIPE"}) == 0  # only currency and country are case-folded
        assert count({"country": "tr"}) == 1
        for pattern in ("%", "_", "*", "str%", ".*", "stripe' OR '1'='1"):
            assert count({"provider": pattern}) == 0, pattern
        assert count(Filters.parse(["provider=stripe,adyen", "country=TR"])) == 1


def test_undecodable_filter_value_is_a_metric_error(hostile_warehouse: Warehouse) -> None:
    """A lone surrogate (what Python puts in sys.argv for undecodable bytes, e.g.
    ``--filter country=$'\\xff'``) is refused with a MetricError, not a DuckDB conversion error."""
    with MetricSession.open(hostile_warehouse) as session:
        for filters in ({"country": "TR\udcff"}, {"provider": ["stripe", "\udcff"]}):
            with pytest.raises(MetricError):
                m.transaction_analytics(session, HOSTILE_DATA.period, filters, "USD")
        with pytest.raises(MetricError):
            Filters.parse(["campaign=x\udcff"])
        # the session is still usable afterwards
        assert (
            m.transaction_analytics(session, HOSTILE_DATA.period, None, "USD")["total_transactions"]
            == 4
        )


def test_a_filter_that_matches_nothing_leaves_nothing(tmp_path: Path) -> None:
    now = datetime(2024, 5, 10, 12, tzinfo=UTC)
    wh = build(HOSTILE_DATA, tmp_path / "warehouse")
    wh.upsert(
        "checkout_events",
        [
            {
                "event_id": "ce_1",
                "session_id": "cs_1",
                "customer_id": "cus_9",
                "step": "view_product",
                "occurred_at": now - timedelta(hours=1),
                "country_code": "US",
                "occurred_month": "2024-05",
            }
        ],
    )
    wh.upsert(
        "fraud_alerts",
        [
            {
                "alert_id": "fa_1",
                "transaction_id": "tx_0",
                "customer_id": "cus_0",
                "alert_type": "velocity",
                "severity": "high",
                "created_at": now - timedelta(hours=1),
                "status": "open",
            },
            {
                "alert_id": "fa_2",
                "transaction_id": None,
                "customer_id": "cus_9",
                "alert_type": "card_testing",
                "severity": "high",
                "created_at": now - timedelta(hours=2),
                "status": "open",
            },
        ],
    )
    nothing = {"country": "FR"}
    with MetricSession.open(wh) as session:
        rt = m.realtime(session, now=now, hours=24 * 7, filters=nothing, currency="USD").summary
        fr = m.fraud(session, HOSTILE_DATA.period, nothing, "USD").summary
        assert rt["transactions"] == 0 and fr["scored_transactions"] == 0  # these hold today
        assert (rt["active_users"], rt["open_fraud_alerts"], fr["fraud_alerts"]) == (0, 0, 0)
