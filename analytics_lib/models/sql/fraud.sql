-- Model: fraud. Features of a checkout payment attempt as known at authorization, and its label.
--
-- grain            one row per customer-initiated checkout attempt: billing_reason 'purchase' or
--                  'subscription_create' (renewals and dunning retries are merchant-initiated on an
--                  instrument that already paid, and are not scored)
-- label            is_fraud = 1 when, before $label_at, the attempt got a dispute with reason
--                  'fraudulent' (a fraud chargeback; these arrive 30-90 days after the payment) or
--                  a fraud alert that a reviewer marked 'confirmed_fraud'
-- amount_rc        amount in major units of the reporting currency ($rc) at the rate of the attempt's
--                  UTC day (after the last published rate: the latest one; a gap day is flagged
--                  missing_rate, an error for the caller)
-- authorization    only what exists when the attempt is authorized: the attempt's own columns, the
--   time features  customer record, and other rows created strictly before created_at:
--                  velocity = attempts by the same customer / the same IP hash in the hour and the
--                  day before; card_changes_24h = attempts in the day before (this one included)
--                  made with another card than the customer's previous attempt (card = brand,
--                  issuing country and expiry month: the export has no card fingerprint);
--                  failures_1h = the customer's attempts whose failure was known before created_at;
--                  prior_successes = the customer's captured payments completed before created_at;
--                  prior_alerts = fraud alerts raised on the customer before created_at (rules fire
--                  within seconds; the reviewers' verdict is not used)
-- platform score   platform_risk_score = the attempt's risk_score, computed by the platform at
--                  authorization (it is also the baseline the model must beat)
-- never used       the attempt's later status, refunds, disputes, fees and reviews

-- name: candidates_window
CREATE OR REPLACE TEMP TABLE fraud_candidates AS
SELECT transaction_id FROM transactions
WHERE created_at >= $start AND created_at < $end
  AND billing_reason IN ('purchase', 'subscription_create')

-- name: candidates_ids
CREATE OR REPLACE TEMP TABLE fraud_candidates AS
SELECT transaction_id FROM transactions WHERE list_contains($ids, transaction_id)

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
fx_latest AS (SELECT currency, arg_max(factor, rate_date) AS factor, max(rate_date) AS last_day FROM fx GROUP BY ALL),
scales AS (SELECT unnest($codes) AS currency, unnest($scales) AS scale),
c AS (
    SELECT t.*, CAST(t.created_at AS DATE) AS created_day
    FROM transactions t SEMI JOIN fraud_candidates USING (transaction_id)
),
-- integer keys: the time lines below sort by them much faster than by the text ids
cust AS (SELECT customer_id, row_number() OVER () AS cid FROM (SELECT DISTINCT customer_id FROM c)),
ips AS (SELECT ip_hash, row_number() OVER () AS iid FROM (SELECT DISTINCT ip_hash FROM c WHERE ip_hash IS NOT NULL)),
attempts AS (
    -- the candidates' customers' attempts; changed = another card than the customer's previous attempt
    SELECT transaction_id, cid, created_at,
           (card_key IS DISTINCT FROM prev_key AND prev_key IS NOT NULL)::INTEGER AS changed
    FROM (
        SELECT t.transaction_id, k.cid, t.created_at,
               hash(t.payment_method, t.card_brand, t.card_country, t.card_expiry_month) AS card_key,
               lag(hash(t.payment_method, t.card_brand, t.card_country, t.card_expiry_month))
                   OVER (PARTITION BY k.cid ORDER BY t.created_at, t.transaction_id) AS prev_key
        FROM transactions t JOIN cust k USING (customer_id)
    )
),
customer_events AS (
    -- one time line per customer: attempts when created, failures and captures when known, fraud
    -- alerts when raised, and markers at each candidate's time, an hour and a day before it.
    -- Markers sort before events at the same instant: running totals at a marker count only what
    -- happened strictly before it.
    SELECT cid, created_at AS event_at, 1 AS kind, 1 AS attempt, changed, 0 AS failure, 0 AS success,
           0 AS alert, NULL::VARCHAR AS candidate_id, NULL::VARCHAR AS marker
    FROM attempts
    UNION ALL
    SELECT k.cid, t.failed_at, 1, 0, 0, 1, 0, 0, NULL, NULL
    FROM transactions t JOIN cust k USING (customer_id) WHERE t.status = 'failed' AND t.failed_at IS NOT NULL
    UNION ALL
    SELECT k.cid, t.completed_at, 1, 0, 0, 0, 1, 0, NULL, NULL
    FROM transactions t JOIN cust k USING (customer_id) WHERE t.completed_at IS NOT NULL
    UNION ALL
    SELECT k.cid, a.created_at, 1, 0, 0, 0, 0, 1, NULL, NULL
    FROM fraud_alerts a JOIN cust k USING (customer_id)
    UNION ALL
    SELECT k.cid, m.marker_at, 0, 0, 0, 0, 0, 0, c.transaction_id, m.marker
    FROM c JOIN cust k USING (customer_id),
         LATERAL (VALUES (c.created_at, 'now'), (c.created_at - INTERVAL 1 HOUR, '1h'),
                         (c.created_at - INTERVAL 1 DAY, '1d')) m(marker_at, marker)
),
customer_running AS (
    SELECT candidate_id, marker,
           sum(attempt) OVER w AS attempts, sum(changed) OVER w AS changes, sum(failure) OVER w AS failures,
           sum(success) OVER w AS successes, sum(alert) OVER w AS alerts
    FROM customer_events
    WINDOW w AS (PARTITION BY cid ORDER BY event_at, kind ROWS UNBOUNDED PRECEDING)
    QUALIFY kind = 0
),
customer_history AS (
    SELECT candidate_id AS transaction_id,
           (sum(attempts) FILTER (WHERE marker = 'now') - sum(attempts) FILTER (WHERE marker = '1h'))::BIGINT AS customer_attempts_1h,
           (sum(attempts) FILTER (WHERE marker = 'now') - sum(attempts) FILTER (WHERE marker = '1d'))::BIGINT AS customer_attempts_24h,
           (sum(changes) FILTER (WHERE marker = 'now') - sum(changes) FILTER (WHERE marker = '1d'))::BIGINT AS card_changes_before,
           (sum(failures) FILTER (WHERE marker = 'now') - sum(failures) FILTER (WHERE marker = '1h'))::BIGINT AS failures_1h,
           (sum(successes) FILTER (WHERE marker = 'now'))::BIGINT AS prior_successes,
           (sum(alerts) FILTER (WHERE marker = 'now'))::BIGINT AS prior_alerts
    FROM customer_running GROUP BY candidate_id
),
ip_events AS (
    SELECT i.iid, t.created_at AS event_at, 1 AS kind, 1 AS attempt, NULL::VARCHAR AS candidate_id,
           NULL::VARCHAR AS marker
    FROM transactions t JOIN ips i USING (ip_hash)
    UNION ALL
    SELECT i.iid, m.marker_at, 0, 0, c.transaction_id, m.marker
    FROM c JOIN ips i USING (ip_hash),
         LATERAL (VALUES (c.created_at, 'now'), (c.created_at - INTERVAL 1 HOUR, '1h'),
                         (c.created_at - INTERVAL 1 DAY, '1d')) m(marker_at, marker)
),
ip_running AS (
    SELECT candidate_id, marker, kind,
           sum(attempt) OVER (PARTITION BY iid ORDER BY event_at, kind ROWS UNBOUNDED PRECEDING) AS attempts
    FROM ip_events
    QUALIFY kind = 0
),
ip_history AS (
    SELECT candidate_id AS transaction_id,
           (sum(attempts) FILTER (WHERE marker = 'now') - sum(attempts) FILTER (WHERE marker = '1h'))::BIGINT AS ip_attempts_1h,
           (sum(attempts) FILTER (WHERE marker = 'now') - sum(attempts) FILTER (WHERE marker = '1d'))::BIGINT AS ip_attempts_24h
    FROM ip_running GROUP BY candidate_id
),
labels AS (
    SELECT transaction_id, 1 AS is_fraud FROM disputes
    WHERE reason = 'fraudulent' AND created_at < $label_at
    UNION
    SELECT transaction_id, 1 FROM fraud_alerts
    WHERE status = 'confirmed_fraud' AND coalesce(reviewed_at, created_at) < $label_at AND transaction_id IS NOT NULL
)
SELECT
    c.transaction_id, c.customer_id, c.created_at,
    coalesce(l.is_fraud, 0) AS is_fraud,
    c.risk_score AS platform_risk_score,
    c.amount_minor / sc.scale * CASE WHEN c.currency = $rc THEN 1.0 ELSE coalesce(fx.factor, fl.factor) END AS amount_rc,
    c.currency <> $rc AND fx.factor IS NULL AND fl.factor IS NULL AS missing_rate,
    c.payment_method, coalesce(c.card_brand, 'none') AS card_brand, c.billing_reason,
    c.country_code, coalesce(c.device_class, 'unknown') AS device_class,
    coalesce(cu.acquisition_channel, 'unknown') AS acquisition_channel,
    c.card_age_days,
    (c.card_age_days < 1)::INTEGER AS new_card,
    date_diff('month', date_trunc('month', c.created_day), c.card_expiry_month) AS months_to_expiry,
    (c.card_country IS DISTINCT FROM c.country_code)::INTEGER AS foreign_card,
    (c.ip_country IS DISTINCT FROM c.card_country AND c.payment_method <> 'bank_transfer')::INTEGER AS ip_card_mismatch,
    (c.ip_country IS DISTINCT FROM c.country_code)::INTEGER AS ip_abroad,
    hour(timezone($tz, c.created_at)) AS local_hour,
    isodow(timezone($tz, c.created_at)) AS weekday,
    (epoch(c.created_at) - epoch(cu.signup_at)) / 3600.0 AS account_age_hours,
    coalesce(cu.is_guest, false)::INTEGER AS is_guest,
    (c.campaign_id IS NOT NULL)::INTEGER AS from_campaign,
    (c.referrer_domain IS NULL)::INTEGER AS direct_visit,
    (c.discount_code IS NOT NULL)::INTEGER AS has_discount,
    coalesce(h.customer_attempts_1h, 0) AS customer_attempts_1h,
    coalesce(h.customer_attempts_24h, 0) AS customer_attempts_24h,
    coalesce(h.card_changes_before, 0) + coalesce(a.changed, 0) AS card_changes_24h,
    coalesce(ih.ip_attempts_1h, 0) AS ip_attempts_1h,
    coalesce(ih.ip_attempts_24h, 0) AS ip_attempts_24h,
    coalesce(h.failures_1h, 0) AS failures_1h,
    coalesce(h.prior_successes, 0) AS prior_successes,
    coalesce(h.prior_alerts, 0) AS prior_alerts
FROM c
LEFT JOIN customers cu ON cu.customer_id = c.customer_id
LEFT JOIN attempts a ON a.transaction_id = c.transaction_id
LEFT JOIN customer_history h ON h.transaction_id = c.transaction_id
LEFT JOIN ip_history ih ON ih.transaction_id = c.transaction_id
LEFT JOIN labels l ON l.transaction_id = c.transaction_id
LEFT JOIN scales sc ON sc.currency = c.currency
LEFT JOIN fx ON fx.currency = c.currency AND fx.rate_date = c.created_day
LEFT JOIN fx_latest fl ON fl.currency = c.currency AND c.created_day > fl.last_day
ORDER BY c.created_at, c.transaction_id
