-- Model: clv (customer lifetime value). Features as of a local day `$end` (exclusive), built on
-- the metric layer's scoped tables: open a MetricSession on the snapshot and scope it to the
-- training window first, so that `payments` holds that window's payment attempts with
-- is_success (completed, refunded, partially_refunded, disputed), created_local (business time
-- zone) and amount_rc (major units of the reporting currency, converted through fx_rates at the
-- payment's UTC day), and `fx_factor` holds the day's conversion factors.
--
-- customer_days        one row per customer, local day and kind of successful payments:
--                      kind = 'one_off' (no subscription: courses) or 'subscription' (plan
--                      payments); amount = sum of amount_rc; the BTYD summary merges same-day rows
-- subscription_spells  one row per paid spell of a subscription known at `$as_of` (a UTC instant):
--                      a spell begins at a 'start' or 'reactivate' event and ends at the first
--                      'cancel' after it; price terms are those of the latest event of the spell,
--                      converted at the latest rate before `$as_of`

-- name: customer_days
SELECT customer_id,
       CAST(created_local AS DATE) AS day,
       CASE WHEN subscription_id IS NULL THEN 'one_off' ELSE 'subscription' END AS kind,
       sum(amount_rc) AS amount,
       count(*) AS payments
FROM payments
WHERE is_success AND CAST(created_local AS DATE) < $end
GROUP BY ALL

-- name: subscription_spells
WITH ev AS (
    SELECT *,
           sum(CASE WHEN event_type IN ('start', 'reactivate') THEN 1 ELSE 0 END)
               OVER (PARTITION BY subscription_id ORDER BY occurred_at, event_id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS spell_no
    FROM subscription_events
    WHERE occurred_at < $as_of
),
spells AS (
    SELECT subscription_id, spell_no,
           any_value(customer_id) AS customer_id,
           min(effective_at) FILTER (WHERE event_type IN ('start', 'reactivate')) AS began_at,
           min(occurred_at) FILTER (WHERE event_type = 'cancel') AS canceled_at,
           min(effective_at) FILTER (WHERE event_type = 'cancel') AS ended_at,
           arg_max(billing_interval_months, occurred_at) AS billing_interval_months,
           arg_max(price_minor * (1 - discount_percent / 100.0), occurred_at) AS price_minor,
           arg_max(currency, occurred_at) AS currency
    FROM ev
    WHERE spell_no > 0
    GROUP BY subscription_id, spell_no
),
latest_rate AS (
    SELECT currency, arg_max(factor, rate_date) AS factor
    FROM fx_factor WHERE rate_date <= CAST($as_of AS DATE)
    GROUP BY currency
)
SELECT s.subscription_id, s.spell_no, s.customer_id, s.began_at, s.canceled_at, s.ended_at,
       s.billing_interval_months, s.currency,
       s.price_minor / cs.scale
           * CASE WHEN s.currency = getvariable('rc') THEN 1.0 ELSE r.factor END AS price_rc,
       s.currency <> getvariable('rc') AND r.factor IS NULL AS missing_rate
FROM spells s
JOIN currency_scale cs ON cs.currency = s.currency
LEFT JOIN latest_rate r ON r.currency = s.currency
WHERE s.began_at IS NOT NULL AND s.began_at < $as_of
