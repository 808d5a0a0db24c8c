-- Scope set-up: the period's rows, filtered and converted to the reporting currency, in one
-- place. Variables: p_start/p_end (UTC instants of the period's local midnights), tz,
-- rc (reporting currency), f_<filter> (accepted values; empty = no filter), p_local_offset_us
-- (the zone's UTC offset when it is constant over the scope, else NULL).
-- Money columns ending in _rc are in major units of the reporting currency.

-- name: filtered_transactions
CREATE OR REPLACE TEMP VIEW filtered_transactions AS
SELECT *
FROM transactions t
WHERE (len(getvariable('f_currency')) = 0 OR list_contains(getvariable('f_currency'), t.currency))
  AND (len(getvariable('f_country')) = 0 OR list_contains(getvariable('f_country'), t.country_code))
  AND (len(getvariable('f_payment_method')) = 0 OR list_contains(getvariable('f_payment_method'), t.payment_method))
  AND (len(getvariable('f_provider')) = 0 OR list_contains(getvariable('f_provider'), t.provider))
  AND (len(getvariable('f_plan_type')) = 0 OR list_contains(getvariable('f_plan_type'), t.plan_type))
  AND (len(getvariable('f_product')) = 0 OR list_contains(getvariable('f_product'), t.product_id))
  AND (len(getvariable('f_campaign')) = 0 OR list_contains(getvariable('f_campaign'), t.campaign_id))
  AND (len(getvariable('f_discount_code')) = 0 OR list_contains(getvariable('f_discount_code'), t.discount_code))

-- name: period_transactions
-- The period's attempts after filters with the derived columns (a view: `payments` and
-- `payments_summary` store the columns they need of it).
CREATE OR REPLACE TEMP VIEW period_transactions AS
SELECT
    t.*,
    is_successful(t.status) AS is_success,
    t.status = 'failed' AS is_failed,
    CASE WHEN getvariable('p_local_offset_us') IS NULL THEN timezone(getvariable('tz'), t.created_at)
         ELSE make_timestamp(epoch_us(t.created_at) + getvariable('p_local_offset_us')) END AS created_local,
    t.amount_minor / s.scale
        * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    t.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM filtered_transactions t
JOIN currency_scale s ON s.currency = t.currency
LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = utc_date(t.created_at)
WHERE t.created_month BETWEEN getvariable('p_start_month') AND getvariable('p_end_month')
  AND t.created_at >= getvariable('p_start') AND t.created_at < getvariable('p_end')

-- name: payments
-- requires: period_transactions
CREATE OR REPLACE TEMP TABLE payments AS
SELECT
    transaction_id, customer_id, amount_minor, currency, status, outcome_type,
    payment_method, provider, country_code, created_at, completed_at, failure_reason,
    attempt_number, original_transaction_id, billing_reason, product_id,
    subscription_id, plan_type, campaign_id, discount_code, risk_score,
    fraud_indicators,
    is_success, is_failed, created_local, amount_rc, missing_rate
FROM period_transactions

-- name: payments_summary
-- `payments` of a scope opened with summary_only (the trends' other period): only the columns
-- that transactions.summary, revenue.summary, revenue.daily and customers.summary (and the
-- missing-rate check) read, which makes it about a third of the full table to build. A query
-- that reads another column fails in such a scope (no such column) instead of answering.
-- requires: period_transactions
CREATE OR REPLACE TEMP TABLE payments AS
SELECT
    customer_id, amount_minor, currency, status, outcome_type, created_at, subscription_id,
    is_success, is_failed, created_local, amount_rc, missing_rate
FROM period_transactions

-- name: payments_live
-- `payments` of a real-time window (scope columns "live"): only the columns that realtime.sql,
-- transactions.failure_reasons and transactions.by_dimension (the operations dashboard's provider
-- status) read, which halves the window's build at 10M rows of history. Other queries fail in
-- such a scope (no such column); a full scope of the same window serves it.
-- requires: period_transactions
CREATE OR REPLACE TEMP TABLE payments AS
SELECT
    customer_id, currency, status, payment_method, provider, country_code, failure_reason,
    created_at, is_success, is_failed, created_local, amount_rc, missing_rate
FROM period_transactions

-- name: paying_customers
-- The customers with a successful payment in the period (after filters), counted by several families.
CREATE OR REPLACE TEMP TABLE paying_customers AS
SELECT DISTINCT customer_id FROM payments WHERE is_success

-- name: alert_transactions
-- Under filters, the payments of the window's fraud alerts that match them. Unfiltered scopes
-- need no payment at all for alert counts: the table is empty, built once for all of them.
-- without filters: empty
CREATE OR REPLACE TEMP TABLE alert_transactions AS
SELECT transaction_id FROM filtered_transactions
WHERE getvariable('filters_active')
  AND transaction_id IN (SELECT transaction_id FROM fraud_alerts
                         WHERE created_at >= getvariable('p_start') AND created_at < getvariable('p_end'))

-- name: scoped_refunds
-- Refunds issued in the period (status succeeded) whose payment passes the filters.
-- requires: history_refunds
CREATE OR REPLACE TEMP TABLE scoped_refunds AS
SELECT * FROM history_refunds
WHERE created_at >= getvariable('p_start') AND created_at < getvariable('p_end')

-- name: scoped_disputes
-- Disputes opened in the period whose payment passes the filters.
-- requires: history_disputes
CREATE OR REPLACE TEMP TABLE scoped_disputes AS
SELECT * FROM history_disputes
WHERE created_at >= getvariable('p_start') AND created_at < getvariable('p_end')

-- name: scoped_fees
-- Fees charged in the period (of payments that pass the filters) per local day and provider:
-- from the history's 15-minute buckets when the period's bounds fall on bucket boundaries
-- (p_fee_buckets, set by the session), otherwise from the fees themselves.
-- requires: fee_buckets
CREATE OR REPLACE TEMP TABLE scoped_fees AS
WITH rows AS (
    SELECT day, provider, amount_rc, missing
    FROM fee_buckets
    WHERE getvariable('p_fee_buckets')
      AND bucket >= getvariable('p_start') AND bucket < getvariable('p_end')
    UNION ALL
    SELECT CAST(timezone(getvariable('tz'), e.created_at) AS DATE), e.provider,
           e.amount_minor / s.scale * CASE WHEN e.currency = getvariable('rc') THEN 1.0 ELSE f.factor END,
           CASE WHEN e.currency <> getvariable('rc') AND f.factor IS NULL
                THEN struct_pack(d := utc_date(e.created_at), c := e.currency) END
    FROM fees e
    JOIN currency_scale s ON s.currency = e.currency
    LEFT JOIN fx_factor f ON f.currency = e.currency AND f.rate_date = utc_date(e.created_at)
    WHERE NOT getvariable('p_fee_buckets')
      AND e.created_at >= getvariable('p_start') AND e.created_at < getvariable('p_end')
      AND (NOT getvariable('filters_active')
           OR e.transaction_id IN (SELECT transaction_id FROM filtered_transactions))
)
SELECT day, provider, sum(amount_rc) AS amount_rc,
       bool_or(missing IS NOT NULL) AS missing_rate,
       min(missing).c AS missing_currency, min(missing).d AS missing_day
FROM rows
GROUP BY ALL

-- name: customer_tail
-- Successful payments from the start of the period end's local month (p_cut) to the period end,
-- per customer: the part of the last month that the history's whole months do not cover (empty
-- when the period ends on a month boundary), with the customer's number, first payment ever and
-- cohort from customer_state.
-- requires: customer_state
CREATE OR REPLACE TEMP TABLE customer_tail AS
WITH tail AS (
SELECT
    t.customer_id,
    count(*) AS payments,
    sum(t.amount_minor / s.scale
        * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END) AS revenue,
    min(t.created_at) AS first_at,
    max(t.created_at) AS last_at,
    min(struct_pack(d := utc_date(t.created_at), c := t.currency))
        FILTER (WHERE t.currency <> getvariable('rc') AND f.factor IS NULL) AS missing
FROM filtered_transactions t
JOIN currency_scale s ON s.currency = t.currency
LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = utc_date(t.created_at)
WHERE is_successful(t.status)
  AND t.created_month BETWEEN getvariable('p_cut_month') AND getvariable('p_end_month')
  AND t.created_at >= getvariable('p_cut') AND t.created_at < getvariable('p_end')
GROUP BY ALL
)
SELECT s.ck, s.first_at AS first_paid_at, s.cohort_month, tail.*
FROM tail JOIN customer_state s USING (customer_id)

-- name: customer_history_missing
-- The first payment without a rate among all successful payments up to the period end (whole
-- months before p_cut from the history, the rest from customer_tail): customer measures that
-- look at history are an error when one exists.
-- requires: customer_months_missing, customer_tail
CREATE OR REPLACE TEMP TABLE customer_history_missing AS
WITH m AS (
    SELECT missing FROM customer_months_missing WHERE month < getvariable('p_cut_date')
    UNION ALL
    SELECT missing FROM customer_tail WHERE missing IS NOT NULL
)
SELECT true AS missing_rate, min(missing).c AS missing_currency, min(missing).d AS missing_day
FROM m HAVING count(*) > 0

-- name: customer_firsts
-- Each customer who paid before the period end, as of the period end: first and last successful
-- payment, number of payments and revenue. Whole months before p_cut come from the history's
-- timeline (one row per customer: their last month before the cut), the rest from customer_tail.
-- A view (each reader filters the timeline again; cheaper than materialising every customer).
-- requires: customer_history_missing, customer_timeline, customer_tail
CREATE OR REPLACE TEMP VIEW customer_firsts AS
WITH at_cut AS (
    SELECT ck, first_at, last_at, payments, revenue
    FROM customer_timeline
    WHERE month < getvariable('p_cut_date')
      AND (next_month IS NULL OR next_month >= getvariable('p_cut_date'))
),
tail AS (SELECT ck, first_paid_at AS first_at, last_at, payments, revenue FROM customer_tail)
SELECT ck,
       coalesce(c.first_at, t.first_at) AS first_at,
       coalesce(t.last_at, c.last_at) AS last_at,
       coalesce(c.payments, 0) + coalesce(t.payments, 0) AS payments,
       CASE WHEN t.ck IS NULL THEN c.revenue WHEN c.ck IS NULL THEN t.revenue ELSE c.revenue + t.revenue END AS revenue
FROM at_cut c FULL JOIN tail t USING (ck)

-- name: customer_measures
-- Per customer who paid before the period end (no id: for distributions only): recency in days
-- since the last payment, frequency (payments), monetary (revenue) and, with 2+ payments, the
-- average days between consecutive payments. Read by the RFM cut points and segments and the
-- time between purchases, so the as-of state is computed once.
-- requires: customer_firsts
CREATE OR REPLACE TEMP TABLE customer_measures AS
SELECT days_between(last_at, getvariable('p_end')) AS recency_days,
       payments AS frequency,
       revenue AS monetary,
       CASE WHEN payments > 1 THEN seconds_between(first_at, last_at) / 86400.0 / (payments - 1) END AS gap_days
FROM customer_firsts

-- name: rfm_cuts
-- RFM as of the period end. Scores are quintiles by value: the 4 cut points of recency (days since
-- the last payment), frequency (payments) and monetary (revenue) over every customer who paid
-- before the period end, computed once, so ties share a score and no sort of all customers is
-- needed (the scores and segments: _session.sql rfm_score, rfm_recency_score, rfm_segment).
-- requires: customer_measures
CREATE OR REPLACE TEMP TABLE rfm_cuts AS
SELECT quantile_cont(recency_days, [0.2, 0.4, 0.6, 0.8]) AS r,
       quantile_cont(frequency, [0.2, 0.4, 0.6, 0.8]) AS f,
       quantile_cont(monetary, [0.2, 0.4, 0.6, 0.8]) AS m
FROM customer_measures

-- name: customer_rfm
-- One row per customer: recency, frequency, monetary, their 1-5 scores (5 = best: most recent,
-- most frequent, most revenue) and the segment. A view: only per-customer questions read it.
-- requires: customer_firsts, rfm_cuts
CREATE OR REPLACE TEMP VIEW customer_rfm AS
WITH base AS (
    SELECT ck,
           days_between(last_at, getvariable('p_end')) AS recency_days,
           payments AS frequency,
           revenue AS monetary
    FROM customer_firsts
),
scored AS (
    SELECT base.*,
           rfm_recency_score(recency_days, c.r) AS r_score,
           rfm_score(frequency, c.f) AS f_score,
           rfm_score(monetary, c.m) AS m_score
    FROM base, rfm_cuts c
)
SELECT *, rfm_segment(r_score, f_score) AS segment
FROM scored
