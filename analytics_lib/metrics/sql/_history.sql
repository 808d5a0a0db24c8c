-- History set-up: tables over all history (not only the period), built on demand and cached in the
-- session per filters, reporting currency and time zone (a block's "keyed by" line says
-- otherwise), so that a period only reads the small part it needs. Filters apply; money is
-- converted at the rate of each row's own UTC day. Rows without a rate are kept (their amount is
-- NULL) and reported only when a period needs them (the scope tables check).
-- A block may build several tables ("builds"); its intermediate tables are dropped at its end.

-- name: mrr_history
-- keyed by: filters, currency, timezone, mrr_options
-- builds: mrr_subscription_states, mrr_plan_buckets, mrr_customer_states, mrr_buckets, mrr_unconverted
--
-- mrr_events_build: each subscription event with the monthly-normalised recurring revenue in force
-- after it: price / billing_interval_months x (1 - discount_percent/100), converted at the rate of
-- the day the terms were set, so exchange-rate drift never shows up as expansion or contraction.
-- Trials, cancellations and unpaid ends (cancel with reason payment_failed) carry 0.
-- mrr_cancel_at = 'period_end' (default) dates a cancel at its effective_at, 'request' at occurred_at.
-- With 'period_end', a cancellation that the customer takes back (any later event of the
-- subscription made before the cancellation took effect) never takes effect.
--
-- Events of one subscription are ordered by (effective_ts, created_at, event_id); the state of a
-- subscription at an instant t is its last event strictly before t, so each state row holds the
-- effective time of the next event (next_ts): the row in force at t is the one with
-- effective_ts < t <= next_ts (or no next event). The same holds per customer, whose MRR after an
-- event is the running sum of their subscriptions' MRR changes (customer_mrr).
CREATE OR REPLACE TEMP TABLE mrr_events_build AS
SELECT
    e.event_id, e.subscription_id, e.customer_id, e.event_type, e.product_id,
    e.billing_interval_months,
    CASE WHEN e.event_type = 'cancel' AND getvariable('mrr_cancel_at') = 'request'
         THEN e.occurred_at ELSE e.effective_at END AS effective_ts,
    -- product, plan type and currency filters define a segment: an event that moves the
    -- subscription out of it leaves it with 0 MRR in the segment (MRR leaving the segment), so
    -- the subscription does not keep the MRR of its last matching event
    CASE WHEN e.event_type IN ('trial_start', 'cancel') THEN 0.0
         WHEN NOT (
             (len(getvariable('f_currency')) = 0 OR list_contains(getvariable('f_currency'), e.currency))
             AND (len(getvariable('f_product')) = 0 OR list_contains(getvariable('f_product'), e.product_id))
             AND (len(getvariable('f_plan_type')) = 0 OR list_contains(getvariable('f_plan_type'),
                  CASE e.billing_interval_months WHEN 1 THEN 'monthly' WHEN 12 THEN 'annual' ELSE 'other' END)))
         THEN 0.0
         ELSE round(e.price_minor / s.scale * (1 - e.discount_percent / 100.0) / e.billing_interval_months
              * CASE WHEN e.currency = getvariable('rc') THEN 1.0 ELSE f.factor END, 6)
    END AS mrr,
    e.currency,
    e.occurred_at AS created_at,
    -- checked only for events a period needs (api.recurring_revenue)
    e.event_type NOT IN ('trial_start', 'cancel') AND e.currency <> getvariable('rc')
        AND f.factor IS NULL AS unconverted
FROM subscription_events e
JOIN currency_scale s ON s.currency = e.currency
LEFT JOIN fx_factor f ON f.currency = e.currency AND f.rate_date = utc_date(e.occurred_at)
LEFT JOIN customers c ON c.customer_id = e.customer_id
LEFT JOIN subscriptions sub ON sub.subscription_id = e.subscription_id
WHERE (len(getvariable('f_country')) = 0 OR list_contains(getvariable('f_country'), c.country_code))
  AND (len(getvariable('f_discount_code')) = 0 OR list_contains(getvariable('f_discount_code'), sub.discount_code))
  AND len(getvariable('f_payment_method')) = 0
  AND len(getvariable('f_provider')) = 0
  AND len(getvariable('f_campaign')) = 0
  AND NOT (e.event_type = 'cancel' AND getvariable('mrr_cancel_at') = 'period_end' AND EXISTS (
        SELECT 1 FROM subscription_events later
        WHERE later.subscription_id = e.subscription_id AND later.event_type <> 'cancel'
          AND later.occurred_at > e.occurred_at AND later.occurred_at < e.effective_at));

-- events whose MRR could not be converted (api.recurring_revenue reports one a period needs)
CREATE OR REPLACE TEMP TABLE mrr_unconverted AS
SELECT currency, created_at, effective_ts FROM mrr_events_build WHERE unconverted;

-- each event with its subscription's next and previous event (one sort by subscription)
CREATE OR REPLACE TEMP TABLE mrr_sub_ordered AS
SELECT customer_id, effective_ts, created_at, event_id, product_id, billing_interval_months, mrr,
       event_type = 'trial_start' AS trialing,
       CAST(round(mrr * 1000000) AS BIGINT) AS mrr_micro,
       lead(effective_ts) OVER w AS next_ts,
       lag(product_id) OVER w AS prev_product_id,
       lag(billing_interval_months) OVER w AS prev_interval,
       lag(CAST(round(mrr * 1000000) AS BIGINT)) OVER w AS prev_mrr_micro,
       lag(event_type = 'trial_start') OVER w AS prev_trialing,
       row_number() OVER w > 1 AS has_prev
FROM mrr_events_build
WINDOW w AS (PARTITION BY subscription_id ORDER BY effective_ts, created_at, event_id);

DROP TABLE mrr_events_build;

-- one row per subscription event: the subscription's plan and MRR from effective_ts to next_ts
CREATE OR REPLACE TEMP TABLE mrr_subscription_states AS
SELECT product_id, billing_interval_months, mrr, trialing, effective_ts, next_ts
FROM mrr_sub_ordered
ORDER BY effective_ts;

-- per 15-minute UTC bucket and plan (product and billing interval), how the events in it change
-- the plan's totals: subscriptions in it (states), paying ones, trialing ones and MRR in integer
-- millionths. An event adds its subscription to its plan and removes it from the plan of the
-- subscription's previous event.
CREATE OR REPLACE TEMP TABLE mrr_plan_buckets AS
WITH changes AS (
    SELECT effective_ts, product_id, billing_interval_months, 1 AS states,
           CAST(mrr_micro > 0 AS INTEGER) AS subscribers, CAST(trialing AS INTEGER) AS trialing, mrr_micro
    FROM mrr_sub_ordered
    UNION ALL
    SELECT effective_ts, prev_product_id, prev_interval, -1,
           -CAST(prev_mrr_micro > 0 AS INTEGER), -CAST(prev_trialing AS INTEGER), -prev_mrr_micro
    FROM mrr_sub_ordered WHERE has_prev
)
SELECT time_bucket(INTERVAL 15 MINUTE, effective_ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       product_id, billing_interval_months,
       CAST(sum(states) AS BIGINT) AS states, CAST(sum(subscribers) AS BIGINT) AS subscribers,
       CAST(sum(trialing) AS BIGINT) AS trialing, CAST(sum(mrr_micro) AS BIGINT) AS mrr_micro
FROM changes
GROUP BY ALL
ORDER BY bucket;

-- one row per subscription event: the customer's MRR over all their subscriptions after it
-- (after_micro) and before it (before_micro), in integer millionths (every event's MRR is rounded
-- to 6 decimals, so these sums are exact), in force from effective_ts to next_ts; prev_ts is the
-- customer's previous event; mrr is the event's own subscription MRR (for peaks inside an
-- interval); first_paid_at is when the customer first had a paid subscription. Customers are
-- numbered (ck) for the session's joins; rows are in time order (periods read a range).
CREATE OR REPLACE TEMP TABLE mrr_customer_states AS
WITH keys AS (
    SELECT customer_id, CAST(row_number() OVER () AS INTEGER) AS ck
    FROM (SELECT DISTINCT customer_id FROM mrr_sub_ordered)
),
running AS (
    SELECT k.ck, o.effective_ts, o.mrr, o.mrr_micro - coalesce(o.prev_mrr_micro, 0) AS delta_micro,
           CAST(sum(o.mrr_micro - coalesce(o.prev_mrr_micro, 0)) OVER w AS BIGINT) AS after_micro,
           lag(o.effective_ts) OVER w AS prev_ts,
           lead(o.effective_ts) OVER w AS next_ts,
           min(o.effective_ts) FILTER (WHERE o.mrr > 0) OVER (PARTITION BY k.ck) AS first_paid_at
    FROM mrr_sub_ordered o JOIN keys k USING (customer_id)
    WINDOW w AS (PARTITION BY k.ck ORDER BY o.effective_ts, o.created_at, o.event_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT ck, effective_ts, prev_ts, next_ts, mrr, after_micro, after_micro - delta_micro AS before_micro,
       first_paid_at
FROM running
ORDER BY effective_ts;

DROP TABLE mrr_sub_ordered;

-- per 15-minute UTC bucket, how the events in it change the totals over all customers: MRR, paying
-- customers and MRR of paying customers (the totals at an instant t are the changes of the
-- buckets before t's bucket plus those of the events of t's bucket before t)
CREATE OR REPLACE TEMP TABLE mrr_buckets AS
SELECT time_bucket(INTERVAL 15 MINUTE, effective_ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       CAST(sum(after_micro - before_micro) AS BIGINT) AS mrr_micro,
       CAST(sum(CAST(after_micro > 0 AS INTEGER) - CAST(before_micro > 0 AS INTEGER)) AS BIGINT) AS subscribers,
       CAST(sum(greatest(after_micro, 0) - greatest(before_micro, 0)) AS BIGINT) AS paying_micro
FROM mrr_customer_states
GROUP BY ALL
ORDER BY bucket

-- name: customer_history
-- builds: customer_state, customer_timeline, cohort_matrix, customer_months_missing
--
-- customer_months_build: one row per customer and local calendar month with successful payments.
-- customer_state: one row per customer who ever paid: a number (ck) for the session's joins, the
--   first successful payment (first_at) and its local month (cohort_month), the acquisition channel.
-- customer_timeline: one row per customer and month with payments, with the customer's running
--   totals through that month and the next month they paid in, so the state of every customer at
--   a month boundary is one filtered scan (the row with month < cut <= next_month).
-- cohort_matrix: customers paying and their revenue per cohort month and month.
-- customer_months_missing: per month, the first UTC day and currency of a payment without a rate.
CREATE OR REPLACE TEMP TABLE customer_months_build AS
SELECT
    t.customer_id,
    CAST(date_trunc('month', timezone(getvariable('tz'), t.created_at)) AS DATE) AS month,
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
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE customer_months_missing AS
SELECT month, min(missing) AS missing FROM customer_months_build WHERE missing IS NOT NULL GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE customer_state AS
WITH firsts AS (
    SELECT customer_id, min(first_at) AS first_at, min(month) AS cohort_month
    FROM customer_months_build GROUP BY customer_id
)
SELECT CAST(row_number() OVER () AS INTEGER) AS ck, f.customer_id, f.first_at, f.cohort_month,
       c.acquisition_channel
FROM firsts f LEFT JOIN customers c USING (customer_id)
ORDER BY f.first_at;

CREATE OR REPLACE TEMP TABLE customer_months_keyed AS
SELECT s.ck, s.first_at, s.cohort_month, m.month, m.payments, m.revenue, m.last_at
FROM customer_months_build m JOIN customer_state s USING (customer_id);

DROP TABLE customer_months_build;

CREATE OR REPLACE TEMP TABLE customer_timeline AS
SELECT ck, month,
       lead(month) OVER w AS next_month,
       CAST(sum(payments) OVER w AS BIGINT) AS payments,
       sum(revenue) OVER w AS revenue,
       last_at,
       first_at
FROM customer_months_keyed
WINDOW w AS (PARTITION BY ck ORDER BY month ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

CREATE OR REPLACE TEMP TABLE cohort_matrix AS
SELECT cohort_month, month, count(*) AS customers, sum(revenue) AS revenue
FROM customer_months_keyed
GROUP BY ALL;

DROP TABLE customer_months_keyed

-- name: course_history
-- requires: customer_state
-- builds: course_keys, customer_courses, course_pair_months
--
-- customer_courses: each course a customer bought, with when they first bought it (numbers for
--   customer and course, for compactness; course_keys names the courses).
-- course_pair_months: pairs of courses bought by one customer, counted in the local month the
--   pair formed (the later of the two first purchases).
CREATE OR REPLACE TEMP TABLE course_keys AS
SELECT CAST(row_number() OVER (ORDER BY product_id) AS SMALLINT) AS pk, product_id
FROM products WHERE product_type = 'course';

CREATE OR REPLACE TEMP TABLE customer_courses AS
SELECT s.ck, k.pk, min(t.created_at) AS first_bought_at
FROM filtered_transactions t
JOIN course_keys k ON k.product_id = t.product_id
JOIN customer_state s ON s.customer_id = t.customer_id
WHERE is_successful(t.status)
GROUP BY ALL
ORDER BY first_bought_at;

CREATE OR REPLACE TEMP TABLE course_pair_months AS
SELECT a.pk AS course_a, b.pk AS course_b,
       CAST(date_trunc('month', timezone(getvariable('tz'), greatest(a.first_bought_at, b.first_bought_at))) AS DATE) AS month,
       count(*) AS customers
FROM customer_courses a JOIN customer_courses b ON a.ck = b.ck AND a.pk < b.pk
WHERE a.ck IN (SELECT ck FROM customer_courses GROUP BY ck HAVING count(*) > 1)
GROUP BY ALL

-- name: claim_history
-- builds: history_refunds, history_disputes
--
-- Every succeeded refund and every dispute whose payment passes the filters, with the payment's
-- columns that breakdowns need, in the reporting currency, in time order (a period reads a
-- range of them).
CREATE OR REPLACE TEMP TABLE claim_payments AS
SELECT transaction_id, provider, payment_method, country_code, product_id, plan_type, risk_score,
       fraud_indicators
FROM filtered_transactions
WHERE transaction_id IN (SELECT transaction_id FROM refunds WHERE status = 'succeeded'
                         UNION SELECT transaction_id FROM disputes);

CREATE OR REPLACE TEMP TABLE history_refunds AS
SELECT
    r.*, t.provider, t.payment_method, t.country_code, t.product_id, t.plan_type,
    r.amount_minor / s.scale
        * CASE WHEN r.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    r.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM refunds r
JOIN claim_payments t USING (transaction_id)
JOIN currency_scale s ON s.currency = r.currency
LEFT JOIN fx_factor f ON f.currency = r.currency AND f.rate_date = utc_date(r.created_at)
WHERE r.status = 'succeeded'
ORDER BY r.created_at;

CREATE OR REPLACE TEMP TABLE history_disputes AS
SELECT
    d.*, t.provider, t.payment_method, t.country_code, t.product_id, t.plan_type, t.risk_score,
    t.fraud_indicators,
    d.amount_minor / s.scale
        * CASE WHEN d.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    d.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM disputes d
JOIN claim_payments t USING (transaction_id)
JOIN currency_scale s ON s.currency = d.currency
LEFT JOIN fx_factor f ON f.currency = d.currency AND f.rate_date = utc_date(d.created_at)
ORDER BY d.created_at;

DROP TABLE claim_payments

-- name: fee_buckets
-- Fees (of payments that pass the filters) summed per 15-minute UTC bucket, local day and
-- provider, with the first UTC day and currency of a fee without a rate. Every period bound
-- (a local midnight) falls on a 15-minute boundary in every zone in use, so a period is a range of
-- buckets; _scope.scoped_fees reads fees directly for bounds that do not (a real-time window).
CREATE OR REPLACE TEMP TABLE fee_buckets AS
WITH matching AS (
    SELECT provider, created_at, amount_minor, currency FROM fees WHERE NOT getvariable('filters_active')
    UNION ALL
    SELECT provider, created_at, amount_minor, currency FROM fees
    WHERE getvariable('filters_active')
      AND transaction_id IN (SELECT transaction_id FROM filtered_transactions)
)
SELECT
    time_bucket(INTERVAL 15 MINUTE, e.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
    CAST(timezone(getvariable('tz'), e.created_at) AS DATE) AS day,
    e.provider,
    sum(e.amount_minor / s.scale
        * CASE WHEN e.currency = getvariable('rc') THEN 1.0 ELSE f.factor END) AS amount_rc,
    min(struct_pack(d := utc_date(e.created_at), c := e.currency))
        FILTER (WHERE e.currency <> getvariable('rc') AND f.factor IS NULL) AS missing
FROM matching e
JOIN currency_scale s ON s.currency = e.currency
LEFT JOIN fx_factor f ON f.currency = e.currency AND f.rate_date = utc_date(e.created_at)
GROUP BY ALL
ORDER BY bucket

-- name: retry_outcomes
-- keyed by: nothing
-- Dunning: per original payment, whether a retry (attempt_number > 1, any time, any filter) was
-- paid and how many retries there were.
CREATE OR REPLACE TEMP TABLE retry_outcomes AS
SELECT original_transaction_id, bool_or(is_successful(status)) AS recovered, count(*) AS retry_attempts
FROM transactions
WHERE attempt_number > 1 AND original_transaction_id IS NOT NULL
GROUP BY ALL
