-- Queries the insight rules need beyond the metric layer's families. They run in the metric
-- session's scope (period, filters, reporting currency). They read only the scope's documented
-- building blocks: `payments` (the period's attempts after filters, amount_rc in major units of
-- the reporting currency, is_success), `filtered_transactions` (all attempts after filters),
-- `scoped_disputes` (disputes opened in the period whose payment passes the filters, named in a
-- `requires:` line so the session builds it once for the metrics and the rules),
-- `fx_factor`/`currency_scale` (conversion) and the scope variables; the raw tables (fees,
-- disputes, customers, subscriptions); and a metric family's own named query where one is
-- written `{family.query}` (inlined as a subquery, its `requires:` tables built first).
--
-- rfm_segment_revenue    per RFM segment (as of the period end, from customers.rfm): revenue of the
--                        period's successful payments and the customers who paid in the period
-- provider_cells         per provider x payment method x buyer country, payments created in the
--                        period: attempts, successful attempts, their amount, and the fees charged
--                        in the period on those payments (dispute fees excluded: they follow the
--                        dispute rate, not the price list); missing_fee_rates counts fees without an
--                        FX rate (the rule refuses to guess them)
-- card_network_disputes  per provider x card brand (visa, mastercard): successful payments created
--                        in the period (sales) and disputes opened in the period on that brand's
--                        payments, whatever the payment's date: the monitoring programmes' ratio.
--                        The disputes are the metric session's `scoped_disputes` (opened in the
--                        period, payment passes the filters): built once, read by both
-- pricing_daily          one-off purchases (no subscription) from $start to $end: per local day the
--                        purchases, how many used a discount code, and the mean price index, where a
--                        purchase's price index is its amount / the median amount of the same
--                        product's full-price purchases (no code) in the same currency and local month
-- customer_segments      for the customer ids $ids: account country, acquisition channel and the
--                        plan of their latest subscription

-- name: rfm_segment_revenue
SELECT r.segment, coalesce(sum(p.amount_rc), 0) AS revenue, count(DISTINCT p.customer_id) AS paying_customers
FROM payments p JOIN ({customers.rfm}
) r USING (customer_id)
WHERE p.is_success
GROUP BY ALL
ORDER BY revenue DESC

-- name: provider_cells
WITH f AS (
    SELECT e.transaction_id,
           sum(e.amount_minor / s.scale * CASE WHEN e.currency = getvariable('rc') THEN 1.0 ELSE x.factor END) AS fees,
           count(*) FILTER (WHERE e.currency <> getvariable('rc') AND x.factor IS NULL) AS missing_rates
    FROM fees e
    JOIN currency_scale s ON s.currency = e.currency
    LEFT JOIN fx_factor x ON x.currency = e.currency AND x.rate_date = CAST(e.created_at AS DATE)
    WHERE e.created_at >= getvariable('p_start') AND e.created_at < getvariable('p_end')
      AND e.fee_type <> 'dispute'
      AND e.transaction_id IN (SELECT transaction_id FROM payments)
    GROUP BY ALL
)
SELECT p.provider, p.payment_method, p.country_code,
       count(*) AS attempts,
       count(*) FILTER (WHERE p.is_success) AS successes,
       coalesce(sum(p.amount_rc) FILTER (WHERE p.is_success), 0) AS gross,
       coalesce(sum(f.fees), 0) AS fees,
       coalesce(sum(f.missing_rates), 0) AS missing_fee_rates
FROM payments p LEFT JOIN f USING (transaction_id)
GROUP BY ALL
ORDER BY p.provider, attempts DESC

-- name: card_network_disputes
-- requires: scoped_disputes
WITH sales AS (
    SELECT provider, lower(card_brand) AS brand, count(*) AS sales
    FROM filtered_transactions
    WHERE created_month BETWEEN getvariable('p_start_month') AND getvariable('p_end_month')
      AND created_at >= getvariable('p_start') AND created_at < getvariable('p_end')
      AND is_successful(status) AND lower(card_brand) IN ('visa', 'mastercard')
    GROUP BY ALL
),
brands AS (
    -- only the disputed payments' card brands: a semi-join reads one column of the history
    -- instead of joining every card payment ever made
    SELECT transaction_id, provider, lower(card_brand) AS brand
    FROM filtered_transactions
    WHERE transaction_id IN (SELECT transaction_id FROM scoped_disputes)
      AND lower(card_brand) IN ('visa', 'mastercard')
),
opened AS (
    SELECT t.provider, t.brand, count(*) AS disputes,
           count(*) FILTER (WHERE d.reason = 'fraudulent') AS fraud_disputes
    FROM scoped_disputes d JOIN brands t USING (transaction_id)
    GROUP BY ALL
)
SELECT coalesce(s.provider, o.provider) AS provider, coalesce(s.brand, o.brand) AS brand,
       coalesce(s.sales, 0) AS sales, coalesce(o.disputes, 0) AS disputes,
       coalesce(o.fraud_disputes, 0) AS fraud_disputes
FROM sales s FULL JOIN opened o ON s.provider = o.provider AND s.brand = o.brand
ORDER BY provider, brand

-- name: pricing_daily
WITH one_off AS (
    SELECT product_id, currency, amount_minor, discount_code IS NOT NULL AS discounted,
           CAST(timezone(getvariable('tz'), created_at) AS DATE) AS day,
           date_trunc('month', timezone(getvariable('tz'), created_at)) AS month
    FROM filtered_transactions
    WHERE created_month BETWEEN $start_month AND $end_month
      AND created_at >= $start AND created_at < $end
      AND is_successful(status) AND subscription_id IS NULL AND product_id IS NOT NULL
      AND amount_minor > 0
),
reference AS (
    SELECT product_id, currency, month, median(amount_minor) AS full_price
    FROM one_off WHERE NOT discounted
    GROUP BY ALL
)
SELECT o.day, count(*) AS purchases, count(*) FILTER (WHERE o.discounted) AS discounted,
       avg(o.amount_minor / r.full_price) AS price_index
FROM one_off o JOIN reference r USING (product_id, currency, month)
GROUP BY o.day
ORDER BY o.day

-- name: customer_segments
WITH ids AS (SELECT DISTINCT unnest($ids::VARCHAR[]) AS customer_id),
latest AS (
    SELECT customer_id, arg_max(product_id, started_at) AS plan
    FROM subscriptions WHERE customer_id IN (SELECT customer_id FROM ids)
    GROUP BY ALL
)
SELECT i.customer_id, c.country_code AS country, c.acquisition_channel AS channel, l.plan
FROM ids i LEFT JOIN customers c USING (customer_id) LEFT JOIN latest l USING (customer_id)
