"""Scopes that build less: the trends' summary-only scope and the allow-listed breakdown queries.

On tests/metric_fixtures.py: a summary-only scope gives the summaries of a full scope, refuses a
query that needs another column (no silent answer), and a full scope that follows it answers as in
a fresh session; ``by_payment_method``/``by_provider`` are ``by_dimension`` with the value column
named after the dimension, and other dimensions are refused.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from analytics_lib import metrics as m
from analytics_lib.metrics import MetricError, Period
from tests import metric_fixtures as fx

MAY = Period.month(2024, 5, "Europe/Istanbul")
APRIL = MAY.previous()
SUMMARIES = (("transactions", "summary"), ("revenue", "summary"), ("customers", "summary"))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    from analytics_lib.warehouse import Warehouse

    return fx.build(Warehouse(tmp_path_factory.mktemp("scope") / "warehouse"))


def _summaries(session: m.MetricSession) -> dict:
    out = {f"{f}.{q}": session.row(f, q) for f, q in SUMMARIES}
    out["revenue.daily"] = session.query("revenue", "daily")
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], pd.DataFrame):
            pd.testing.assert_frame_equal(a[key], b[key])
        elif isinstance(a[key], dict) and None in a[key].values():  # approx refuses None values
            assert a[key].keys() == b[key].keys(), key
            for name, value in a[key].items():
                if value is None or b[key][name] is None:
                    assert value is b[key][name], (key, name)
                else:
                    assert value == pytest.approx(b[key][name], rel=1e-12, nan_ok=True), (key, name)
        else:
            assert a[key] == pytest.approx(b[key], rel=1e-12, nan_ok=True), key


@pytest.mark.parametrize("filters", [None, {"country": "TR"}, {"payment_method": ["card", "paypal"]}])
@pytest.mark.parametrize("period", [MAY, APRIL])
def test_summary_only_scope_gives_the_full_scopes_summaries(warehouse, period, filters):
    with m.MetricSession.open(warehouse) as full, m.MetricSession.open(warehouse) as lean:
        full.scope(period, filters, "USD")
        lean.scope(period, filters, "USD", summary_only=True)
        assert lean.current.summary_only
        _assert_same(_summaries(full), _summaries(lean))
        # the narrow table: a query that reads another column fails instead of answering
        with pytest.raises(duckdb.Error):
            lean.query("transactions", "failure_reasons")


def test_full_scope_after_summary_only_answers_as_a_fresh_session(warehouse):
    with m.MetricSession.open(warehouse) as fresh, m.MetricSession.open(warehouse) as s:
        s.scope(MAY, None, "USD", summary_only=True)
        s.row("customers", "summary")  # builds paying_customers, customer_tail, ... on the narrow table
        s.scope(MAY, None, "USD")
        assert not s.current.summary_only
        fresh.scope(MAY, None, "USD")
        for family, name in (("transactions", "failure_reasons"), ("fraud", "indicators"),
                             ("geography", "countries"), ("revenue", "by_product")):
            pd.testing.assert_frame_equal(s.query(family, name), fresh.query(family, name))
        _assert_same(_summaries(s), _summaries(fresh))
        # a summary-only request is served by the full scope (no rebuild, the columns are there)
        assert s.scope(MAY, None, "USD", summary_only=True) is s.current
        assert not s.current.summary_only


def test_trend_analysis_equals_the_full_scopes(warehouse):
    with m.MetricSession.open(warehouse) as s:
        trends = {t.metric: t for t in m.trend_analysis(s, MAY, currency="USD")}
        s.scope(MAY, None, "USD")
        may = _summaries(s)
        s.scope(APRIL, None, "USD")
        april = _summaries(s)
    assert trends["gross_revenue"].current_value == pytest.approx(may["revenue.summary"]["gross_revenue"], rel=1e-12)
    assert trends["gross_revenue"].previous_value == pytest.approx(april["revenue.summary"]["gross_revenue"], rel=1e-12)
    assert trends["total_transactions"].previous_value == april["transactions.summary"]["total_transactions"]
    assert trends["new_customers"].previous_value == april["customers.summary"]["new_customers"]
    assert trends["net_revenue"].previous_value == pytest.approx(april["revenue.summary"]["net_revenue"], rel=1e-12)


def test_breakdowns_are_one_allow_listed_query(warehouse):
    with m.MetricSession.open(warehouse) as s:
        s.scope(MAY, None, "USD")
        for dimension in ("payment_method", "provider"):
            named = s.query("transactions", f"by_{dimension}")
            general = s.query("transactions", "by_dimension", {"dimension": dimension})
            assert list(named.columns)[0] == dimension
            pd.testing.assert_frame_equal(named, general.rename(columns={"value": dimension}))
            total = s.row("transactions", "summary")
            assert named["transactions"].sum() == total["total_transactions"]
            assert named["volume"].sum() == pytest.approx(total["total_volume"], rel=1e-12)
        for bad in ("country_code", "payment_method; DROP TABLE payments", None):
            with pytest.raises(MetricError, match="dimension must be one of"):
                s.query("transactions", "by_dimension", {"dimension": bad})


LIVE_QUERIES = (("realtime", "hourly", None), ("transactions", "failure_reasons", None),
                ("realtime", "distribution", {"dimension": "country"}),
                ("realtime", "distribution", {"dimension": "payment_method"}),
                ("transactions", "by_provider", None))


@pytest.mark.parametrize("filters", [None, {"country": "TR"}, {"payment_method": ["card", "paypal"]}])
@pytest.mark.parametrize("hours", [6, 24, 24 * 31])
def test_live_scope_answers_the_real_time_queries_as_a_full_scope(warehouse, hours, filters):
    """realtime() builds the window's payments with only the columns its queries (and the
    operations dashboard's provider status) read; every answer equals the full window's."""
    from datetime import UTC, datetime, timedelta

    now = datetime(2024, 5, 20, 13, 37, tzinfo=UTC)  # 1 h 37 min after three payments
    period = Period((now - timedelta(hours=hours)).date(), now.date() + timedelta(days=1), "custom", "UTC")
    window = (now - timedelta(hours=hours), now)
    with m.MetricSession.open(warehouse) as full, m.MetricSession.open(warehouse) as live:
        full.scope(period, filters, "USD", window=window)
        live.scope(period, filters, "USD", window=window, columns="live")
        assert live.current.columns == "live"
        if filters is None:  # the window has payments (three at noon on the 20th)
            assert full.row("realtime", "summary", {"hours": 1.0})["transactions"] > 0
        lean_row = live.row("realtime", "summary", {"hours": float(hours)})
        full_row = full.row("realtime", "summary", {"hours": float(hours)})
        assert lean_row.keys() == full_row.keys()
        for key, value in full_row.items():
            if isinstance(value, float):
                assert lean_row[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
            else:
                assert lean_row[key] == value, key
        for family, name, params in LIVE_QUERIES:
            pd.testing.assert_frame_equal(live.query(family, name, params), full.query(family, name, params))
        with pytest.raises(duckdb.Error):  # a column the live table does not hold
            live.query("revenue", "by_product")
        # and realtime() itself, which opens the live scope, equals the full scope's answers
        section = m.realtime(live, now=now, hours=hours, filters=filters, currency="USD", timezone="UTC")
        assert live.current.columns == "live"
        full.scope(period, filters, "USD", window=window)
        pd.testing.assert_frame_equal(section.tables["hourly"], full.query("realtime", "hourly"))


def test_unknown_scope_columns_are_refused(warehouse):
    with m.MetricSession.open(warehouse) as s, pytest.raises(MetricError, match="unknown scope columns"):
        s.scope(MAY, None, "USD", columns="everything")


def test_one_session_through_many_scopes_answers_as_fresh_sessions(warehouse):
    """The scope views are made once per session and read the scope's variables when queried,
    the filter variables are set only when the filters change, the unfiltered alert table is
    built once, and a live window's payments are an Arrow table that a later full scope
    replaces: none of it may change an answer. A session walked through filtered, unfiltered,
    live and full scopes in turn answers each as a fresh session does."""
    from datetime import UTC, datetime, timedelta

    now = datetime(2024, 5, 20, 13, 37, tzinfo=UTC)
    day = Period(now.date() - timedelta(days=1), now.date() + timedelta(days=1), "custom", "UTC")
    steps = [
        (MAY, {"country": "TR"}, None, "all"),
        (MAY, None, None, "all"),
        (day, {"payment_method": ["card", "paypal"]}, (now - timedelta(hours=24), now), "live"),
        (day, None, (now - timedelta(hours=24), now), "live"),
        (APRIL, {"payment_method": ["card", "paypal"]}, None, "all"),
        (day, None, (now - timedelta(hours=6), now), "live"),
        (MAY, {"country": "TR"}, None, "summary"),
        (MAY, None, None, "all"),
    ]

    def answers(session, period, filters, window, columns):
        if columns == "live":
            out = {"summary": session.row("realtime", "summary", {"hours": 24.0})}
            for family, name, params in LIVE_QUERIES:
                out[f"{family}.{name}.{params}"] = session.query(family, name, params)
            return out
        out = _summaries(session)
        if columns == "all":
            out["fraud.summary"] = session.row("fraud", "summary", {"review_threshold": 65, "block_threshold": 75})
            out["failure_reasons"] = session.query("transactions", "failure_reasons")
        return out

    created: list[str] = []
    with m.MetricSession.open(warehouse) as walked:
        execute = walked.con.execute

        def counting(sql, *args, **kwargs):
            if isinstance(sql, str) and "TEMP VIEW filtered_transactions" in sql:
                created.append(sql)
            return execute(sql, *args, **kwargs)

        walked.con = type("Counting", (), {"__getattr__": lambda _, n: getattr(walked.snapshot.con, n),
                                           "execute": staticmethod(counting)})()
        for period, filters, window, columns in steps:
            walked.scope(period, filters, "USD", window=window, columns=columns)
            got = answers(walked, period, filters, window, columns)
            with m.MetricSession.open(warehouse) as fresh:
                fresh.scope(period, filters, "USD", window=window, columns=columns)
                _assert_same(answers(fresh, period, filters, window, columns), got)
    assert len(created) == 1  # one view for the eight scopes
