-- History set-up: tables over all history (not only the period), built on demand per scope.
-- Filters apply; money is converted at the rate of each row's own UTC day.

-- name: mrr_events
-- Each subscription event with the monthly-normalised recurring revenue in force after it:
-- price / billing_interval_months x (1 - discount_percent/100), converted at the rate of the day
-- the terms were set, so exchange-rate drift never shows up as expansion or contraction.
-- Trials, cancellations and unpaid ends (cancel with reason payment_failed) carry 0.
-- mrr_cancel_at = 'period_end' (default) dates a cancel at its effective_at, 'request' at occurred_at.
-- With 'period_end', a cancellation that the customer takes back (any later event of the
-- subscription made before the cancellation took effect) never takes effect.
CREATE OR REPLACE TEMP TABLE mrr_events AS
SELECT
    e.event_id, e.subscription_id, e.customer_id, e.event_type, e.product_id,
    e.billing_interval_months,
    CASE WHEN e.event_type = 'cancel' AND getvariable('mrr_cancel_at') = 'request'
         THEN e.occurred_at ELSE e.effective_at END AS effective_ts,
    -- product, plan type and currency filters define a segment: an event that moves the
    -- subscription out of it leaves it with 0 MRR in the segment (MRR leaving the segment), so
    -- the subscription does not keep the MRR of its last matching event
    CASE WHEN e.event_type IN ('trial_start', 'cancel') THEN 0.0
         WHEN NOT (
             (len(getvariable('f_currency')) = 0 OR list_contains(getvariable('f_currency'), e.currency))
             AND (len(getvariable('f_product')) = 0 OR list_contains(getvariable('f_product'), e.product_id))
             AND (len(getvariable('f_plan_type')) = 0 OR list_contains(getvariable('f_plan_type'),
                  CASE e.billing_interval_months WHEN 1 THEN 'monthly' WHEN 12 THEN 'annual' ELSE 'other' END)))
         THEN 0.0
         ELSE round(e.price_minor / s.scale * (1 - e.discount_percent / 100.0) / e.billing_interval_months
              * CASE WHEN e.currency = getvariable('rc') THEN 1.0 ELSE f.factor END, 6)
    END AS mrr,
    e.currency,
    e.occurred_at AS created_at,
    -- checked only for events a period needs (api.recurring_revenue)
    e.event_type NOT IN ('trial_start', 'cancel') AND e.currency <> getvariable('rc')
        AND f.factor IS NULL AS unconverted
FROM subscription_events e
JOIN currency_scale s ON s.currency = e.currency
LEFT JOIN fx_factor f ON f.currency = e.currency AND f.rate_date = CAST(e.occurred_at AS DATE)
LEFT JOIN customers c ON c.customer_id = e.customer_id
LEFT JOIN subscriptions sub ON sub.subscription_id = e.subscription_id
WHERE (len(getvariable('f_country')) = 0 OR list_contains(getvariable('f_country'), c.country_code))
  AND (len(getvariable('f_discount_code')) = 0 OR list_contains(getvariable('f_discount_code'), sub.discount_code))
  AND len(getvariable('f_payment_method')) = 0
  AND len(getvariable('f_provider')) = 0
  AND len(getvariable('f_campaign')) = 0
  AND NOT (e.event_type = 'cancel' AND getvariable('mrr_cancel_at') = 'period_end' AND EXISTS (
        SELECT 1 FROM subscription_events later
        WHERE later.subscription_id = e.subscription_id AND later.event_type <> 'cancel'
          AND later.occurred_at > e.occurred_at AND later.occurred_at < e.effective_at))

-- name: customer_months
-- One row per customer and local calendar month with successful payments (all history; a scope
-- cuts it at its period end in customer_months_asof).
CREATE OR REPLACE TEMP TABLE customer_months AS
SELECT
    t.customer_id,
    CAST(date_trunc('month', timezone(getvariable('tz'), t.created_at)) AS DATE) AS month,
    count(*) AS payments,
    sum(t.amount_minor / s.scale
        * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END) AS revenue,
    min(t.created_at) AS first_at,
    max(t.created_at) AS last_at,
    -- rows without a rate are reported only when a period needs them (customer_months_asof)
    min(t.created_at) FILTER (WHERE t.currency <> getvariable('rc') AND f.factor IS NULL) AS unconverted_at,
    any_value(t.currency) FILTER (WHERE t.currency <> getvariable('rc') AND f.factor IS NULL) AS unconverted_currency
FROM filtered_transactions t
JOIN currency_scale s ON s.currency = t.currency
LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = CAST(t.created_at AS DATE)
WHERE is_successful(t.status)
GROUP BY ALL

-- name: mrr_deltas
-- Each event's change of its subscription's MRR (the MRR after it minus the MRR after the
-- subscription's previous event). A customer's MRR at an instant is the sum of the deltas of
-- the events strictly before it, so the MRR of every customer at a few instants is one scan.
-- requires: mrr_events
CREATE OR REPLACE TEMP TABLE mrr_deltas AS
SELECT customer_id, subscription_id, effective_ts, mrr,
       mrr - coalesce(lag(mrr) OVER (PARTITION BY subscription_id ORDER BY effective_ts, created_at, event_id), 0) AS delta
FROM mrr_events

-- name: customer_courses
-- Each course a customer bought, with when they first bought it (all history; scopes cut it at
-- their period end).
CREATE OR REPLACE TEMP TABLE customer_courses AS
SELECT t.customer_id, t.product_id, min(t.created_at) AS first_bought_at
FROM filtered_transactions t JOIN products p ON p.product_id = t.product_id AND p.product_type = 'course'
WHERE is_successful(t.status)
GROUP BY ALL
