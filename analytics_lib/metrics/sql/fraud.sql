-- Family: fraud. Payments created in the period and fraud alerts raised in it.
--
-- risk score distribution   attempts per risk-score band of 10 points (0-9, ..., 90-100)
-- review_share / block_share  attempts with risk_score >= $review_threshold / >= $block_threshold
--                           (defaults 65 and 75), among attempts with a score
-- chargeback rate by segment  disputes opened in the period / successful payments in the period, per
--                           country, method and provider
-- fraud indicators          how often each indicator fired, and the dispute rate of the payments it
--                           fired on (all their disputes so far, any date)

-- name: summary
SELECT
    count(*) AS scored_transactions,
    avg(risk_score) AS average_risk_score,
    count(*) FILTER (WHERE risk_score >= $review_threshold) / nullif(count(*), 0) AS review_share,
    count(*) FILTER (WHERE risk_score >= $block_threshold) / nullif(count(*), 0) AS block_share,
    count(*) FILTER (WHERE risk_score >= $review_threshold AND risk_score < $block_threshold) AS review_count,
    count(*) FILTER (WHERE risk_score >= $block_threshold) AS block_count,
    count(*) FILTER (WHERE outcome_type = 'blocked') AS blocked_by_rules
FROM payments WHERE risk_score IS NOT NULL

-- name: risk_distribution
SELECT least(floor(risk_score / 10) * 10, 90)::INTEGER AS band_start,
       count(*) AS transactions,
       count(*) FILTER (WHERE is_success) AS successful,
       count(*) / sum(count(*)) OVER () AS share
FROM payments WHERE risk_score IS NOT NULL
GROUP BY ALL ORDER BY band_start

-- name: alerts
-- requires: alert_transactions
SELECT alert_type, severity, status, count(*) AS alerts, avg(risk_score) AS average_risk_score
FROM fraud_alerts
WHERE created_at >= getvariable('p_start') AND created_at < getvariable('p_end')
  -- unfiltered: every alert; filtered: alerts on payments that match the filters
  AND (NOT getvariable('filters_active')
       OR transaction_id IN (SELECT transaction_id FROM alert_transactions))
GROUP BY ALL ORDER BY alerts DESC, alert_type, severity, status

-- name: chargebacks_by_segment
-- requires: scoped_disputes
WITH s AS (
    SELECT CASE $dimension WHEN 'country' THEN country_code
               WHEN 'payment_method' THEN payment_method ELSE provider END AS value,
           count(*) FILTER (WHERE is_success) AS successful
    FROM payments GROUP BY ALL
),
d AS (
    SELECT CASE $dimension WHEN 'country' THEN country_code
               WHEN 'payment_method' THEN payment_method ELSE provider END AS value,
           count(*) AS disputes, count(*) FILTER (WHERE reason = 'fraudulent') AS fraud_disputes
    FROM scoped_disputes GROUP BY ALL
)
SELECT coalesce(s.value, d.value) AS value, coalesce(s.successful, 0) AS successful,
       coalesce(d.disputes, 0) AS disputes, coalesce(d.fraud_disputes, 0) AS fraud_disputes,
       coalesce(d.disputes, 0) / nullif(s.successful, 0) AS chargeback_rate
FROM s FULL JOIN d USING (value)
ORDER BY disputes DESC, successful DESC, value

-- name: indicators
WITH fired AS (
    SELECT p.transaction_id, unnest(p.fraud_indicators) AS indicator FROM payments p
),
disputed AS (SELECT DISTINCT transaction_id FROM disputes)
SELECT indicator, count(*) AS transactions,
       count(*) / (SELECT count(*) FROM payments) AS share_of_transactions,
       count(d.transaction_id) AS disputed,
       count(d.transaction_id) / count(*) AS dispute_rate
FROM fired LEFT JOIN disputed d USING (transaction_id)
GROUP BY ALL ORDER BY transactions DESC, indicator
