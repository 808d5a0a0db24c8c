"""The synthetic demo data: deterministic, internally consistent, and carrying the signal.

Small sizes keep the suite quick: a 1,000-customer, 6-month warehouse for determinism and
consistency, a 3,000-customer, 12-month one for the statistical signal checks. (Disputes are rare:
at 300 customers a seed could leave that table empty — two of seeds 7-11 did — so "every table is
filled" held by luck; at 1,000 customers each of those seeds gives 4-8 disputes.)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from analytics_lib.synth import GenerationSummary, generate
from analytics_lib.warehouse import TABLES, Warehouse
from analytics_lib.warehouse.schema import SUCCESSFUL_STATUSES

END = dt.date(2025, 6, 30)
CUTOFF = "TIMESTAMPTZ '2025-07-01 00:00:00+00'"
SUCCESSFUL = "(" + ", ".join(f"'{s}'" for s in SUCCESSFUL_STATUSES) + ")"
#: the tables the generator writes: not the ingestion records, nor anomaly_alerts (written by the
#: live anomaly rules from the data, analytics_lib.live)
GENERATED_TABLES = [name for name in TABLES if name not in ("ingest_rejects", "ingest_batches", "anomaly_alerts")]


def _build(path: Path, **kwargs) -> tuple[Warehouse, GenerationSummary]:
    wh = Warehouse(path)
    summary = generate(wh, **{"customers": 1000, "months": 6, "seed": 7, "end": END, **kwargs})
    return wh, summary


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Warehouse, GenerationSummary]:
    return _build(tmp_path_factory.mktemp("synth") / "small")


@pytest.fixture(scope="module")
def snap(small):
    with small[0].snapshot() as s:
        yield s


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory):
    wh, _ = _build(tmp_path_factory.mktemp("synth") / "medium", customers=3000, months=12)
    with wh.snapshot() as s:
        yield s


def _contents(wh: Warehouse, table: str) -> list[tuple]:
    spec = TABLES[table]
    cols = ", ".join(f'"{c}"' for c in spec.business_columns)
    keys = ", ".join(f'"{k}"' for k in spec.keys)
    with wh.snapshot(tables=[table]) as s:
        return s.con.sql(f'SELECT {cols} FROM "{table}" ORDER BY {keys}').fetchall()


# ---------------------------------------------------------------------------------------------
# API and determinism
# ---------------------------------------------------------------------------------------------
def test_fills_every_table_and_summarises_the_load(small, snap):
    wh, summary = small
    for name in GENERATED_TABLES:
        assert summary.rows[name] > 0, name
        assert snap.count(name) == summary.rows[name], name
    assert snap.count("ingest_rejects") == 0
    batch = snap.sql("SELECT * FROM ingest_batches")
    assert len(batch) == 1
    assert batch.loc[0, "source"] == "synthetic"
    assert batch.loc[0, "batch_id"] == summary.batch_id
    assert batch.loc[0, "rows_read"] == sum(summary.rows[n] for n in GENERATED_TABLES)
    assert batch.loc[0, "inserted"] == batch.loc[0, "rows_read"]
    assert summary.seed == 7 and summary.parameters["customers"] == 1000
    assert summary.parameters["start"] == "2025-01-01" and summary.seconds > 0


def test_same_arguments_give_identical_tables_and_another_seed_differs(small, tmp_path):
    wh1, _ = small
    wh2, _ = _build(tmp_path / "again")
    for name in GENERATED_TABLES:
        assert _contents(wh1, name) == _contents(wh2, name), name
    wh3, _ = _build(tmp_path / "other", seed=8)
    assert _contents(wh1, "transactions") != _contents(wh3, "transactions")
    assert _contents(wh1, "customers") != _contents(wh3, "customers")


def test_benchmark_mode_hits_the_transaction_target(tmp_path):
    wh = Warehouse(tmp_path / "bench")
    calls: list[tuple[str, int, int]] = []
    summary = generate(wh, transactions=20_000, months=6, end=END,
                       progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert 18_000 <= summary.rows["transactions"] <= 22_000
    assert summary.parameters["transactions_target"] == 20_000
    stages = {c[0] for c in calls}
    assert {"pilot", "months", "write"} <= stages
    months = [c for c in calls if c[0] == "months"]
    assert months[-1][1:] == (6, 6)


# ---------------------------------------------------------------------------------------------
# Internal consistency (SQL on the snapshot)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", ["transactions", "subscriptions", "subscription_events", "refunds",
                                   "disputes", "user_activity", "support_tickets", "fraud_alerts",
                                   "checkout_events"])
def test_every_customer_reference_exists(snap, table):
    assert snap.scalar(f"""SELECT count(*) FROM "{table}" x
        WHERE x.customer_id IS NOT NULL AND x.customer_id NOT IN (SELECT customer_id FROM customers)""") == 0


def test_signup_precedes_first_payment_and_times_stay_in_window(snap):
    assert snap.scalar("""SELECT count(*) FROM customers c JOIN
        (SELECT customer_id, min(created_at) first_at FROM transactions GROUP BY 1) t USING (customer_id)
        WHERE c.signup_at > t.first_at""") == 0
    assert snap.scalar(f"""SELECT count(*) FROM transactions
        WHERE created_at < TIMESTAMPTZ '2025-01-01 00:00:00+00' OR created_at >= {CUTOFF}""") == 0
    for table, col in (("refunds", "created_at"), ("disputes", "created_at"), ("fees", "created_at"),
                       ("checkout_events", "occurred_at"), ("subscription_events", "occurred_at"),
                       ("support_tickets", "created_at"), ("fraud_alerts", "created_at")):
        assert snap.scalar(f'SELECT count(*) FROM "{table}" WHERE {col} >= {CUTOFF}') == 0, table


def test_partition_columns_match_their_timestamps(snap):
    assert snap.scalar("SELECT count(*) FROM transactions WHERE created_month <> strftime(created_at, '%Y-%m')") == 0
    assert snap.scalar("SELECT count(*) FROM checkout_events WHERE occurred_month <> strftime(occurred_at, '%Y-%m')") == 0
    assert snap.scalar("SELECT count(*) FROM user_activity WHERE activity_month <> strftime(activity_date, '%Y-%m')") == 0


def test_payment_states_are_consistent(snap):
    bad = snap.scalar(f"""SELECT count(*) FROM transactions WHERE
           (status IN {SUCCESSFUL}) <> (completed_at IS NOT NULL)
        OR (status = 'failed') <> (failed_at IS NOT NULL)
        OR (status = 'failed') <> (failure_reason IS NOT NULL)
        OR (status IN {SUCCESSFUL}) <> (outcome_type = 'authorized')
        OR (status = 'pending') <> (outcome_type = 'pending')
        OR (failure_reason = 'fraudulent') <> (outcome_type = 'blocked')
        OR (failure_reason = 'processing_error') <> (outcome_type = 'provider_error')
        OR completed_at <= created_at OR failed_at <= created_at
        OR amount_minor <= 0 OR risk_score NOT BETWEEN 0 AND 100
        OR (payment_method = 'card') <> (card_brand IS NOT NULL)
        OR (card_brand = 'troy' AND card_country <> 'TR')""")
    assert bad == 0
    # the brief's latency: a few hundred milliseconds to seconds for most card payments
    median = snap.scalar("""SELECT median(epoch(completed_at) - epoch(created_at)) FROM transactions
        WHERE payment_method = 'card' AND completed_at IS NOT NULL""")
    assert 0.2 < median < 5


def test_refunds_never_exceed_the_payment_and_only_follow_successful_payments(snap):
    assert snap.scalar(f"""SELECT count(*) FROM
        (SELECT transaction_id, sum(amount_minor) refunded, any_value(currency) cur FROM refunds
         WHERE status <> 'failed' GROUP BY 1) r
        LEFT JOIN transactions t USING (transaction_id)
        WHERE t.transaction_id IS NULL OR r.refunded > t.amount_minor OR t.status NOT IN {SUCCESSFUL}
           OR r.cur <> t.currency""") == 0
    # transaction status follows the succeeded refunds
    assert snap.scalar("""SELECT count(*) FROM transactions t LEFT JOIN
        (SELECT transaction_id, sum(amount_minor) refunded FROM refunds WHERE status = 'succeeded' GROUP BY 1) r
        USING (transaction_id)
        WHERE (t.status = 'refunded') <> (coalesce(r.refunded, 0) = t.amount_minor)
           OR (t.status = 'partially_refunded') <> (coalesce(r.refunded, 0) BETWEEN 1 AND t.amount_minor - 1)""") == 0
    assert snap.scalar("""SELECT count(*) FROM refunds r JOIN transactions t USING (transaction_id)
        WHERE r.created_at <= t.completed_at
           OR r.created_at > t.completed_at + INTERVAL 30 DAY""") == 0


def test_disputes_arrive_30_to_90_days_after_a_successful_payment(snap):
    assert snap.scalar("""SELECT count(*) FROM disputes d LEFT JOIN transactions t USING (transaction_id)
        WHERE t.transaction_id IS NULL OR t.status <> 'disputed'
           OR (epoch(d.created_at) - epoch(t.completed_at)) / 86400 NOT BETWEEN 30 AND 90
           OR d.amount_minor <> t.amount_minor OR d.currency <> t.currency
           OR (d.status IN ('won', 'lost')) <> (d.outcome IS NOT NULL)
           OR (d.outcome IS NOT NULL) <> (d.closed_at IS NOT NULL)""") == 0
    assert snap.scalar("""SELECT count(*) FROM transactions WHERE status = 'disputed'
        AND transaction_id NOT IN (SELECT transaction_id FROM disputes)""") == 0


def test_fees_only_on_successful_payments(snap):
    assert snap.scalar(f"""SELECT count(*) FROM fees f LEFT JOIN transactions t USING (transaction_id)
        WHERE t.transaction_id IS NULL OR t.status NOT IN {SUCCESSFUL} OR f.currency <> t.currency
           OR f.provider <> t.provider OR f.amount_minor <= 0
           OR (f.fee_type = 'dispute') <> (t.status = 'disputed' AND f.created_at > t.completed_at + INTERVAL 29 DAY)""") == 0
    # every captured payment carries its processing and fixed fee
    assert snap.scalar(f"""SELECT count(*) FROM transactions t WHERE t.status IN {SUCCESSFUL}
        AND (SELECT count(*) FROM fees f WHERE f.transaction_id = t.transaction_id
             AND f.fee_type IN ('processing', 'fixed')) <> 2""") == 0


def test_retries_point_to_a_failed_first_attempt(snap):
    assert snap.scalar("SELECT count(*) FROM transactions WHERE billing_reason = 'retry'") > 0
    assert snap.scalar("""SELECT count(*) FROM transactions r LEFT JOIN transactions o
            ON r.original_transaction_id = o.transaction_id
        WHERE (r.original_transaction_id IS NOT NULL OR r.attempt_number > 1 OR r.billing_reason = 'retry')
          AND (o.transaction_id IS NULL OR r.attempt_number NOT BETWEEN 2 AND 4 OR o.attempt_number <> 1
               OR r.billing_reason <> 'retry' OR o.status <> 'failed'
               OR o.subscription_id <> r.subscription_id OR r.created_at <= o.created_at)""") == 0


def test_every_currency_day_used_has_an_fx_rate(snap):
    assert snap.scalar("""WITH used AS (
            SELECT currency, created_at::DATE d FROM transactions
            UNION SELECT currency, created_at::DATE FROM fees
            UNION SELECT currency, created_at::DATE FROM refunds
            UNION SELECT currency, created_at::DATE FROM disputes
            UNION SELECT currency, spend_date FROM marketing_spend
            UNION SELECT currency, started_at::DATE FROM subscriptions)
        SELECT count(*) FROM used u WHERE NOT EXISTS
            (SELECT 1 FROM fx_rates f WHERE f.currency = u.currency AND f.rate_date = u.d)""") == 0
    assert snap.scalar("SELECT count(*) FROM fx_rates WHERE currency = 'USD' AND usd_per_unit <> 1") == 0
    assert snap.scalar("SELECT min(rate_date) FROM fx_rates") == dt.date(2024, 12, 2)


def test_subscription_status_follows_its_events(snap):
    rows = snap.sql(f"""WITH last AS (
            SELECT subscription_id, arg_max(event_type, occurred_at) ev, arg_max(effective_at, occurred_at) eff,
                   min(occurred_at) first_at, arg_min(event_type, occurred_at) first_ev
            FROM subscription_events GROUP BY 1)
        SELECT s.status, l.ev, s.cancel_at_period_end, l.eff < {CUTOFF} AS effective_now,
               s.trial_end_at >= {CUTOFF} AS in_trial, l.first_at = s.started_at AS starts_together,
               l.first_ev, s.ended_at IS NOT NULL AS ended, count(*) n
        FROM subscriptions s LEFT JOIN last l USING (subscription_id) GROUP BY ALL""")
    assert not rows["ev"].isna().any(), "a subscription without events"
    assert rows["starts_together"].all()
    for r in rows.itertuples():
        assert r.first_ev in ("trial_start", "start")
        if r.status == "canceled":
            assert r.ev == "cancel" and r.effective_now and r.ended, r
        elif r.status == "trialing":
            assert r.in_trial and r.first_ev == "trial_start" and not r.ended, r
            assert r.ev == "trial_start" or (r.ev == "cancel" and r.cancel_at_period_end), r
        else:
            assert r.status in ("active", "past_due", "unpaid") and not r.ended, r
            assert r.ev in ("start", "upgrade", "downgrade", "reactivate") or (
                r.ev == "cancel" and r.cancel_at_period_end and not r.effective_now), r
    assert snap.scalar("""SELECT count(*) FROM subscription_events e
        WHERE e.subscription_id NOT IN (SELECT subscription_id FROM subscriptions)
           OR (e.event_type IN ('upgrade', 'downgrade')) <> (e.previous_product_id IS NOT NULL)
           OR (e.event_type = 'cancel') <> (e.reason IS NOT NULL)
           OR e.effective_at < e.occurred_at""") == 0
    # current terms are the terms of the latest event
    assert snap.scalar("""SELECT count(*) FROM subscriptions s JOIN
        (SELECT subscription_id, arg_max(product_id, occurred_at) product_id, arg_max(price_minor, occurred_at) price
         FROM subscription_events GROUP BY 1) e USING (subscription_id)
        WHERE s.product_id <> e.product_id OR s.price_minor <> e.price""") == 0


def test_renewals_charge_existing_subscriptions(snap):
    assert snap.scalar("""SELECT count(*) FROM transactions t
        WHERE t.billing_reason IN ('subscription_cycle', 'retry')
          AND (t.subscription_id IS NULL OR t.subscription_id NOT IN (SELECT subscription_id FROM subscriptions))""") == 0
    # the first payment of a paid subscription is its subscription_create charge
    assert snap.scalar("""SELECT count(*) FROM subscriptions s WHERE s.current_period_start IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.subscription_id = s.subscription_id
                        AND t.billing_reason = 'subscription_create')""") == 0


def test_checkout_sessions_match_payments(snap):
    assert snap.scalar(f"""SELECT count(*) FROM checkout_events c LEFT JOIN transactions t USING (transaction_id)
        WHERE c.transaction_id IS NOT NULL AND (t.transaction_id IS NULL
           OR (c.step = 'payment_succeeded' AND t.status NOT IN {SUCCESSFUL})
           OR c.step NOT IN ('submit_payment', 'payment_succeeded'))""") == 0
    # steps of a session happen in funnel order
    assert snap.scalar("""SELECT count(*) FROM (
            SELECT session_id, max(occurred_at) FILTER (WHERE step = 'view_product') v,
                   min(occurred_at) FILTER (WHERE step = 'submit_payment') s
            FROM checkout_events GROUP BY 1) WHERE s <= v""") == 0
    # every customer-initiated purchase or subscription start in the app came through a session
    assert snap.scalar("""SELECT count(*) FROM transactions t
        WHERE t.billing_reason IN ('purchase', 'subscription_create') AND t.attempt_number = 1
          AND t.transaction_id NOT IN (SELECT transaction_id FROM checkout_events WHERE transaction_id IS NOT NULL)
          AND t.customer_id NOT IN (SELECT customer_id FROM fraud_alerts WHERE alert_type = 'card_testing')
          AND NOT (t.billing_reason = 'subscription_create' AND t.created_at > (
                SELECT trial_end_at FROM subscriptions s WHERE s.subscription_id = t.subscription_id) - INTERVAL 1 MINUTE)""") == 0


def test_personal_data_is_hashed(snap):
    assert snap.scalar("SELECT count(*) FROM customers WHERE NOT regexp_full_match(email_hash, '[0-9a-f]{64}')") == 0
    assert snap.scalar("SELECT count(*) FROM transactions WHERE NOT regexp_full_match(ip_hash, '[0-9a-f]{64}')") == 0
    assert snap.scalar("SELECT count(DISTINCT email_hash) = count(*) FROM customers")


# ---------------------------------------------------------------------------------------------
# Signal: the patterns reports and models rely on
# ---------------------------------------------------------------------------------------------
def test_failure_rates_depend_on_method_and_card_age(medium):
    by_method = medium.sql("""SELECT payment_method, avg((status = 'failed')::INT) fail
        FROM transactions WHERE attempt_number = 1 GROUP BY 1""").set_index("payment_method")["fail"]
    assert by_method["card"] > by_method["paypal"] > 0
    assert by_method["card"] > by_method["apple_pay"]
    by_age = medium.sql("""SELECT card_age_days < 7 AS new_card, avg((status = 'failed')::INT) fail
        FROM transactions WHERE payment_method = 'card' AND attempt_number = 1 AND card_age_days IS NOT NULL
        GROUP BY 1""").set_index("new_card")["fail"]
    assert by_age[True] > 1.5 * by_age[False]
    expired = medium.scalar("""SELECT count(*) FROM transactions WHERE failure_reason = 'expired_card'
        AND card_expiry_month >= date_trunc('month', created_at)::DATE""")
    assert expired == 0


def test_churned_subscribers_had_more_failures_and_less_activity(medium):
    churn = medium.sql("""
        WITH subs AS (
            SELECT s.subscription_id, s.customer_id, s.status,
                   coalesce(s.ended_at, TIMESTAMPTZ '2025-07-01 00:00:00+00') AS until
            FROM subscriptions s
            WHERE s.current_period_start IS NOT NULL AND s.started_at < TIMESTAMPTZ '2025-04-01 00:00:00+00'
              AND (s.status IN ('active') OR s.subscription_id IN
                   (SELECT subscription_id FROM subscription_events WHERE event_type = 'cancel'
                    AND reason = 'voluntary'))),
        fails AS (SELECT subscription_id, count(*) FILTER (WHERE status = 'failed') AS failures
                  FROM transactions WHERE subscription_id IS NOT NULL GROUP BY 1),
        act AS (SELECT subs.subscription_id, count(a.activity_date) AS active_days
                FROM subs LEFT JOIN user_activity a ON a.customer_id = subs.customer_id
                 AND a.activity_date >= (subs.until - INTERVAL 30 DAY)::DATE AND a.activity_date < subs.until::DATE
                GROUP BY 1)
        SELECT subs.status = 'canceled' AS churned, avg(coalesce(failures, 0)) failures,
               avg(active_days) active_days, count(*) n
        FROM subs LEFT JOIN fails USING (subscription_id) JOIN act USING (subscription_id) GROUP BY 1""").set_index("churned")
    assert churn.loc[True, "n"] > 30 and churn.loc[False, "n"] > 30
    assert churn.loc[True, "active_days"] < 0.8 * churn.loc[False, "active_days"]
    involuntary = medium.sql("""SELECT s.status = 'canceled' AND e.reason = 'payment_failed' AS dunning_churn,
            avg(f.failures) failures FROM subscriptions s
        LEFT JOIN (SELECT subscription_id, any_value(reason) reason FROM subscription_events
                   WHERE event_type = 'cancel' GROUP BY 1) e USING (subscription_id)
        JOIN (SELECT subscription_id, count(*) FILTER (WHERE status = 'failed') failures FROM transactions
              WHERE subscription_id IS NOT NULL GROUP BY 1) f USING (subscription_id)
        GROUP BY 1""").set_index("dunning_churn")["failures"]
    assert involuntary[True] >= 4 > 1 > involuntary[False]
    tickets = medium.sql("""SELECT s.status = 'canceled' AS churned,
            avg((SELECT count(*) FROM support_tickets t WHERE t.customer_id = s.customer_id)) tickets
        FROM subscriptions s WHERE s.current_period_start IS NOT NULL GROUP BY 1""").set_index("churned")["tickets"]
    assert tickets[True] > tickets[False]


def test_a_tail_of_heavy_ticket_writers_who_churn_more(medium):
    # the most tickets each subscriber wrote in any 90 days, against whether they cancelled
    heavy = medium.sql("""
        WITH windows AS (
            SELECT customer_id, count(*) OVER (PARTITION BY customer_id ORDER BY created_at
                                               RANGE BETWEEN INTERVAL 90 DAY PRECEDING AND CURRENT ROW) AS n
            FROM support_tickets),
        most AS (SELECT customer_id, max(n) AS tickets_90d FROM windows GROUP BY 1)
        SELECT coalesce(m.tickets_90d, 0) > 3 AS heavy, count(*) AS n,
               avg((s.status = 'canceled')::INTEGER) AS churn
        FROM subscriptions s LEFT JOIN most m USING (customer_id)
        WHERE s.current_period_start IS NOT NULL GROUP BY 1""").set_index("heavy")
    assert heavy.loc[True, "n"] >= 10  # a tail, not nobody ...
    assert heavy.loc[True, "n"] < 0.1 * heavy.loc[False, "n"]  # ... and not everybody
    assert heavy.loc[True, "churn"] > 1.5 * heavy.loc[False, "churn"]


def test_fraud_chargebacks_score_higher_than_other_payments(medium):
    scores = medium.sql(f"""SELECT t.transaction_id IN (SELECT transaction_id FROM disputes WHERE reason = 'fraudulent')
            AS fraud_chargeback, avg(t.risk_score) risk, count(*) n
        FROM transactions t WHERE t.status IN {SUCCESSFUL} GROUP BY 1""").set_index("fraud_chargeback")
    assert scores.loc[True, "n"] >= 5
    assert scores.loc[True, "risk"] > 2 * scores.loc[False, "risk"]
    alerts = medium.sql("""SELECT status, avg(risk_score) risk FROM fraud_alerts
        WHERE status <> 'open' GROUP BY 1""").set_index("status")["risk"]
    assert alerts["confirmed_fraud"] > alerts["false_positive"]
    # the alerts are imperfect: most are false positives
    counts = medium.sql("SELECT status, count(*) n FROM fraud_alerts GROUP BY 1").set_index("status")["n"]
    assert counts["false_positive"] > counts["confirmed_fraud"] > 0


def test_acquisition_grows_and_follows_spend(medium):
    monthly = medium.sql("""SELECT date_trunc('month', signup_at) m, count(*) n FROM customers
        GROUP BY 1 ORDER BY 1""")["n"].tolist()
    assert sum(monthly[-3:]) > 1.2 * sum(monthly[:3])
    per_campaign = medium.sql("""SELECT s.campaign_id, sum(s.spend_minor * f.usd_per_unit) spend,
            (SELECT count(*) FROM customers c WHERE c.campaign_id = s.campaign_id) customers
        FROM marketing_spend s JOIN fx_rates f ON f.rate_date = s.spend_date AND f.currency = s.currency
        GROUP BY 1""")
    assert per_campaign["spend"].corr(per_campaign["customers"], method="spearman") > 0.6


def test_checkout_funnel_has_drop_off(medium):
    steps = medium.sql("""SELECT step, device_class, count(DISTINCT session_id) n FROM checkout_events
        GROUP BY ALL""").pivot(index="step", columns="device_class", values="n")
    for device in ("desktop", "mobile"):
        col = steps[device]
        assert col["view_product"] > col["begin_checkout"] > col["enter_payment"] > col["submit_payment"]
        assert col["submit_payment"] >= col["payment_succeeded"]
    enter_to_submit = steps.loc["submit_payment"] / steps.loc["enter_payment"]
    assert enter_to_submit["mobile"] < enter_to_submit["desktop"] < 0.9
