-- Family: transactions. Grain: payment attempts created in the period (created_at in
-- [start, end) of the period's local days), after filters. Money in major units of the
-- reporting currency (converted at the rate of the attempt's UTC day).
--
-- total_transactions        attempts created in the period, any status (a dunning retry is its own attempt)
-- successful_transactions   attempts whose money was captured: status completed, refunded,
--                           partially_refunded or disputed (a later refund does not undo the success)
-- failed_transactions       attempts with status failed
-- other_transactions        pending or canceled attempts (total - successful - failed)
-- total_volume              sum of successful attempts' amounts
-- average_transaction_value total_volume / successful_transactions
-- success_rate              successful / total            (the platform's definition)
-- failure_rate              failed / total
-- decline_rate              attempts declined by the issuer (outcome issuer_declined) / total
-- authorization_rate        authorized / (authorized + issuer_declined): issuer approvals over
--                           attempts sent to issuers, i.e. excluding attempts our fraud rules
--                           blocked, provider errors and pending ones (Stripe's definition)
-- dunning_recovery_rate     of failed first attempts of recurring charges in the period, the share
--                           later paid by a retry (attempt_number > 1, any time up to the snapshot)

-- name: summary
SELECT
    count(*) AS total_transactions,
    count(*) FILTER (WHERE is_success) AS successful_transactions,
    count(*) FILTER (WHERE is_failed) AS failed_transactions,
    count(*) FILTER (WHERE NOT is_success AND NOT is_failed) AS other_transactions,
    coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS total_volume,
    sum(amount_rc) FILTER (WHERE is_success) / nullif(count(*) FILTER (WHERE is_success), 0) AS average_transaction_value,
    count(*) FILTER (WHERE is_success) / nullif(count(*), 0) AS success_rate,
    count(*) FILTER (WHERE is_failed) / nullif(count(*), 0) AS failure_rate,
    count(*) FILTER (WHERE outcome_type = 'issuer_declined') / nullif(count(*), 0) AS decline_rate,
    count(*) FILTER (WHERE outcome_type = 'authorized')
        / nullif(count(*) FILTER (WHERE outcome_type IN ('authorized', 'issuer_declined')), 0) AS authorization_rate,
    count(*) FILTER (WHERE outcome_type = 'authorized') AS authorized_attempts,
    count(*) FILTER (WHERE outcome_type IN ('authorized', 'issuer_declined')) AS issuer_attempts,
    count(*) FILTER (WHERE outcome_type = 'blocked') AS blocked_transactions,
    -- moments for significance tests on the average value
    coalesce(sum(amount_rc * amount_rc) FILTER (WHERE is_success), 0) AS volume_sum_squares
FROM payments

-- name: by_dimension
-- attempts, successes, failures and volume per value of $dimension: payment_method or provider
-- (an allow-list: engine.QUERY_CHOICES). by_payment_method and by_provider are this query with
-- the value column named after the dimension (engine.QUERY_VARIANTS).
SELECT
    CASE $dimension WHEN 'payment_method' THEN payment_method WHEN 'provider' THEN provider END AS value,
    count(*) AS transactions,
    count(*) FILTER (WHERE is_success) AS successful,
    count(*) FILTER (WHERE is_failed) AS failed,
    coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS volume,
    count(*) FILTER (WHERE is_success) / count(*) AS success_rate,
    count(*) / sum(count(*)) OVER () AS share_of_transactions
FROM payments
GROUP BY ALL
ORDER BY transactions DESC, value

-- name: time_series
-- $grain is one of hour/day/week/month (checked in Python); buckets are local times.
SELECT
    date_trunc($grain, created_local) AS bucket,
    count(*) AS transactions,
    count(*) FILTER (WHERE is_success) AS successful,
    count(*) FILTER (WHERE is_failed) AS failed,
    coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS volume,
    count(*) FILTER (WHERE is_success) / count(*) AS success_rate
FROM payments
GROUP BY ALL
ORDER BY bucket

-- name: failure_reasons
SELECT
    coalesce(failure_reason, 'other') AS failure_reason,
    count(*) AS failures,
    count(*) / sum(count(*)) OVER () AS share_of_failures
FROM payments
WHERE is_failed
GROUP BY ALL
ORDER BY failures DESC, failure_reason

-- name: failures_by_dimension
-- failure rate and top reason per value of each dimension (payment_method, provider, country,
-- amount_band, attempt), all in one pass over the period's payments: attempts are counted per
-- value, failed or not and failure reason, and the rate and the top reason read those counts; one
-- row per dimension and value
WITH tagged AS (
    SELECT
        payment_method, provider, country_code AS country,
        CASE
            WHEN amount_rc < 10 THEN '1: under 10'
            WHEN amount_rc < 50 THEN '2: 10-50'
            WHEN amount_rc < 100 THEN '3: 50-100'
            WHEN amount_rc < 250 THEN '4: 100-250'
            ELSE '5: 250 and more' END AS amount_band,
        CASE WHEN attempt_number = 1 THEN 'first attempt' ELSE 'retry' END AS attempt,
        is_failed, failure_reason
    FROM payments
),
counted AS (  -- attempts per dimension, value, failed or not, and failure reason
    SELECT
        CASE WHEN grouping(payment_method) = 0 THEN 'payment_method'
             WHEN grouping(provider) = 0 THEN 'provider'
             WHEN grouping(country) = 0 THEN 'country'
             WHEN grouping(amount_band) = 0 THEN 'amount_band'
             ELSE 'attempt' END AS dimension,
        CASE WHEN grouping(payment_method) = 0 THEN payment_method
             WHEN grouping(provider) = 0 THEN provider
             WHEN grouping(country) = 0 THEN country
             WHEN grouping(amount_band) = 0 THEN amount_band
             ELSE attempt END AS value,
        is_failed, failure_reason, count(*) AS attempts
    FROM tagged
    GROUP BY GROUPING SETS ((payment_method, is_failed, failure_reason), (provider, is_failed, failure_reason),
                            (country, is_failed, failure_reason), (amount_band, is_failed, failure_reason),
                            (attempt, is_failed, failure_reason))
),
grouped AS (
    SELECT dimension, value,
           CAST(sum(attempts) AS BIGINT) AS transactions,
           CAST(coalesce(sum(attempts) FILTER (WHERE is_failed), 0) AS BIGINT) AS failed
    FROM counted
    GROUP BY dimension, value
),
top AS (  -- the most frequent reason; of equally frequent ones the first by name
    SELECT dimension, value, failure_reason AS top_failure_reason
    FROM (SELECT *, row_number() OVER (PARTITION BY dimension, value ORDER BY attempts DESC, failure_reason) AS rank
          FROM counted
          WHERE is_failed AND failure_reason IS NOT NULL)
    WHERE rank = 1
)
SELECT g.dimension, g.value, g.transactions, g.failed, g.failed / g.transactions AS failure_rate,
       t.top_failure_reason
FROM grouped g
LEFT JOIN top t ON t.dimension = g.dimension AND t.value IS NOT DISTINCT FROM g.value
ORDER BY g.dimension, g.value

-- name: dunning
-- Failed first attempts of recurring charges created in the period, and whether a retry paid.
-- requires: retry_outcomes
WITH firsts AS (
    SELECT transaction_id
    FROM payments
    WHERE is_failed AND attempt_number = 1
      AND billing_reason IN ('subscription_create', 'subscription_cycle')
)
SELECT
    count(*) AS failed_recurring_charges,
    count(*) FILTER (WHERE r.retry_attempts > 0) AS retried,
    count(*) FILTER (WHERE r.recovered) AS recovered,
    count(*) FILTER (WHERE r.recovered) / nullif(count(*), 0) AS dunning_recovery_rate,
    coalesce(sum(r.retry_attempts), 0) AS retry_attempts
FROM firsts f LEFT JOIN retry_outcomes r ON r.original_transaction_id = f.transaction_id
