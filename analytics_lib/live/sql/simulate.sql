-- Templates of the live simulator (analytics_lib/live/simulate.py, docs/live.md).
--
-- A template group is what one arrival replays: a checkout session (its funnel events and the
-- payment attempts it created, a customer's retry included) or a payment made without a
-- session (renewals, dunning retries, imports). Groups are sampled uniformly from the ones that
-- started in [$t0, $t1); every row that belongs to a sampled group is read with it: the
-- payments, their fees, refunds, disputes and fraud alerts (up to $now, so the lifecycle that
-- followed is known), the customers, and subscriptions the group started.
-- Every scan is bounded by time (month partitions and the tables' time columns).
-- $sample is an integer formatted into the SAMPLE clause by the caller (DuckDB takes no bound
-- value there); $seed likewise.

-- name: groups
CREATE OR REPLACE TEMP TABLE sim_groups AS
WITH events AS (
    SELECT session_id, occurred_at, transaction_id
    FROM checkout_events
    WHERE occurred_month BETWEEN $m0 AND $m1
      AND occurred_at >= $t0 - INTERVAL 1 HOUR AND occurred_at < $t1 + INTERVAL 2 HOUR
),
sessions AS (
    SELECT session_id FROM events GROUP BY session_id
    HAVING min(occurred_at) >= $t0 AND min(occurred_at) < $t1
),
linked AS (SELECT DISTINCT transaction_id FROM events WHERE transaction_id IS NOT NULL),
standalone AS (
    SELECT transaction_id FROM transactions
    WHERE created_month BETWEEN $m0 AND $m1 AND created_at >= $t0 AND created_at < $t1
      AND transaction_id NOT IN (SELECT transaction_id FROM linked)
),
universe AS (
    SELECT 'ses' AS kind, session_id AS key FROM sessions
    UNION ALL
    SELECT 'txn', transaction_id FROM standalone
)
SELECT kind, key FROM universe USING SAMPLE reservoir({sample} ROWS) REPEATABLE ({seed})

-- name: checkout_events
SELECT c.* EXCLUDE (_row_hash, _batch_id, _ingested_at, occurred_month), c.session_id AS group_key
FROM checkout_events c
WHERE c.occurred_month BETWEEN $m0 AND $m1
  AND c.occurred_at >= $t0 - INTERVAL 1 HOUR AND c.occurred_at < $t1 + INTERVAL 2 HOUR
  AND c.session_id IN (SELECT key FROM sim_groups WHERE kind = 'ses')

-- name: transactions
-- group_key: the session of a payment submitted in a sampled session, else the payment itself
CREATE OR REPLACE TEMP TABLE sim_transactions AS
WITH session_payments AS (
    SELECT DISTINCT transaction_id, session_id FROM checkout_events
    WHERE occurred_month BETWEEN $m0 AND $m1
      AND occurred_at >= $t0 - INTERVAL 1 HOUR AND occurred_at < $t1 + INTERVAL 2 HOUR
      AND transaction_id IS NOT NULL
      AND session_id IN (SELECT key FROM sim_groups WHERE kind = 'ses')
)
SELECT t.* EXCLUDE (_row_hash, _batch_id, _ingested_at, created_month),
       coalesce(sp.session_id, t.transaction_id) AS group_key
FROM transactions t
LEFT JOIN session_payments sp USING (transaction_id)
WHERE t.created_month BETWEEN $m0 AND $m1
  AND t.created_at >= $t0 - INTERVAL 1 HOUR AND t.created_at < $t1 + INTERVAL 2 HOUR
  AND (sp.session_id IS NOT NULL
       OR t.transaction_id IN (SELECT key FROM sim_groups WHERE kind = 'txn'))

-- name: fees
-- fees charged at settlement (within days of the payment), and dispute fees up to now
SELECT f.* EXCLUDE (_row_hash, _batch_id, _ingested_at)
FROM fees f
WHERE f.created_at >= $t0 - INTERVAL 1 HOUR AND f.created_at < $t1 + INTERVAL 3 DAY
  AND f.transaction_id IN (SELECT transaction_id FROM sim_transactions)
UNION ALL
SELECT f.* EXCLUDE (_row_hash, _batch_id, _ingested_at)
FROM fees f
WHERE f.created_at >= $t1 + INTERVAL 3 DAY AND f.created_at < $now AND f.fee_type = 'dispute'
  AND f.transaction_id IN (SELECT transaction_id FROM sim_transactions)

-- name: refunds
SELECT r.* EXCLUDE (_row_hash, _batch_id, _ingested_at)
FROM refunds r
WHERE r.created_at >= $t0 - INTERVAL 1 HOUR AND r.created_at < $now
  AND r.transaction_id IN (SELECT transaction_id FROM sim_transactions)

-- name: disputes
SELECT d.* EXCLUDE (_row_hash, _batch_id, _ingested_at)
FROM disputes d
WHERE d.created_at >= $t0 - INTERVAL 1 HOUR AND d.created_at < $now
  AND d.transaction_id IN (SELECT transaction_id FROM sim_transactions)

-- name: fraud_alerts
SELECT a.* EXCLUDE (_row_hash, _batch_id, _ingested_at)
FROM fraud_alerts a
WHERE a.created_at >= $t0 - INTERVAL 1 HOUR AND a.created_at < $t1 + INTERVAL 3 HOUR
  AND a.transaction_id IN (SELECT transaction_id FROM sim_transactions)

-- name: customers
-- only customers who signed up around the window can be new in a group (simulate.py
-- NEW_CUSTOMER_WINDOW); the others keep their id and need no row
SELECT c.* EXCLUDE (_row_hash, _batch_id, _ingested_at)
FROM customers c
WHERE c.signup_at >= $t0 - INTERVAL 2 DAY AND c.signup_at < $t1 + INTERVAL 3 HOUR
  AND (c.customer_id IN (SELECT customer_id FROM sim_transactions)
   OR c.customer_id IN (SELECT customer_id FROM sim_groups g JOIN checkout_events e
                        ON g.kind = 'ses' AND e.session_id = g.key
                        WHERE e.occurred_month BETWEEN $m0 AND $m1
                          AND e.occurred_at >= $t0 - INTERVAL 1 HOUR AND e.occurred_at < $t1 + INTERVAL 2 HOUR))

-- name: subscriptions
-- subscriptions started by a sampled payment (their start is replayed with it)
SELECT s.* EXCLUDE (_row_hash, _batch_id, _ingested_at)
FROM subscriptions s
WHERE s.subscription_id IN (SELECT subscription_id FROM sim_transactions
                            WHERE billing_reason = 'subscription_create')

-- name: subscription_events
SELECT e.* EXCLUDE (_row_hash, _batch_id, _ingested_at)
FROM subscription_events e
WHERE e.occurred_at >= $t0 - INTERVAL 1 DAY AND e.occurred_at < $t1 + INTERVAL 2 HOUR
  AND e.event_type IN ('start', 'trial_start')
  AND e.subscription_id IN (SELECT subscription_id FROM sim_transactions
                            WHERE billing_reason = 'subscription_create')

-- name: latest_payment
SELECT max(created_at) FROM transactions WHERE created_at < $now

-- name: fx_latest
SELECT currency, usd_per_unit, rate_date FROM fx_rates
QUALIFY rate_date = max(rate_date) OVER (PARTITION BY currency)
