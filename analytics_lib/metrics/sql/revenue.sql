-- Family: revenue. Cash view of the period: each amount is dated by its own event and converted
-- at the rate of that event's UTC day. Filters apply through the payment each row belongs to.
--
-- gross_revenue          successful payments created in the period (= transactions.total_volume)
-- refunds                refunds issued in the period (status succeeded), whatever the payment's date
-- chargebacks            disputes opened in the period that were not won (open or lost): the money
--                        is withdrawn when a dispute opens and returned only if it is won
-- fees                   provider fees charged in the period (processing, fixed, FX, dispute fees)
-- net_revenue            gross_revenue - refunds - chargebacks - fees
-- refund_rate            refunds issued / successful payments        (count)
-- refund_rate_amount     refunds / gross_revenue                     (amount)
-- chargeback_rate        disputes opened / successful payments       (count; all disputes, won or not,
--                        as card networks count them)
-- chargeback_rate_amount disputed amount / gross_revenue             (amount)
-- revenue_per_customer   gross_revenue / distinct paying customers
-- subscription_revenue   gross from payments tied to a subscription; one_off_revenue the rest

-- name: summary
-- requires: scoped_refunds, scoped_disputes, scoped_fees, paying_customers
WITH p AS (
    SELECT
        coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS gross_revenue,
        count(*) FILTER (WHERE is_success) AS successful_payments,
        (SELECT count(*) FROM paying_customers) AS paying_customers,
        coalesce(sum(amount_rc) FILTER (WHERE is_success AND subscription_id IS NOT NULL), 0) AS subscription_revenue,
        coalesce(sum(amount_rc) FILTER (WHERE is_success AND subscription_id IS NULL), 0) AS one_off_revenue
    FROM payments
),
r AS (SELECT coalesce(sum(amount_rc), 0) AS refunds, count(*) AS refund_count FROM scoped_refunds),
d AS (
    SELECT
        coalesce(sum(amount_rc) FILTER (WHERE status <> 'won'), 0) AS chargebacks,
        coalesce(sum(amount_rc), 0) AS disputed_amount,
        count(*) AS dispute_count,
        count(*) FILTER (WHERE status = 'lost') AS disputes_lost,
        count(*) FILTER (WHERE status = 'won') AS disputes_won
    FROM scoped_disputes
),
f AS (SELECT coalesce(sum(amount_rc), 0) AS fees FROM scoped_fees)
SELECT
    p.gross_revenue, r.refunds, d.chargebacks, f.fees,
    p.gross_revenue - r.refunds - d.chargebacks - f.fees AS net_revenue,
    p.successful_payments, r.refund_count, d.dispute_count, d.disputes_lost, d.disputes_won,
    d.disputed_amount,
    r.refund_count / nullif(p.successful_payments, 0) AS refund_rate,
    r.refunds / nullif(p.gross_revenue, 0) AS refund_rate_amount,
    d.dispute_count / nullif(p.successful_payments, 0) AS chargeback_rate,
    d.disputed_amount / nullif(p.gross_revenue, 0) AS chargeback_rate_amount,
    p.paying_customers,
    p.gross_revenue / nullif(p.paying_customers, 0) AS revenue_per_customer,
    p.subscription_revenue, p.one_off_revenue
FROM p, r, d, f

-- name: by_product
SELECT
    coalesce(p.product_id, '(none)') AS product_id,
    coalesce(any_value(pr.name), p.product_id, '(none)') AS product_name,
    coalesce(any_value(pr.product_type), 'unknown') AS product_type,
    count(*) AS payments,
    count(DISTINCT p.customer_id) AS customers,
    sum(p.amount_rc) AS revenue,
    sum(p.amount_rc) / sum(sum(p.amount_rc)) OVER () AS share_of_revenue
FROM payments p
LEFT JOIN products pr ON pr.product_id = p.product_id
WHERE p.is_success
GROUP BY p.product_id
ORDER BY revenue DESC, product_id

-- name: by_plan_type
SELECT
    coalesce(plan_type, 'unknown') AS plan_type,
    count(*) AS payments,
    count(DISTINCT customer_id) AS customers,
    sum(amount_rc) AS revenue,
    sum(amount_rc) / sum(sum(amount_rc)) OVER () AS share_of_revenue
FROM payments
WHERE is_success
GROUP BY ALL
ORDER BY revenue DESC, plan_type

-- name: by_currency
-- revenue in each charge currency (major units of that currency) and in the reporting currency
SELECT
    p.currency,
    count(*) AS payments,
    sum(p.amount_minor) / any_value(s.scale) AS revenue_original,
    sum(p.amount_rc) AS revenue,
    sum(p.amount_rc) / sum(sum(p.amount_rc)) OVER () AS share_of_revenue
FROM payments p JOIN currency_scale s USING (currency)
WHERE p.is_success
GROUP BY p.currency
ORDER BY revenue DESC, currency

-- name: daily
-- one row per local day of the period (days without activity included), for trend tests
-- requires: scoped_refunds, scoped_disputes, scoped_fees
WITH days AS (
    SELECT CAST(d AS DATE) AS day
    FROM generate_series(getvariable('p_start_date')::TIMESTAMP,
                         getvariable('p_end_date')::TIMESTAMP - INTERVAL 1 DAY, INTERVAL 1 DAY) AS g(d)
),
p AS (SELECT CAST(created_local AS DATE) AS day,
             coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS revenue,
             count(*) AS transactions, count(*) FILTER (WHERE is_success) AS successful
      FROM payments GROUP BY ALL),
r AS (SELECT CAST(timezone(getvariable('tz'), created_at) AS DATE) AS day, sum(amount_rc) AS refunds
      FROM scoped_refunds GROUP BY ALL),
d AS (SELECT CAST(timezone(getvariable('tz'), created_at) AS DATE) AS day,
             sum(amount_rc) FILTER (WHERE status <> 'won') AS chargebacks
      FROM scoped_disputes GROUP BY ALL),
f AS (SELECT day, sum(amount_rc) AS fees FROM scoped_fees GROUP BY ALL)
SELECT days.day,
       coalesce(p.revenue, 0) AS revenue,
       coalesce(r.refunds, 0) AS refunds,
       coalesce(d.chargebacks, 0) AS chargebacks,
       coalesce(f.fees, 0) AS fees,
       coalesce(p.revenue, 0) - coalesce(r.refunds, 0) - coalesce(d.chargebacks, 0) - coalesce(f.fees, 0) AS net_revenue,
       coalesce(p.transactions, 0) AS transactions,
       coalesce(p.successful, 0) AS successful
FROM days LEFT JOIN p USING (day) LEFT JOIN r USING (day) LEFT JOIN d USING (day) LEFT JOIN f USING (day)
ORDER BY days.day

-- name: gross_between
-- Gross revenue of another period ($start, $end: UTC instants; $start_month, $end_month: their
-- UTC months, for partition pruning) under the current filters and reporting currency, without
-- building that period's scope (growth vs previous period and last year). Like a scope, a
-- payment of that period without a rate (any status) is an error: missing holds the first one.
SELECT
    coalesce(sum(t.amount_minor / s.scale
        * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END)
        FILTER (WHERE is_successful(t.status)), 0) AS gross_revenue,
    min(struct_pack(d := utc_date(t.created_at), c := t.currency))
        FILTER (WHERE t.currency <> getvariable('rc') AND f.factor IS NULL) AS missing
FROM filtered_transactions t
JOIN currency_scale s ON s.currency = t.currency
LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = utc_date(t.created_at)
WHERE t.created_month BETWEEN $start_month AND $end_month
  AND t.created_at >= $start AND t.created_at < $end
