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
--
-- How: a candidates_* query selects the candidates with their columns; it becomes the
-- materialized CTE fraud_candidates of the features query (one statement: writing them to a
-- temporary table first cost more than selecting them). The velocity
-- and history counts are read off one time line per customer and one per IP that start a day (the
-- longest window) before the earliest candidate, each a single sort: the candidates' own rows
-- carry the windows as RANGE frames, and captures, alerts and the last card from before the time
-- line enter as per-customer totals. Scoring a recent window therefore sorts only that window's
-- rows, not every customer's whole history. A capture rides on its attempt's row when it completed
-- before the customer's next attempt (most do, within seconds), so the customer time line holds
-- about 40 % fewer rows; only the others are rows of their own.
--
-- History created before $history_from (the first day of a month, or the epoch) is not read here:
-- it arrives in two temporary tables the caller makes with history_before and history_late below
-- (fraud.py keeps them in the warehouse's cache, keyed by the files of the months before
-- $history_from, which later ingests do not touch). With the epoch and both tables empty the query
-- reads everything itself; the features are the same either way.

-- name: candidates_window
SELECT transaction_id, customer_id, created_at, risk_score, amount_minor, currency, payment_method, card_brand,
       card_country, card_age_days, card_expiry_month, billing_reason, country_code, ip_country, ip_hash,
       device_class, campaign_id, referrer_domain, discount_code
FROM transactions
WHERE created_at >= $start AND created_at < $end
  AND billing_reason IN ('purchase', 'subscription_create')

-- name: candidates_ids
-- the named rows are found on two columns first, then read whole by (created_at, transaction_id):
-- the join's bounds on created_at skip the row groups outside the ids' time span, which a filter
-- on the (random) ids alone cannot; reading every column of every row cost 8x finding the ids
WITH found AS MATERIALIZED (
    SELECT DISTINCT created_at, transaction_id FROM transactions WHERE list_contains($ids, transaction_id)
)
SELECT t.transaction_id, t.customer_id, t.created_at, t.risk_score, t.amount_minor, t.currency, t.payment_method,
       t.card_brand, t.card_country, t.card_age_days, t.card_expiry_month, t.billing_reason, t.country_code,
       t.ip_country, t.ip_hash, t.device_class, t.campaign_id, t.referrer_domain, t.discount_code
FROM transactions t SEMI JOIN found f ON f.created_at = t.created_at AND f.transaction_id = t.transaction_id

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
-- the time lines start a day (the longest window) before the earliest candidate; what happened
-- before that enters only as per-customer totals
since AS (SELECT min(created_at) - INTERVAL 1 DAY AS since_at, epoch_us(min(created_at)) - 86400000000 AS since_us
          FROM fraud_candidates),
-- integer customer keys: the time lines sort by them much faster than by the text ids
cust AS MATERIALIZED (
    SELECT customer_id, row_number() OVER () AS cid FROM (SELECT DISTINCT customer_id FROM fraud_candidates)
),
history AS MATERIALIZED (
    -- every transaction of the candidates' customers created from $history_from on, and the
    -- earlier ones that completed or failed from then on (fraud_late); card = brand, issuing
    -- country and expiry month (the export has no card fingerprint)
    SELECT k.cid, t.transaction_id, epoch_us(t.created_at) AS at_us,
           CASE WHEN t.status = 'failed' THEN epoch_us(t.failed_at) END AS failed_us,
           epoch_us(t.completed_at) AS completed_us,
           hash(t.payment_method, t.card_brand, t.card_country, t.card_expiry_month) AS card_key
    FROM transactions t JOIN cust k USING (customer_id)
    WHERE t.created_at >= $history_from
    UNION ALL
    SELECT k.cid, l.transaction_id, l.at_us, l.failed_us, l.completed_us, l.card_key
    FROM fraud_late l JOIN cust k USING (customer_id)
),
earlier AS (
    -- per customer, before the time lines start: payments captured, and the card of the last
    -- attempt; what was created before $history_from enters as per-customer totals (fraud_before)
    SELECT cid, sum(successes)::BIGINT AS successes, arg_max(last_card, last_key) AS last_card
    FROM (
        SELECT cid, count(*) FILTER (WHERE completed_us < since_us) AS successes,
               arg_max(card_key, (at_us, transaction_id)) FILTER (WHERE at_us < since_us) AS last_card,
               max((at_us, transaction_id)) FILTER (WHERE at_us < since_us) AS last_key
        FROM history, since WHERE at_us < since_us OR completed_us < since_us GROUP BY cid
        UNION ALL
        SELECT k.cid, b.successes, b.last_card, (b.last_at, b.last_transaction_id)
        FROM fraud_before b JOIN cust k USING (customer_id)
    )
    GROUP BY cid
),
earlier_alerts AS (
    SELECT k.cid, count(*) AS alerts
    FROM fraud_alerts a JOIN cust k USING (customer_id), since WHERE a.created_at < since_at GROUP BY ALL
),
attempts AS (
    -- the customers' attempts on the time line; changed = another card than the customer's previous
    -- attempt; inline = its capture is known before the customer's next attempt (or there is none)
    SELECT transaction_id, cid, at_us, completed_us,
           (card_key IS DISTINCT FROM prev_key AND prev_key IS NOT NULL)::INTEGER AS changed,
           completed_us IS NOT NULL AND (next_us IS NULL OR completed_us < next_us) AS inline
    FROM (
        SELECT h.transaction_id, h.cid, h.at_us, h.card_key, h.completed_us,
               coalesce(lag(h.card_key) OVER a, e.last_card) AS prev_key, lead(h.at_us) OVER a AS next_us
        FROM history h JOIN since ON h.at_us >= since_us LEFT JOIN earlier e USING (cid)
        WINDOW a AS (PARTITION BY h.cid ORDER BY h.at_us, h.transaction_id)
    )
),
customer_line AS (
    -- one time line per customer: attempts at their time (kind 0) and what became known later
    -- (kind 1): failures, captures and fraud alerts. ek = 2 x microseconds + kind, so at an
    -- attempt's row everything with a smaller ek happened strictly before it, and an offset of
    -- 2 x d microseconds is a window of d microseconds. An inline capture is counted on its
    -- attempt's row: every later attempt of the customer (a larger ek) came after it completed,
    -- and the frames below end before the row's own ek, so neither the attempt itself nor one in
    -- the same microsecond counts it.
    SELECT cid, transaction_id, at_us * 2 AS ek, 1 AS attempt, changed, 0 AS failure, inline::BIGINT AS known
    FROM attempts
    UNION ALL
    SELECT cid, NULL, failed_us * 2 + 1, 0, 0, 1, 0 FROM history, since WHERE failed_us >= since_us
    UNION ALL
    -- captures and alerts share one running sum: captures in the low 32 bits, alerts above
    SELECT cid, NULL, completed_us * 2 + 1, 0, 0, 0, 1 FROM attempts WHERE completed_us IS NOT NULL AND NOT inline
    UNION ALL
    SELECT cid, NULL, completed_us * 2 + 1, 0, 0, 0, 1 FROM history, since WHERE completed_us >= since_us AND at_us < since_us
    UNION ALL
    SELECT k.cid, NULL, epoch_us(a.created_at) * 2 + 1, 0, 0, 0, 1::BIGINT << 32
    FROM fraud_alerts a JOIN cust k USING (customer_id), since WHERE a.created_at >= since_at
),
customer_counts AS (
    -- frames end 1 PRECEDING: an attempt's own row (ek = 2 x t) sees attempts before t (ek <= 2 x t - 2)
    -- and what became known before t (ek <= 2 x t - 1); two counts share each running sum. The
    -- known sum needs RANGE (not ROWS) for that: rows in one microsecond sort in any order
    SELECT transaction_id, cid, changed,
           coalesce(sum(known) OVER (w RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS known_before,
           sum(attempt + (failure::BIGINT << 32)) OVER (w RANGE BETWEEN 7200000000 PRECEDING AND 1 PRECEDING) AS hour_before,
           sum(attempt + (changed::BIGINT << 32)) OVER (w RANGE BETWEEN 172800000000 PRECEDING AND 1 PRECEDING) AS day_before
    FROM customer_line
    WINDOW w AS (PARTITION BY cid ORDER BY ek)
    QUALIFY attempt = 1
),
customer_history AS (
    -- the totals from before the time line join here on the integer key (not on the text id below)
    SELECT h.transaction_id, h.changed, h.hour_before, h.day_before,
           (h.known_before & 4294967295) + coalesce(e.successes, 0) AS successes_before,
           (h.known_before >> 32) + coalesce(ea.alerts, 0) AS alerts_before
    FROM customer_counts h LEFT JOIN earlier e USING (cid) LEFT JOIN earlier_alerts ea USING (cid)
),
ips AS MATERIALIZED (
    SELECT ip_hash, row_number() OVER () AS iid FROM (SELECT DISTINCT ip_hash FROM fraud_candidates WHERE ip_hash IS NOT NULL)
),
ip_history AS (
    -- attempts from the same IP (any customer) in the hour and the day strictly before
    SELECT transaction_id,
           count(*) OVER (w RANGE BETWEEN 3600000000 PRECEDING AND 1 PRECEDING) AS ip_attempts_1h,
           count(*) OVER (w RANGE BETWEEN 86400000000 PRECEDING AND 1 PRECEDING) AS ip_attempts_24h
    FROM (SELECT i.iid, t.transaction_id, epoch_us(t.created_at) AS at_us
          FROM transactions t JOIN ips i USING (ip_hash), since WHERE t.created_at >= since_at)
    WINDOW w AS (PARTITION BY iid ORDER BY at_us)
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
    date_diff('month', date_trunc('month', CAST(c.created_at AS DATE)), c.card_expiry_month) AS months_to_expiry,
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
    coalesce(h.hour_before & 4294967295, 0)::BIGINT AS customer_attempts_1h,
    coalesce(h.day_before & 4294967295, 0)::BIGINT AS customer_attempts_24h,
    (coalesce(h.day_before >> 32, 0) + coalesce(h.changed, 0))::BIGINT AS card_changes_24h,
    coalesce(ih.ip_attempts_1h, 0) AS ip_attempts_1h,
    coalesce(ih.ip_attempts_24h, 0) AS ip_attempts_24h,
    coalesce(h.hour_before >> 32, 0)::BIGINT AS failures_1h,
    coalesce(h.successes_before, 0)::BIGINT AS prior_successes,
    coalesce(h.alerts_before, 0)::BIGINT AS prior_alerts
FROM fraud_candidates c
LEFT JOIN customers cu ON cu.customer_id = c.customer_id
LEFT JOIN customer_history h ON h.transaction_id = c.transaction_id
LEFT JOIN ip_history ih ON ih.transaction_id = c.transaction_id
LEFT JOIN labels l ON l.transaction_id = c.transaction_id
LEFT JOIN scales sc ON sc.currency = c.currency
LEFT JOIN fx ON fx.currency = c.currency AND fx.rate_date = CAST(c.created_at AS DATE)
LEFT JOIN fx_latest fl ON fl.currency = c.currency AND CAST(c.created_at AS DATE) > fl.last_day
WHERE c.customer_id IS NOT NULL  -- a candidate without a customer has no time line
ORDER BY c.created_at, c.transaction_id


-- name: history_before
-- per customer, everything created before $history_from: payments captured before it, and the
-- last attempt (time, id, card)
SELECT customer_id, count(*) FILTER (WHERE completed_at < $history_from) AS successes,
       max(epoch_us(created_at)) AS last_at,
       arg_max(transaction_id, (epoch_us(created_at), transaction_id)) AS last_transaction_id,
       arg_max(hash(payment_method, card_brand, card_country, card_expiry_month),
               (epoch_us(created_at), transaction_id)) AS last_card
FROM transactions
WHERE created_at < $history_from AND customer_id IS NOT NULL
GROUP BY customer_id

-- name: history_late
-- what was created before $history_from and completed or failed from then on
SELECT customer_id, transaction_id, epoch_us(created_at) AS at_us,
       CASE WHEN status = 'failed' THEN epoch_us(failed_at) END AS failed_us,
       epoch_us(completed_at) AS completed_us,
       hash(payment_method, card_brand, card_country, card_expiry_month) AS card_key
FROM transactions
WHERE created_at < $history_from AND customer_id IS NOT NULL
  AND (completed_at >= $history_from OR (status = 'failed' AND failed_at >= $history_from))
