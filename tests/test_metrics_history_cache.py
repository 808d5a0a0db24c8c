"""The metric layer's history caches give the numbers of the direct definitions.

For speed, a session caches tables over all history per filter set (sql/_history.sql) and a period
reads only part of them: customers' running totals by month plus the period's last part month, a
cohort matrix, course pairs by month of formation, fees in 15-minute buckets, MRR states with the
next event's time and bucketed totals. Each test here recomputes a number straight from its
definition over the raw tables (the formulation the metric layer used before the caches, kept
here as the reference) and requires the cached path to give the same on random warehouses, for
month, part-month and DST periods, filters and reporting currencies. The fallbacks for bounds that
do not fall on a quarter hour (real-time windows) are checked against the bucketed paths too.
"""

from __future__ import annotations

import math
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics_lib import metrics as m
from analytics_lib.metrics import MetricOptions, MetricSession, Period
from analytics_lib.metrics.api import mrr_bounds
from analytics_lib.metrics.engine import load_queries
from tests.test_metrics_properties import (
    MRR_OPTIONS,
    MRR_PERIODS,
    PERIODS,
    PRODUCTS,
    REPORTING,
    REUSE_FILTERS,
    Dataset,
    build,
    payments_data,
    subscription_data,
)

CACHE_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXTRA_PERIODS = (
    Period.day(datetime(2024, 5, 15).date(), "Asia/Kolkata"),  # UTC+05:30
    Period.between("2024-05-03", "2024-05-20", "UTC"),
)
PRODUCT_ROWS = [
    {"product_id": p, "product_type": "course" if p.startswith("course") else "subscription_plan",
     "name": p.replace("_", " ").title(), "list_price_minor": 1000, "currency": "USD", "active": True}
    for p in PRODUCTS if p
]

# -- the reference: the direct definitions (the metric layer before its history caches) --------

REF_CUSTOMERS = """
CREATE OR REPLACE TEMP TABLE ref_paid AS
SELECT t.customer_id, t.product_id, t.created_at,
       CAST(date_trunc('month', timezone(getvariable('tz'), t.created_at)) AS DATE) AS month,
       t.amount_minor / s.scale * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc
FROM filtered_transactions t
JOIN currency_scale s ON s.currency = t.currency
LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = CAST(t.created_at AS DATE)
WHERE is_successful(t.status) AND t.created_at < getvariable('p_end');
CREATE OR REPLACE TEMP TABLE ref_firsts AS
SELECT customer_id, min(created_at) AS first_at, max(created_at) AS last_at, count(*) AS payments,
       sum(amount_rc) AS revenue, min(month) AS cohort_month
FROM ref_paid GROUP BY customer_id;
CREATE OR REPLACE TEMP TABLE ref_rfm AS
WITH base AS (
    SELECT customer_id, date_diff('day', last_at, getvariable('p_end')) AS recency_days,
           payments AS frequency, revenue AS monetary
    FROM ref_firsts
),
cuts AS (
    SELECT quantile_cont(recency_days, [0.2, 0.4, 0.6, 0.8]) AS r,
           quantile_cont(frequency, [0.2, 0.4, 0.6, 0.8]) AS f,
           quantile_cont(monetary, [0.2, 0.4, 0.6, 0.8]) AS m
    FROM base
),
scored AS (
    SELECT base.*,
           5 - (recency_days > r[1])::INT - (recency_days > r[2])::INT - (recency_days > r[3])::INT
             - (recency_days > r[4])::INT AS r_score,
           1 + (frequency > f[1])::INT + (frequency > f[2])::INT + (frequency > f[3])::INT
             + (frequency > f[4])::INT AS f_score,
           1 + (monetary > m[1])::INT + (monetary > m[2])::INT + (monetary > m[3])::INT
             + (monetary > m[4])::INT AS m_score
    FROM base, cuts
)
SELECT *,
    CASE
        WHEN r_score >= 4 AND f_score >= 4 THEN 'Champions'
        WHEN r_score >= 3 AND f_score >= 3 THEN 'Loyal'
        WHEN r_score >= 4 AND f_score <= 2 THEN 'New / promising'
        WHEN r_score = 3 AND f_score <= 2 THEN 'Potential loyalists'
        WHEN r_score <= 2 AND f_score >= 4 THEN 'Cannot lose them'
        WHEN r_score <= 2 AND f_score = 3 THEN 'At risk'
        WHEN r_score = 2 AND f_score <= 2 THEN 'Hibernating'
        ELSE 'Lost'
    END AS segment
FROM scored
"""

REF_SUMMARY = """
SELECT
    (SELECT count(DISTINCT customer_id) FROM payments WHERE is_success) AS total_customers,
    (SELECT count(*) FROM ref_firsts WHERE first_at >= getvariable('p_start')) AS new_customers,
    (SELECT sum(revenue) / nullif(count(*), 0) FROM ref_firsts) AS historical_clv,
    (SELECT count(*) FROM ref_firsts) AS customers_ever
"""

REF_TIME_BETWEEN = """
WITH s AS (
    SELECT date_diff('second', first_at, last_at) / 86400.0 / (payments - 1) AS gap_days
    FROM ref_firsts WHERE payments > 1
)
SELECT count(*) AS repeat_customers, median(gap_days) AS median_days, avg(gap_days) AS mean_days,
       quantile_cont(gap_days, 0.9) AS p90_days
FROM s
"""

REF_SEGMENTS = """
SELECT segment, count(*) AS customers, count(*) / sum(count(*)) OVER () AS share,
       sum(monetary) AS revenue, avg(recency_days) AS avg_recency_days, avg(frequency) AS avg_frequency
FROM ref_rfm
GROUP BY segment
ORDER BY revenue DESC, segment
"""

REF_COHORTS = """
WITH cm AS (
    SELECT p.customer_id, f.cohort_month, p.month, sum(p.amount_rc) AS revenue,
           date_diff('month', f.cohort_month, p.month) AS months_since
    FROM ref_paid p JOIN ref_firsts f USING (customer_id)
    WHERE f.cohort_month >= CAST(date_trunc('month', getvariable('p_end_date') - INTERVAL 1 DAY) AS DATE)
                            - to_months($cohort_months - 1)
    GROUP BY ALL
),
sizes AS (SELECT cohort_month, count(DISTINCT customer_id) AS cohort_size,
                 sum(revenue) FILTER (WHERE months_since = 0) AS first_month_revenue
          FROM cm GROUP BY ALL)
SELECT cm.cohort_month, any_value(s.cohort_size) AS cohort_size, cm.months_since,
       count(DISTINCT cm.customer_id) AS active_customers,
       count(DISTINCT cm.customer_id) / any_value(s.cohort_size) AS customer_retention,
       sum(cm.revenue) AS revenue,
       sum(cm.revenue) / nullif(any_value(s.first_month_revenue), 0) AS revenue_retention
FROM cm JOIN sizes s USING (cohort_month)
GROUP BY cm.cohort_month, cm.months_since
ORDER BY cm.cohort_month, cm.months_since
"""

REF_COURSE_PAIRS = """
WITH bought AS (
    SELECT DISTINCT p.customer_id, p.product_id
    FROM ref_paid p JOIN products pr ON pr.product_id = p.product_id AND pr.product_type = 'course'
)
SELECT a.product_id AS course_a, b.product_id AS course_b, count(*) AS customers
FROM bought a JOIN bought b ON a.customer_id = b.customer_id AND a.product_id < b.product_id
GROUP BY ALL
ORDER BY customers DESC, course_a, course_b
LIMIT 20
"""

REF_FEES = """
SELECT CAST(timezone(getvariable('tz'), e.created_at) AS DATE) AS day, e.provider,
       sum(e.amount_minor / s.scale * CASE WHEN e.currency = getvariable('rc') THEN 1.0 ELSE f.factor END) AS fees
FROM fees e
JOIN currency_scale s ON s.currency = e.currency
LEFT JOIN fx_factor f ON f.currency = e.currency AND f.rate_date = CAST(e.created_at AS DATE)
WHERE e.created_at >= getvariable('p_start') AND e.created_at < getvariable('p_end')
  AND e.transaction_id IN (SELECT transaction_id FROM filtered_transactions)
GROUP BY ALL
"""

REF_MRR_EVENTS = "CREATE OR REPLACE TEMP TABLE ref_mrr_events AS " + (
    load_queries("_history")["mrr_history"]
    .split("CREATE OR REPLACE TEMP TABLE mrr_events_build AS", 1)[1]
    .split(";", 1)[0]
) + """;
CREATE OR REPLACE TEMP TABLE ref_mrr_deltas AS
SELECT customer_id, subscription_id, effective_ts, mrr,
       mrr - coalesce(lag(mrr) OVER (PARTITION BY subscription_id ORDER BY effective_ts, created_at, event_id), 0) AS delta
FROM ref_mrr_events
"""

REF_MOVEMENTS = """
WITH points AS (SELECT b_start AS t FROM mrr_bounds UNION SELECT b_end FROM mrr_bounds),
cust AS (
    SELECT p.t, d.customer_id, round(sum(d.delta), 6) AS mrr
    FROM points p JOIN ref_mrr_deltas d ON d.effective_ts < p.t
    GROUP BY ALL
),
first_paid AS (SELECT customer_id, min(effective_ts) AS first_paid_at FROM ref_mrr_deltas WHERE mrr > 0 GROUP BY ALL),
pairs AS (
    SELECT b.interval_no, b.label, b.b_start, b.b_end, c1.customer_id,
           coalesce(c0.mrr, 0) AS mrr_start, c1.mrr AS mrr_end
    FROM mrr_bounds b
    JOIN cust c1 ON c1.t = b.b_end
    LEFT JOIN cust c0 ON c0.customer_id = c1.customer_id AND c0.t = b.b_start
    UNION ALL
    SELECT interval_no, label, b_start, b_end, NULL, 0, 0 FROM mrr_bounds WHERE EXISTS (SELECT 1 FROM ref_mrr_deltas)
),
peaks AS (
    SELECT b.interval_no, e.customer_id, max(e.mrr) AS peak
    FROM mrr_bounds b JOIN ref_mrr_deltas e ON e.effective_ts >= b.b_start AND e.effective_ts < b.b_end AND e.mrr > 0
    GROUP BY ALL
),
classified AS (
    SELECT p.*, w.peak, fp.first_paid_at < p.b_start AS paid_before,
        CASE
            WHEN p.mrr_start = 0 AND p.mrr_end > 0 AND NOT coalesce(fp.first_paid_at < p.b_start, false) THEN 'new'
            WHEN p.mrr_start = 0 AND p.mrr_end > 0 THEN 'reactivation'
            WHEN p.mrr_start > 0 AND p.mrr_end = 0 THEN 'churn'
            WHEN p.mrr_start > 0 AND p.mrr_end > p.mrr_start THEN 'expansion'
            WHEN p.mrr_start > 0 AND p.mrr_end < p.mrr_start THEN 'contraction'
            WHEN p.mrr_start = 0 AND p.mrr_end = 0 AND w.peak > 0 AND getvariable('mrr_same_interval') = 'count'
                THEN 'in_and_out'
            ELSE 'unchanged'
        END AS movement
    FROM pairs p
    LEFT JOIN first_paid fp USING (customer_id)
    LEFT JOIN peaks w ON w.interval_no = p.interval_no AND w.customer_id = p.customer_id
)
SELECT
    interval_no, label, b_start AS interval_start, b_end AS interval_end,
    sum(mrr_start) AS mrr_start,
    coalesce(sum(mrr_end) FILTER (WHERE movement = 'new'), 0)
        + coalesce(sum(peak) FILTER (WHERE movement = 'in_and_out' AND NOT coalesce(paid_before, false)), 0) AS new_mrr,
    coalesce(sum(mrr_end - mrr_start) FILTER (WHERE movement = 'expansion'), 0) AS expansion_mrr,
    coalesce(sum(mrr_start - mrr_end) FILTER (WHERE movement = 'contraction'), 0) AS contraction_mrr,
    coalesce(sum(mrr_start) FILTER (WHERE movement = 'churn'), 0)
        + coalesce(sum(peak) FILTER (WHERE movement = 'in_and_out'), 0) AS churned_mrr,
    coalesce(sum(mrr_end) FILTER (WHERE movement = 'reactivation'), 0)
        + coalesce(sum(peak) FILTER (WHERE movement = 'in_and_out' AND coalesce(paid_before, false)), 0) AS reactivation_mrr,
    sum(mrr_end) AS mrr_end,
    count(*) FILTER (WHERE mrr_start > 0) AS subscribers_start,
    count(*) FILTER (WHERE mrr_end > 0) AS subscribers_end,
    count(*) FILTER (WHERE movement IN ('new', 'in_and_out') AND NOT coalesce(paid_before, false)) AS new_customers,
    count(*) FILTER (WHERE movement = 'churn') AS churned_customers,
    count(*) FILTER (WHERE movement = 'reactivation') AS reactivated_customers,
    count(*) FILTER (WHERE movement = 'in_and_out') AS joined_and_left_customers,
    sum(CASE WHEN mrr_start > 0 THEN mrr_end ELSE 0 END) AS retained_mrr_end,
    sum(CASE WHEN mrr_start > 0 THEN least(mrr_end, mrr_start) ELSE 0 END) AS retained_mrr_capped
FROM classified
GROUP BY ALL
ORDER BY interval_no
"""

REF_BY_PLAN = """
WITH latest AS (  -- each subscription's last event strictly before the period end
    SELECT e.*, row_number() OVER (PARTITION BY e.subscription_id
                                   ORDER BY e.effective_ts DESC, e.created_at DESC, e.event_id DESC) AS rn
    FROM ref_mrr_events e
    WHERE e.effective_ts < (SELECT b_end FROM mrr_bounds WHERE interval_no = 0)
),
state AS (SELECT product_id, billing_interval_months, mrr, event_type FROM latest WHERE rn = 1)
SELECT
    state.product_id,
    count(*) FILTER (WHERE mrr > 0) AS subscribers,
    count(*) FILTER (WHERE event_type = 'trial_start') AS trialing,
    sum(mrr) AS mrr
FROM state
GROUP BY state.product_id
HAVING count(*) FILTER (WHERE mrr > 0) > 0 OR count(*) FILTER (WHERE event_type = 'trial_start') > 0
ORDER BY mrr DESC, product_id
"""


# -- comparison helpers ------------------------------------------------------------------------------


def same_value(a: Any, b: Any, where: str) -> None:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        a_missing = a is None or (isinstance(a, float) and math.isnan(a))
        b_missing = b is None or (isinstance(b, float) and math.isnan(b))
        assert a_missing and b_missing, (where, a, b)
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


def same_frame(got: pd.DataFrame, expected: pd.DataFrame, columns: list[str], where: str) -> None:
    assert len(got) == len(expected), (where, got, expected)
    for i, (g, e) in enumerate(zip(got[columns].to_dict("records"), expected[columns].to_dict("records"), strict=True)):
        for c in columns:
            gv, ev = g[c], e[c]
            if isinstance(gv, pd.Timestamp) or isinstance(ev, pd.Timestamp):
                gv, ev = pd.Timestamp(gv), pd.Timestamp(ev)
            elif hasattr(gv, "item"):
                gv = gv.item()
            if hasattr(ev, "item") and not isinstance(ev, pd.Timestamp):
                ev = ev.item()
            same_value(gv, ev, f"{where}[{i}].{c}")


def with_products(data: Dataset, tmp: str) -> Any:
    wh = build(data, Path(tmp) / "warehouse")
    wh.upsert("products", PRODUCT_ROWS)
    return wh


# -- customers, cohorts, course pairs ---------------------------------------------------------------


@CACHE_SETTINGS
@given(
    data=payments_data(max_payments=24),
    extra=st.lists(st.tuples(st.sampled_from(PERIODS + EXTRA_PERIODS), st.sampled_from(REUSE_FILTERS),
                             st.sampled_from(REPORTING)), min_size=1, max_size=3),
)
def test_customer_history_caches_match_the_direct_definitions(data: Dataset, extra: list) -> None:
    calls = [(data.period, None, data.currency), *extra]
    with tempfile.TemporaryDirectory(prefix="metric-cache-") as tmp, MetricSession.open(with_products(data, tmp)) as s:
        for period, filters, currency in calls:
            where = f"{period.label} {period.timezone} {filters} {currency}"
            c = m.customer_analytics(s, period, filters, currency).summary
            tables = m.customer_analytics(s, period, filters, currency).tables
            cohorts = m.cohorts(s, period, filters, currency).tables["long"]
            m.transaction_analytics(s, period, filters, currency)  # the scope of the references
            s.con.execute(REF_CUSTOMERS)
            ref = s.con.execute(REF_SUMMARY).df().iloc[0]
            for key in ("total_customers", "new_customers", "historical_clv", "customers_ever"):
                same_value(c[key], ref[key].item() if hasattr(ref[key], "item") else ref[key], f"{where} {key}")
            gaps = s.con.execute(REF_TIME_BETWEEN).df().iloc[0]
            same_value(c["repeat_customers"], int(gaps["repeat_customers"]), f"{where} repeat_customers")
            same_value(c["median_days_between_purchases"], None if pd.isna(gaps["median_days"]) else float(gaps["median_days"]),
                       f"{where} median gap")
            segments = s.con.execute(REF_SEGMENTS).df()
            same_frame(tables["rfm_segments"], segments,
                       ["segment", "customers", "share", "revenue", "avg_recency_days", "avg_frequency"], f"{where} rfm")
            per_customer = s.query("customers", "rfm").sort_values("customer_id").reset_index(drop=True)
            ref_rfm = s.con.execute("SELECT * FROM ref_rfm ORDER BY customer_id").df()
            same_frame(per_customer, ref_rfm, list(ref_rfm.columns), f"{where} rfm per customer")
            same_frame(tables["course_pairs"], s.con.execute(REF_COURSE_PAIRS).df(),
                       ["course_a", "course_b", "customers"], f"{where} course pairs")
            ref_cohorts = s.con.execute(REF_COHORTS, {"cohort_months": 12}).df()
            same_frame(cohorts.assign(cohort_month=pd.to_datetime(cohorts["cohort_month"])),
                       ref_cohorts.assign(cohort_month=pd.to_datetime(ref_cohorts["cohort_month"])),
                       list(ref_cohorts.columns), f"{where} cohorts")


# -- fees: buckets and the direct read ---------------------------------------------------------------


@CACHE_SETTINGS
@given(
    data=payments_data(max_payments=24),
    extra=st.lists(st.tuples(st.sampled_from(PERIODS + EXTRA_PERIODS), st.sampled_from(REUSE_FILTERS),
                             st.sampled_from(REPORTING)), min_size=1, max_size=3),
)
def test_fee_buckets_match_the_fees(data: Dataset, extra: list) -> None:
    calls = [(data.period, None, data.currency), *extra]
    with tempfile.TemporaryDirectory(prefix="metric-cache-") as tmp, MetricSession.open(with_products(data, tmp)) as s:
        for period, filters, currency in calls:
            where = f"{period.label} {period.timezone} {filters} {currency}"
            daily = m.revenue_analytics(s, period, filters, currency, with_growth=False).tables["daily"]
            providers = m.performance(s, period, filters, currency).tables["providers"]
            ref = s.con.execute(REF_FEES).df()
            same_value(m.revenue_analytics(s, period, filters, currency, with_growth=False).summary["fees"],
                       float(ref["fees"].sum()), f"{where} fees")
            by_day = ref.groupby("day")["fees"].sum()
            for _, row in daily.iterrows():
                same_value(float(row["fees"]), float(by_day.get(row["day"], 0.0)), f"{where} fees on {row['day']}")
            by_provider = ref.groupby("provider")["fees"].sum()
            for _, row in providers.iterrows():
                same_value(float(row["fees"]), float(by_provider.get(row["provider"], 0.0)), f"{where} fees of {row['provider']}")
            # the direct read that serves bounds off the quarter hour gives the same
            bucketed = s.con.execute("SELECT day, provider, amount_rc FROM scoped_fees ORDER BY ALL").df()
            s.con.execute("SET VARIABLE p_fee_buckets = false")
            s.con.execute(load_queries("_scope")["scoped_fees"])
            direct = s.con.execute("SELECT day, provider, amount_rc FROM scoped_fees ORDER BY ALL").df()
            s.forget_scope()  # the scope's fee table was built by hand
            same_frame(bucketed, direct, ["day", "provider", "amount_rc"], f"{where} direct fees")


def test_windows_off_the_quarter_hour_read_fees_directly(tmp_path: Path) -> None:
    from analytics_lib.warehouse import Warehouse
    from tests import metric_fixtures as fx

    wh = fx.build(Warehouse(tmp_path / "warehouse"))
    with MetricSession.open(wh) as s:
        period = Period.month(2024, 5, "UTC")
        for filters in (None, {"country": "DE"}):
            # windows from instants off the quarter hour (as real-time windows are)
            for start, end in ((period.start_utc - timedelta(seconds=7), period.end_utc + timedelta(seconds=7)),
                               (period.start_utc + timedelta(days=9, minutes=7), period.end_utc - timedelta(days=3, minutes=1))):
                s.scope(period, filters, "USD", window=(start, end))
                assert s.con.execute("SELECT getvariable('p_fee_buckets')").fetchone()[0] is False
                fees = s.row("revenue", "summary")["fees"]
                expected = s.con.execute(f"SELECT coalesce(sum(fees), 0) FROM ({REF_FEES})").fetchone()[0]
                assert math.isclose(fees, expected, rel_tol=1e-12, abs_tol=1e-12), (filters, start, end)
        assert expected > 0


# -- MRR: states, buckets and the direct definitions ------------------------------------------------


@CACHE_SETTINGS
@given(
    subscriptions=subscription_data(max_subscriptions=5),
    calls=st.lists(st.tuples(st.sampled_from(MRR_PERIODS + PERIODS), st.sampled_from(REUSE_FILTERS),
                             st.sampled_from(REPORTING), st.sampled_from(MRR_OPTIONS)), min_size=1, max_size=3),
)
def test_mrr_caches_match_the_direct_definitions(subscriptions: Dataset, calls: list) -> None:
    with (tempfile.TemporaryDirectory(prefix="metric-cache-") as tmp,
          MetricSession.open(with_products(subscriptions, tmp)) as s):
        for period, filters, currency, options in calls:
            where = f"{period.label} {period.timezone} {filters} {currency} {options.mrr_cancel_at} {options.mrr_same_interval}"
            got = m.recurring_revenue(s, period, filters, currency, options)
            if got.summary.get("not_applicable_filters"):
                continue
            s.con.execute(REF_MRR_EVENTS)
            s.con.register("mrr_bounds", mrr_bounds(period))
            try:
                moves = s.con.execute(REF_MOVEMENTS).df()
                plans = s.con.execute(REF_BY_PLAN).df()
                # the by-plan fallback for period ends off the quarter hour reads states one by one
                s.con.execute("SET VARIABLE p_end_on_quarter_hour = false")
                scanned = s.query("mrr", "by_plan")
                s.con.execute("SET VARIABLE p_end_on_quarter_hour = true")
            finally:
                s.con.unregister("mrr_bounds")
            expected = moves[moves["interval_no"] > 0].drop(columns=["interval_no"]).reset_index(drop=True)
            same_frame(got.tables["movements"], expected, [c for c in expected.columns if c != "label"] + ["label"],
                       f"{where} movements")
            same_frame(got.tables["by_plan"], plans, ["product_id", "subscribers", "trialing", "mrr"], f"{where} by plan")
            same_frame(scanned, plans, ["product_id", "subscribers", "trialing", "mrr"], f"{where} by plan, scanned")
            if not moves.empty:
                whole = moves[moves["interval_no"] == 0].iloc[0]
                same_value(got.summary["net_revenue_retention"],
                           None if not whole["mrr_start"] else float(whole["retained_mrr_end"] / whole["mrr_start"]),
                           f"{where} NRR")


def test_mrr_options_rebuild_only_the_mrr_history(tmp_path: Path) -> None:
    """Changing the MRR conventions rebuilds the MRR tables, not the customer history."""
    from analytics_lib.warehouse import Warehouse
    from tests import metric_fixtures as fx

    wh = fx.build(Warehouse(tmp_path / "warehouse"))
    with MetricSession.open(wh) as s:
        may = Period.month(2024, 5, "UTC")
        m.customer_analytics(s, may, currency="USD")
        customer_key = s._built["customer_history"]
        mrr_key = s._built["mrr_history"]
        m.recurring_revenue(s, may, currency="USD", options=MetricOptions(mrr_cancel_at="request"))
        assert s._built["customer_history"] == customer_key
        assert s._built["mrr_history"] != mrr_key


# -- a dense deterministic warehouse with rows on every boundary ----------------------------------

BOUNDARY_ZONES = ("UTC", "Europe/Istanbul", "Asia/Kolkata", "America/New_York", "Europe/London")
DENSE_PERIODS = (
    Period.month(2024, 4, "UTC"),
    Period.month(2024, 5, "Europe/Istanbul"),
    Period.month(2024, 3, "Europe/London"),  # clocks go forward inside
    Period.month(2024, 6, "America/New_York"),
    Period.week(datetime(2024, 5, 15).date(), "Europe/Istanbul"),
    Period.day(datetime(2024, 4, 30).date(), "Asia/Kolkata"),
    Period.between("2024-03-20", "2024-05-10", "UTC"),
    Period.quarter(2024, 2, "Europe/Istanbul"),
)
DENSE_FILTERS = (None, {"country": ["TR", "US"]}, {"currency": "EUR"}, {"product": "course_py"},
                 {"provider": "stripe"}, {"plan_type": "monthly"})
DENSE_PLANS = {"plan_basic": 1, "plan_pro": 1, "plan_annual": 12}
DENSE_PRODUCTS = [
    {"product_id": p, "product_type": "course", "name": p, "list_price_minor": 1000, "currency": "USD", "active": True}
    for p in ("course_py", "course_ds", "course_ml", "course_go")
] + [
    {"product_id": p, "product_type": "subscription_plan", "name": p, "plan_interval_months": n,
     "list_price_minor": 1000, "currency": "USD", "active": True}
    for p, n in DENSE_PLANS.items()
]


def _boundaries() -> list[datetime]:
    """Local midnights of month starts and a few days in several zones, Feb to Aug 2024."""
    from zoneinfo import ZoneInfo

    out = []
    for zone in BOUNDARY_ZONES:
        tz = ZoneInfo(zone)
        for month in range(2, 9):
            for day in (1, 13, 20):
                out.append(datetime(2024, month, day, tzinfo=tz).astimezone(ZoneInfo("UTC")))
    return out


def dense_warehouse(location: Path) -> Any:
    import random
    from zoneinfo import ZoneInfo

    from analytics_lib.warehouse import Warehouse
    from tests.test_metrics_properties import FX_ROWS, payment_row

    rnd = random.Random(20240501)
    utc = ZoneInfo("UTC")
    edges = _boundaries()
    start, span = datetime(2024, 2, 1, tzinfo=utc), (datetime(2024, 8, 1, tzinfo=utc) - datetime(2024, 2, 1, tzinfo=utc))

    def instant() -> datetime:
        if rnd.random() < 0.3:
            return rnd.choice(edges) + timedelta(microseconds=rnd.choice([-1_000_000, -1, 0, 0, 1, 999_999]))
        return start + timedelta(seconds=rnd.randrange(int(span.total_seconds())))

    customers = [f"cus_{i:03d}" for i in range(60)]
    countries = {c: rnd.choice(("TR", "US", "DE", "GB")) for c in customers}
    wh = Warehouse(location)
    wh.upsert("fx_rates", FX_ROWS)
    wh.upsert("products", DENSE_PRODUCTS)
    wh.upsert("customers", [{"customer_id": c, "country_code": k, "is_guest": False,
                             "acquisition_channel": rnd.choice(("organic", "paid_search", None))}
                            for c, k in countries.items()])
    transactions, refunds, disputes, fees = [], [], [], []
    for i in range(900):
        status = rnd.choice(("completed", "completed", "completed", "refunded", "partially_refunded", "disputed",
                             "failed", "pending", "canceled"))
        currency = rnd.choice(("USD", "EUR", "TRY", "JPY"))
        created = instant()
        customer = rnd.choice(customers)
        product = rnd.choice(("course_py", "course_ds", "course_ml", "course_go", "plan_basic", "plan_pro", None))
        tid = f"tx_{i:04d}"
        amount = rnd.randint(100, 500_000)
        transactions.append(payment_row(
            tid, customer, amount, currency, status, created,
            payment_method=rnd.choice(("card", "paypal")), provider=rnd.choice(("stripe", "adyen", "iyzico")),
            country_code=countries[customer], product_id=product,
            plan_type="monthly" if product in ("plan_basic", "plan_pro") else "course" if product else None,
            failure_reason=rnd.choice(("insufficient_funds", "expired_card", "do_not_honor", None))
            if status == "failed" else None,
        ))
        if status in ("refunded", "partially_refunded", "disputed", "completed") and rnd.random() < 0.3:
            refunds.append({"refund_id": f"{tid}:re", "transaction_id": tid, "customer_id": customer,
                            "amount_minor": rnd.randint(1, amount), "currency": currency,
                            "status": rnd.choice(("succeeded", "succeeded", "failed")),
                            "reason": "requested_by_customer", "created_at": instant()})
        if status == "disputed" or rnd.random() < 0.05:
            won = rnd.choice(("won", "lost", "needs_response"))
            disputes.append({"dispute_id": f"{tid}:dp", "transaction_id": tid, "customer_id": customer,
                             "amount_minor": rnd.randint(1, amount), "currency": currency, "reason": "fraudulent",
                             "status": won, "outcome": won if won != "needs_response" else None,
                             "created_at": instant()})
        for j in range(rnd.randint(0, 2)):
            fees.append({"fee_id": f"{tid}:fee{j}", "transaction_id": tid, "fee_type": "processing",
                         "amount_minor": rnd.randint(1, max(1, amount // 20)), "currency": currency,
                         "provider": transactions[-1]["provider"], "created_at": instant()})
    wh.upsert("transactions", transactions)
    wh.upsert("refunds", refunds)
    wh.upsert("disputes", disputes)
    wh.upsert("fees", fees)

    events, subscriptions = [], []
    for i in range(80):
        sub, customer = f"sub_{i:03d}", rnd.choice(customers[:30])
        product = rnd.choice(sorted(DENSE_PLANS))
        terms = {"product": product, "price": rnd.randint(500, 40_000), "currency": rnd.choice(("USD", "EUR", "TRY")),
                 "discount": rnd.choice((0.0, 10.0, 50.0))}
        t = instant() - timedelta(days=40)
        state, n = "none", 0

        def add(kind: str, at: datetime, effective: datetime | None = None, previous: str | None = None,
                sub: str = sub, customer: str = customer) -> None:
            nonlocal n
            events.append({"event_id": f"{sub}:{n}", "subscription_id": sub, "customer_id": customer,
                           "event_type": kind, "occurred_at": at, "effective_at": effective or at,
                           "product_id": terms["product"], "previous_product_id": previous,  # noqa: B023 - called in this iteration
                           "price_minor": terms["price"], "currency": terms["currency"],  # noqa: B023
                           "billing_interval_months": DENSE_PLANS[terms["product"]],  # noqa: B023
                           "discount_percent": terms["discount"],  # noqa: B023
                           "reason": "voluntary" if kind == "cancel" else None})
            n += 1

        for _ in range(rnd.randint(1, 6)):
            # steps land on boundaries too, and sometimes at the same instant as the previous one
            t = rnd.choice(edges) if rnd.random() < 0.25 else t + timedelta(seconds=rnd.choice([0, 1, 3600, 86_400 * rnd.randint(1, 40)]))
            step = rnd.choice(("trial_start", "start", "change", "cancel_now", "cancel_at_end", "reactivate"))
            if step == "trial_start" and state == "none":
                add("trial_start", t)
                state = "trial"
            elif step == "start" and state in ("none", "trial"):
                add("start", t)
                state = "active"
            elif step == "change" and state == "active":
                previous = terms["product"]
                terms = {**terms, "product": rnd.choice(sorted(DENSE_PLANS)), "price": rnd.randint(500, 40_000)}
                add("upgrade" if terms["price"] >= 20_000 else "downgrade", t, previous=previous)
            elif step in ("cancel_now", "cancel_at_end") and state in ("active", "trial"):
                end = t if step == "cancel_now" else rnd.choice([t + timedelta(days=rnd.randint(1, 35)), rnd.choice(edges)])
                add("cancel", t, effective=max(end, t))
                state = "cancelled"
            elif step == "reactivate" and state == "cancelled":
                add("reactivate", t)
                state = "active"
        if n:
            subscriptions.append({"subscription_id": sub, "customer_id": customer, "product_id": terms["product"],
                                  "status": "active", "price_minor": terms["price"], "currency": terms["currency"],
                                  "billing_interval_months": DENSE_PLANS[terms["product"]],
                                  "discount_percent": terms["discount"],
                                  "discount_code": "SPRING10" if terms["discount"] else None,
                                  "started_at": start, "cancel_at_period_end": False})
    wh.upsert("subscriptions", subscriptions)
    wh.upsert("subscription_events", events)
    return wh


REF_CLAIMS = """
SELECT
    (SELECT coalesce(sum(r.amount_minor / s.scale * CASE WHEN r.currency = getvariable('rc') THEN 1.0 ELSE f.factor END), 0)
     FROM refunds r JOIN currency_scale s ON s.currency = r.currency
     LEFT JOIN fx_factor f ON f.currency = r.currency AND f.rate_date = CAST(r.created_at AS DATE)
     WHERE r.status = 'succeeded' AND r.created_at >= getvariable('p_start') AND r.created_at < getvariable('p_end')
       AND r.transaction_id IN (SELECT transaction_id FROM filtered_transactions)) AS refunds,
    (SELECT coalesce(sum(d.amount_minor / s.scale * CASE WHEN d.currency = getvariable('rc') THEN 1.0 ELSE f.factor END)
                     FILTER (WHERE d.status <> 'won'), 0)
     FROM disputes d JOIN currency_scale s ON s.currency = d.currency
     LEFT JOIN fx_factor f ON f.currency = d.currency AND f.rate_date = CAST(d.created_at AS DATE)
     WHERE d.created_at >= getvariable('p_start') AND d.created_at < getvariable('p_end')
       AND d.transaction_id IN (SELECT transaction_id FROM filtered_transactions)) AS chargebacks
"""


def test_dense_warehouse_every_cache_matches_its_definition(tmp_path: Path) -> None:
    """Rows on month, week and day boundaries of several zones (to the microsecond), events at the
    same instant, every filter kind: each cached number equals its direct definition."""
    wh = dense_warehouse(tmp_path / "warehouse")
    checked = {"pairs": 0, "cohort_rows": 0, "moving": 0}
    with MetricSession.open(wh) as s:
        for period in DENSE_PERIODS:
            for filters, currency in zip(DENSE_FILTERS, ("USD", "EUR", "TRY", "USD", "EUR", "USD"), strict=True):
                where = f"{period.label} {period.timezone} {filters} {currency}"
                c = m.customer_analytics(s, period, filters, currency)
                cohorts = m.cohorts(s, period, filters, currency).tables["long"]
                rev = m.revenue_analytics(s, period, filters, currency, with_growth=False)
                m.transaction_analytics(s, period, filters, currency)
                s.con.execute(REF_CUSTOMERS)
                ref = s.con.execute(REF_SUMMARY).df().iloc[0]
                for key in ("total_customers", "new_customers", "historical_clv", "customers_ever"):
                    value = ref[key]
                    same_value(c.summary[key], None if pd.isna(value) else value.item(), f"{where} {key}")
                gaps = s.con.execute(REF_TIME_BETWEEN).df().iloc[0]
                same_value(c.summary["repeat_customers"], int(gaps["repeat_customers"]), f"{where} repeat")
                same_value(c.summary["median_days_between_purchases"],
                           None if pd.isna(gaps["median_days"]) else float(gaps["median_days"]), f"{where} gap")
                same_frame(c.tables["rfm_segments"], s.con.execute(REF_SEGMENTS).df(),
                           ["segment", "customers", "share", "revenue", "avg_recency_days", "avg_frequency"], f"{where} rfm")
                per_customer = s.query("customers", "rfm").sort_values("customer_id").reset_index(drop=True)
                ref_rfm = s.con.execute("SELECT * FROM ref_rfm ORDER BY customer_id").df()
                same_frame(per_customer, ref_rfm, list(ref_rfm.columns), f"{where} rfm per customer")
                pairs = s.con.execute(REF_COURSE_PAIRS).df()
                same_frame(c.tables["course_pairs"], pairs, ["course_a", "course_b", "customers"], f"{where} pairs")
                ref_cohorts = s.con.execute(REF_COHORTS, {"cohort_months": 12}).df()
                same_frame(cohorts.assign(cohort_month=pd.to_datetime(cohorts["cohort_month"])),
                           ref_cohorts.assign(cohort_month=pd.to_datetime(ref_cohorts["cohort_month"])),
                           list(ref_cohorts.columns), f"{where} cohorts")
                claims = s.con.execute(REF_CLAIMS).df().iloc[0]
                same_value(rev.summary["refunds"], float(claims["refunds"]), f"{where} refunds")
                same_value(rev.summary["chargebacks"], float(claims["chargebacks"]), f"{where} chargebacks")
                fees = s.con.execute(REF_FEES).df()
                same_value(rev.summary["fees"], float(fees["fees"].sum()), f"{where} fees")
                by_day = fees.groupby("day")["fees"].sum()
                for _, row in rev.tables["daily"].iterrows():
                    same_value(float(row["fees"]), float(by_day.get(row["day"], 0.0)), f"{where} fees {row['day']}")
                by_provider = fees.groupby("provider")["fees"].sum()
                for _, row in m.performance(s, period, filters, currency).tables["providers"].iterrows():
                    same_value(float(row["fees"]), float(by_provider.get(row["provider"], 0.0)),
                               f"{where} fees of {row['provider']}")
                checked["pairs"] += len(pairs)
                checked["cohort_rows"] += len(ref_cohorts)

                for options in MRR_OPTIONS:
                    got = m.recurring_revenue(s, period, filters, currency, options)
                    if got.summary.get("not_applicable_filters"):
                        continue
                    s.con.execute(REF_MRR_EVENTS)
                    s.con.register("mrr_bounds", mrr_bounds(period))
                    try:
                        moves = s.con.execute(REF_MOVEMENTS).df()
                        plans = s.con.execute(REF_BY_PLAN).df()
                    finally:
                        s.con.unregister("mrr_bounds")
                    expected = moves[moves["interval_no"] > 0].drop(columns=["interval_no"]).reset_index(drop=True)
                    same_frame(got.tables["movements"], expected, list(expected.columns),
                               f"{where} {options} movements")
                    same_frame(got.tables["by_plan"], plans, ["product_id", "subscribers", "trialing", "mrr"],
                               f"{where} {options} by plan")
                    checked["moving"] += int(expected[["new_customers", "churned_customers"]].to_numpy().sum())
    # the data reach every branch: pairs, cohorts and MRR movements exist
    assert checked["pairs"] > 0 and checked["cohort_rows"] > 0 and checked["moving"] > 0, checked


AMOUNT_BANDS = ((10, "1: under 10"), (50, "2: 10-50"), (100, "3: 50-100"), (250, "4: 100-250"))


def band(amount: float) -> str:
    return next((name for top, name in AMOUNT_BANDS if amount < top), "5: 250 and more")


def test_top_failure_reason_is_the_most_frequent_then_first_by_name(tmp_path: Path) -> None:
    """failures_by_<dimension>.top_failure_reason: the most frequent reason among the value's failed
    payments, ties broken by name (recomputed in Python from the period's payments)."""
    wh = dense_warehouse(tmp_path / "warehouse")
    with MetricSession.open(wh) as s:
        for period in (Period.month(2024, 4, "UTC"), Period.week(datetime(2024, 5, 15).date(), "Europe/Istanbul")):
            section = m.transaction_analytics(s, period, currency="USD")
            rows = s.con.execute("SELECT payment_method, provider, country_code, amount_rc, attempt_number, "
                                 "is_failed, failure_reason FROM payments").fetchall()
            keys = {
                "payment_method": lambda r: r[0], "provider": lambda r: r[1], "country": lambda r: r[2],
                "amount_band": lambda r: band(r[3]), "attempt": lambda r: "first attempt" if r[4] == 1 else "retry",
            }
            for dim, key in keys.items():
                table = section.tables[f"failures_by_{dim}"]
                for _, row in table.iterrows():
                    counts: dict[str, int] = {}
                    for r in rows:
                        if key(r) == row["value"] and r[5] and r[6] is not None:
                            counts[r[6]] = counts.get(r[6], 0) + 1
                    expected = min(counts, key=lambda k: (-counts[k], k)) if counts else None
                    got = row["top_failure_reason"]
                    assert (None if pd.isna(got) else got) == expected, (period.label, dim, row["value"], counts)
