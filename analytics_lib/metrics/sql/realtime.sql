-- Family: real time. The scope is a window of exact instants (default the 24 hours before "now").
--
-- transactions_per_hour  attempts in the window / window hours
-- success_rate / failure_rate / average_value as in the transactions family
-- revenue_per_hour       successful volume / window hours
-- active_users           distinct customers with a payment attempt or a checkout event in the window;
--                        under filters, checkout events count when they match the filters they can
--                        (country, method, product, campaign) and not at all under the others
-- fraud_alerts           alerts raised in the window that are still open (under filters: alerts on
--                        payments that match them)

-- name: summary
-- requires: alert_transactions
SELECT
    count(*) AS transactions,
    count(*) / $hours AS transactions_per_hour,
    count(*) FILTER (WHERE is_success) / nullif(count(*), 0) AS success_rate,
    count(*) FILTER (WHERE is_failed) / nullif(count(*), 0) AS failure_rate,
    sum(amount_rc) FILTER (WHERE is_success) / nullif(count(*) FILTER (WHERE is_success), 0) AS average_value,
    coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS revenue,
    coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) / $hours AS revenue_per_hour,
    (SELECT count(DISTINCT customer_id) FROM (
        SELECT customer_id FROM payments
        UNION ALL
        SELECT customer_id FROM checkout_events c
        WHERE occurred_month BETWEEN getvariable('p_start_month') AND getvariable('p_end_month')
          AND occurred_at >= getvariable('p_start') AND occurred_at < getvariable('p_end')
          AND customer_id IS NOT NULL
          AND (len(getvariable('f_country')) = 0 OR list_contains(getvariable('f_country'), c.country_code))
          AND (len(getvariable('f_payment_method')) = 0 OR list_contains(getvariable('f_payment_method'), c.payment_method))
          AND (len(getvariable('f_product')) = 0 OR list_contains(getvariable('f_product'), c.product_id))
          AND (len(getvariable('f_campaign')) = 0 OR list_contains(getvariable('f_campaign'), c.campaign_id))
          AND len(getvariable('f_currency')) = 0 AND len(getvariable('f_provider')) = 0
          AND len(getvariable('f_plan_type')) = 0 AND len(getvariable('f_discount_code')) = 0)) AS active_users,
    (SELECT count(*) FROM fraud_alerts a WHERE status = 'open'
        AND created_at >= getvariable('p_start') AND created_at < getvariable('p_end')
        AND (NOT getvariable('filters_active')
             OR a.transaction_id IN (SELECT transaction_id FROM alert_transactions))) AS open_fraud_alerts
FROM payments

-- name: hourly
SELECT date_trunc('hour', created_local) AS hour,
       count(*) AS transactions,
       count(*) FILTER (WHERE is_success) AS successful,
       count(*) FILTER (WHERE is_failed) AS failed,
       coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS revenue
FROM payments GROUP BY ALL ORDER BY hour

-- name: distribution
-- $dimension: country or payment_method
SELECT CASE $dimension WHEN 'country' THEN country_code ELSE payment_method END AS value,
       count(*) AS transactions,
       count(*) / sum(count(*)) OVER () AS share,
       coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS revenue
FROM payments GROUP BY ALL ORDER BY transactions DESC, value
