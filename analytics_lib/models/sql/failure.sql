-- Model: payment_failure. Features of a payment attempt, as known when it is made.
--
-- grain            one row per payment attempt (a dunning retry is its own attempt)
-- label            failed = 1 when the attempt's latest status is 'failed' (issuer declines, provider
--                  errors and our own fraud blocks alike), 0 when money was captured (completed,
--                  refunded, partially_refunded, disputed); pending and canceled attempts have no
--                  outcome and are not candidates for training or evaluation
-- amount_rc        amount_minor in major units of the reporting currency ($rc), converted at the
--                  rate of the attempt's UTC day (USD is 1.0 by definition); an attempt after the
--                  last published rate (an upcoming renewal) uses the latest rate; a day without a
--                  rate inside the history is flagged missing_rate (an error for the caller)
-- local time       local_hour (0-23) and weekday (1 Monday .. 7 Sunday) in the business time zone $tz
-- card             card_age_days as recorded on the attempt (days since the instrument was first
--                  seen); months_to_expiry = card_expiry_month minus the attempt's UTC month
--                  (negative: expired), null for instruments without an expiry
-- history          strictly before history_at (the attempt's created_at, or the prediction date for
--                  attempts that have not happened yet): the customer's earlier outcomes that were
--                  already known (completed_at / failed_at before history_at), failures among them,
--                  failures in the 30 days before, the most recent failure's reason and its age
--
-- How: one time line per customer from 30 days (the longest window) before the earliest history
-- time, with a marker per candidate; what was known before it enters as per-customer totals (so
-- scoring a recent window sorts only that window's rows).
--
-- Candidates (transaction-shaped columns plus history_at) are selected by one of the candidates_*
-- queries, which becomes the materialized CTE failure_candidates of `features` (one statement,
-- no temporary table), and `features` computes one row per candidate.

-- name: candidates_window
-- Attempts created in [$start, $end) with a known outcome.
SELECT transaction_id AS candidate_id, transaction_id, customer_id, subscription_id, created_at,
       created_at AS history_at, amount_minor, currency, status, payment_method, provider,
       card_brand, card_country, card_age_days, card_expiry_month, attempt_number, billing_reason,
       plan_type, country_code, ip_country, device_class
FROM transactions
WHERE created_at >= $start AND created_at < $end
  AND status NOT IN ('pending', 'canceled')

-- name: candidates_attempts
-- Every attempt created in [$start, $end), whatever its status (batch scoring of new attempts).
SELECT transaction_id AS candidate_id, transaction_id, customer_id, subscription_id, created_at,
       created_at AS history_at, amount_minor, currency, status, payment_method, provider,
       card_brand, card_country, card_age_days, card_expiry_month, attempt_number, billing_reason,
       plan_type, country_code, ip_country, device_class
FROM transactions
WHERE created_at >= $start AND created_at < $end

-- name: candidates_ids
-- The attempts named in $ids (any status; the outcome is not used to score them). Found on two
-- columns first, then read whole by (created_at, transaction_id): the join's bounds on created_at
-- skip the row groups outside the ids' time span (see fraud.sql candidates_ids).
WITH found AS MATERIALIZED (
    SELECT DISTINCT created_at, transaction_id FROM transactions WHERE list_contains($ids, transaction_id)
)
SELECT t.transaction_id AS candidate_id, t.transaction_id, t.customer_id, t.subscription_id, t.created_at,
       t.created_at AS history_at, t.amount_minor, t.currency, t.status, t.payment_method, t.provider,
       t.card_brand, t.card_country, t.card_age_days, t.card_expiry_month, t.attempt_number, t.billing_reason,
       t.plan_type, t.country_code, t.ip_country, t.device_class
FROM transactions t SEMI JOIN found f ON f.created_at = t.created_at AND f.transaction_id = t.transaction_id

-- name: candidates_upcoming_renewals
-- Renewals due in (as_of, as_of + $days days] of subscriptions in a paid period at $as_of (latest
-- event before $as_of is start, upgrade, downgrade or reactivate; a pending cancellation stops
-- the renewal). The period anchor is the effective time of the latest start event; the next
-- renewal is the first anchor + k x billing interval after $as_of. The attempt is a first
-- merchant-initiated charge of the discounted price, with the customer's most recent instrument
-- (method, provider, card) aged to the renewal day; history stops at $as_of.
WITH latest AS (
    SELECT * FROM subscription_events
    WHERE occurred_at < $as_of
    QUALIFY row_number() OVER (PARTITION BY subscription_id ORDER BY occurred_at DESC, event_id DESC) = 1
),
anchor AS (
    SELECT subscription_id, max(effective_at) AS anchor_at
    FROM subscription_events
    WHERE event_type = 'start' AND occurred_at < $as_of
    GROUP BY ALL
),
paid AS (
    SELECT l.subscription_id, l.customer_id, l.product_id, l.price_minor, l.currency,
           l.billing_interval_months AS months, l.discount_percent, a.anchor_at,
           (date_diff('month', a.anchor_at, $as_of) // l.billing_interval_months
            * l.billing_interval_months)::INTEGER AS k
    FROM latest l JOIN anchor a USING (subscription_id)
    WHERE l.event_type IN ('start', 'upgrade', 'downgrade', 'reactivate') AND l.price_minor > 0
),
due AS (
    SELECT *,
           CASE WHEN anchor_at + to_months(k) > $as_of THEN anchor_at + to_months(k)
                ELSE anchor_at + to_months(k + months) END AS renewal_at
    FROM paid
),
instrument AS (
    SELECT * FROM transactions
    WHERE created_at < $as_of
    QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY created_at DESC, transaction_id DESC) = 1
)
SELECT 'renewal:' || d.subscription_id AS candidate_id, NULL::VARCHAR AS transaction_id,
       d.customer_id, d.subscription_id, d.renewal_at AS created_at, $as_of AS history_at,
       round(d.price_minor * (1 - d.discount_percent / 100.0))::BIGINT AS amount_minor, d.currency,
       NULL::VARCHAR AS status, i.payment_method, i.provider, i.card_brand, i.card_country,
       (i.card_age_days + date_diff('day', i.created_at, d.renewal_at))::INTEGER AS card_age_days,
       i.card_expiry_month, 1 AS attempt_number, 'subscription_cycle' AS billing_reason,
       CASE d.months WHEN 12 THEN 'annual' ELSE 'monthly' END AS plan_type,
       coalesce(i.country_code, c.country_code) AS country_code,
       coalesce(i.country_code, c.country_code) AS ip_country,
       coalesce(i.device_class, c.device_class) AS device_class
FROM due d
JOIN instrument i ON i.customer_id = d.customer_id
LEFT JOIN customers c ON c.customer_id = d.customer_id
WHERE d.renewal_at <= $as_of + to_days($days)

-- name: features
WITH rates AS (
    SELECT rate_date, currency, usd_per_unit FROM fx_rates WHERE currency <> 'USD'
    UNION ALL
    SELECT DISTINCT rate_date, 'USD', 1.0 FROM fx_rates
),
fx AS (
    SELECT r.rate_date, r.currency, r.usd_per_unit / t.usd_per_unit AS factor
    FROM rates r JOIN rates t ON t.rate_date = r.rate_date AND t.currency = $rc
),
fx_latest AS (
    -- attempts after the last published rate (upcoming renewals) use the latest one
    SELECT currency, arg_max(factor, rate_date) AS factor, max(rate_date) AS last_day FROM fx GROUP BY ALL
),
scales AS (SELECT unnest($codes) AS currency, unnest($scales) AS scale),
-- the time line starts 30 days (the longest window) before the earliest history time; what was
-- known before that enters only as per-customer totals
since AS (SELECT min(history_at) - INTERVAL 30 DAY AS since_at FROM failure_candidates),
-- integer customer keys: the time line below sorts by them much faster than by the text ids
cust AS MATERIALIZED (
    SELECT customer_id, row_number() OVER () AS cid FROM (SELECT DISTINCT customer_id FROM failure_candidates)
),
outcomes AS MATERIALIZED (
    -- each earlier outcome of the candidates' customers, when it became known
    SELECT k.cid, coalesce(t.failed_at, t.completed_at) AS known_at, (t.status = 'failed')::INTEGER AS failure,
           CASE WHEN t.status = 'failed' THEN coalesce(t.failure_reason, 'other') END AS reason
    FROM transactions t JOIN cust k USING (customer_id)
    WHERE coalesce(t.failed_at, t.completed_at) IS NOT NULL
),
earlier AS (
    -- per customer, what was known before the time line starts
    SELECT cid, count(*) AS outcomes, sum(failure) AS failures,
           arg_max(reason, known_at) FILTER (WHERE failure = 1) AS last_reason,
           max(known_at) FILTER (WHERE failure = 1) AS last_failed_at
    FROM outcomes, since WHERE known_at < since_at GROUP BY cid
),
events AS (
    -- one time line per customer: each outcome known from `since` on (kind 1), and a marker at
    -- each candidate's history time (kind 0). ek = 2 x microseconds + kind: at a marker, every row
    -- with a smaller ek was known strictly before it, and 2 x 30 days of ek is 30 days.
    SELECT cid, epoch_us(known_at) * 2 + 1 AS ek, failure, reason,
           CASE WHEN failure = 1 THEN known_at END AS failed_at, NULL::VARCHAR AS candidate_id
    FROM outcomes, since WHERE known_at >= since_at
    UNION ALL
    SELECT k.cid, epoch_us(f.history_at) * 2, 0, NULL, NULL, f.candidate_id
    FROM failure_candidates f JOIN cust k USING (customer_id)
),
history AS (
    SELECT candidate_id, cid,
           -- outcomes (low 32 bits) and failures (high) in one running sum
           sum(1 - (candidate_id IS NOT NULL)::BIGINT + (failure::BIGINT << 32)) OVER (w ROWS UNBOUNDED PRECEDING) AS known,
           sum(failure) OVER (w RANGE BETWEEN 5184000000000 PRECEDING AND CURRENT ROW) AS failures_30d,
           last_value(reason IGNORE NULLS) OVER (w ROWS UNBOUNDED PRECEDING) AS last_reason,
           max(failed_at) OVER (w ROWS UNBOUNDED PRECEDING) AS last_failed_at
    FROM events
    WINDOW w AS (PARTITION BY cid ORDER BY ek)
    QUALIFY candidate_id IS NOT NULL
),
c AS (
    SELECT k.*, CAST(k.created_at AS DATE) AS created_day
    FROM failure_candidates k
)
SELECT
    c.candidate_id, c.transaction_id, c.customer_id, c.subscription_id, c.created_at,
    CASE WHEN c.status IS NULL OR c.status IN ('pending', 'canceled') THEN NULL
         ELSE (c.status = 'failed')::INTEGER END AS failed,
    c.payment_method, c.provider, c.country_code, c.currency,
    coalesce(c.card_brand, 'none') AS card_brand,
    c.billing_reason, c.attempt_number,
    c.amount_minor / sc.scale * CASE WHEN c.currency = $rc THEN 1.0 ELSE coalesce(fx.factor, fl.factor) END AS amount_rc,
    c.currency <> $rc AND fx.factor IS NULL AND fl.factor IS NULL AS missing_rate,
    c.card_age_days,
    date_diff('month', date_trunc('month', c.created_day), c.card_expiry_month) AS months_to_expiry,
    hour(timezone($tz, c.created_at)) AS local_hour,
    isodow(timezone($tz, c.created_at)) AS weekday,
    (c.card_country IS DISTINCT FROM c.country_code)::INTEGER AS foreign_card,
    (c.ip_country IS DISTINCT FROM c.country_code)::INTEGER AS ip_abroad,
    (c.ip_country IS DISTINCT FROM c.card_country)::INTEGER AS ip_card_mismatch,
    coalesce(c.device_class, 'unknown') AS device_class,
    (c.country_code = $home)::INTEGER AS home_country,
    (epoch(c.created_at) - epoch(cu.signup_at)) / 86400.0 AS account_age_days,
    ((h.known & 4294967295) + coalesce(e.outcomes, 0))::BIGINT AS prior_attempts,
    ((h.known >> 32) + coalesce(e.failures, 0))::BIGINT AS prior_failures,
    ((h.known >> 32) + coalesce(e.failures, 0)) / nullif((h.known & 4294967295) + coalesce(e.outcomes, 0), 0) AS prior_failure_rate,
    h.failures_30d::BIGINT AS failures_30d,
    coalesce(h.last_reason, e.last_reason, 'none') AS last_failure_reason,
    (epoch(c.created_at) - epoch(coalesce(h.last_failed_at, e.last_failed_at))) / 86400.0 AS days_since_failure
FROM c
LEFT JOIN customers cu ON cu.customer_id = c.customer_id
LEFT JOIN history h ON h.candidate_id = c.candidate_id
LEFT JOIN earlier e ON e.cid = h.cid
LEFT JOIN scales sc ON sc.currency = c.currency
LEFT JOIN fx ON fx.currency = c.currency AND fx.rate_date = c.created_day
LEFT JOIN fx_latest fl ON fl.currency = c.currency AND c.created_day > fl.last_day
ORDER BY c.created_at, c.candidate_id

-- name: dunning_recovery
-- Dunning outcome of failed first renewal attempts (subscription_cycle, attempt 1) that failed in
-- [$start, $end): recovered when a retry of it (original_transaction_id) captured money.
-- Attempts whose retries could still be running (failed within $grace_days of the data's end)
-- are left out so an open dunning cycle does not count as lost.
WITH first_fail AS (
    SELECT transaction_id, failed_at FROM transactions
    WHERE billing_reason = 'subscription_cycle' AND attempt_number = 1 AND status = 'failed'
      AND failed_at >= $start AND failed_at < $end
      AND failed_at < (SELECT max(created_at) FROM transactions) - to_days($grace_days)
),
recovered AS (
    SELECT DISTINCT original_transaction_id AS transaction_id FROM transactions
    WHERE original_transaction_id IS NOT NULL
      AND status IN ('completed', 'refunded', 'partially_refunded', 'disputed')
)
SELECT count(*) AS failed_renewals, count(r.transaction_id) AS recovered,
       count(r.transaction_id) / nullif(count(*), 0) AS recovery_rate
FROM first_fail f LEFT JOIN recovered r USING (transaction_id)
