-- Model: churn. Active subscribers at reference dates, their features as of that date, and
-- whether they churned within the horizon after it.
--
-- grain            one row per customer per reference date ($ref_dates, UTC midnights)
-- population       customers with a subscription in a paid period at the reference date: the
--                  subscription's latest event that occurred before the date is start, upgrade,
--                  downgrade or reactivate with a price above 0 (MRR > 0). Trials, subscriptions
--                  with a cancellation already requested (latest event a cancel, even if it takes
--                  effect later) and ended ones are not at risk. With several such subscriptions
--                  the most recently started one describes the customer.
-- label            churned = 1 when one of the customer's subscriptions gets a cancel event
--                  (reason voluntary or payment_failed) that occurred in [ref, ref + $horizon_days)
--                  and was not taken back (no later event of that subscription before
--                  ref + $horizon_days).
-- features         only rows strictly before the reference date:
--   payments       attempts, failures and failure rate in the 90 days before (outcome known before
--                  the date), failures in the last 30 days, whether the latest known outcome failed
--   engagement     days since the last user_activity day; logins, lesson views, minutes and active
--                  days in the last 30 days and in the 30 days before those; trend = active days
--                  last 30 minus the 30 before
--   support        tickets in the last 90 days (all, billing, technical, refund requests) and 30
--   subscription   tenure (days since the subscription started), tier (products.category), annual
--                  flag, discount %, monthly price in the reporting currency (rate of the reference
--                  day; after the last published rate, the latest one), upgrades, downgrades
--                  and revoked cancellations so far, days to the next renewal (anchor = latest
--                  start event's effective time, + k billing intervals), renewal within the horizon
--   customer       country (and whether it is the home market), acquisition channel, device

-- name: population
CREATE OR REPLACE TEMP TABLE churn_population AS
WITH refs AS (SELECT unnest($ref_dates::TIMESTAMPTZ[]) AS ref_at),
latest AS (
    SELECT r.ref_at, e.*
    FROM refs r JOIN subscription_events e ON e.occurred_at < r.ref_at
    QUALIFY row_number() OVER (PARTITION BY r.ref_at, e.subscription_id
                               ORDER BY e.occurred_at DESC, e.event_id DESC) = 1
),
started AS (
    SELECT r.ref_at, e.subscription_id, min(e.occurred_at) AS started_at,
           max(e.effective_at) FILTER (WHERE e.event_type = 'start') AS anchor_at,
           count(*) FILTER (WHERE e.event_type = 'upgrade') AS upgrades,
           count(*) FILTER (WHERE e.event_type = 'downgrade') AS downgrades,
           count(*) FILTER (WHERE e.event_type = 'reactivate') AS reactivations,
           bool_or(e.event_type = 'trial_start') AS had_trial
    FROM refs r JOIN subscription_events e ON e.occurred_at < r.ref_at
    GROUP BY ALL
)
SELECT l.ref_at, l.customer_id, l.subscription_id, l.product_id, l.price_minor, l.currency,
       l.billing_interval_months, l.discount_percent, s.started_at, s.anchor_at, s.upgrades, s.downgrades,
       s.reactivations, s.had_trial
FROM latest l JOIN started s USING (ref_at, subscription_id)
WHERE l.event_type IN ('start', 'upgrade', 'downgrade', 'reactivate') AND l.price_minor > 0
  AND (list_contains($ids, l.customer_id) OR len($ids) = 0)
QUALIFY row_number() OVER (PARTITION BY l.ref_at, l.customer_id ORDER BY s.started_at DESC, l.subscription_id) = 1

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
pop AS (
    SELECT p.*, CAST(p.ref_at AS DATE) AS ref_day,
           (date_diff('month', p.anchor_at, p.ref_at) // p.billing_interval_months
            * p.billing_interval_months)::INTEGER AS k
    FROM churn_population p
),
pay AS (
    SELECT p.ref_at, p.customer_id,
           count(*) AS attempts_90d,
           count(*) FILTER (WHERE t.status = 'failed') AS failures_90d,
           count(*) FILTER (WHERE t.status = 'failed' AND t.failed_at >= p.ref_at - INTERVAL 30 DAY) AS failures_30d,
           arg_max(t.status = 'failed', coalesce(t.failed_at, t.completed_at)) AS last_payment_failed
    FROM pop p JOIN transactions t
      ON t.customer_id = p.customer_id
     AND coalesce(t.failed_at, t.completed_at) < p.ref_at
     AND coalesce(t.failed_at, t.completed_at) >= p.ref_at - INTERVAL 90 DAY
    GROUP BY ALL
),
act AS (
    SELECT p.ref_at, p.customer_id,
           count(*) FILTER (WHERE a.activity_date >= p.ref_day - 30) AS active_days_30d,
           count(*) FILTER (WHERE a.activity_date < p.ref_day - 30) AS active_days_prev_30d,
           coalesce(sum(a.logins) FILTER (WHERE a.activity_date >= p.ref_day - 30), 0) AS logins_30d,
           coalesce(sum(a.lesson_views) FILTER (WHERE a.activity_date >= p.ref_day - 30), 0) AS lesson_views_30d,
           -- minutes summed in integer tenths: a float sum would depend on the (parallel) order
           coalesce(sum(round(a.minutes_watched * 10)::BIGINT) FILTER (WHERE a.activity_date >= p.ref_day - 30), 0) / 10.0
               AS minutes_30d,
           coalesce(sum(round(a.minutes_watched * 10)::BIGINT) FILTER (WHERE a.activity_date < p.ref_day - 30), 0) / 10.0
               AS minutes_prev_30d
    FROM pop p JOIN user_activity a
      ON a.customer_id = p.customer_id AND a.activity_date < p.ref_day AND a.activity_date >= p.ref_day - 60
    GROUP BY ALL
),
last_act AS (
    SELECT p.ref_at, p.customer_id, max(a.activity_date) AS last_activity
    FROM pop p JOIN user_activity a ON a.customer_id = p.customer_id AND a.activity_date < p.ref_day
    GROUP BY ALL
),
tickets AS (
    SELECT p.ref_at, p.customer_id,
           count(*) AS tickets_90d,
           count(*) FILTER (WHERE s.created_at >= p.ref_at - INTERVAL 30 DAY) AS tickets_30d,
           count(*) FILTER (WHERE s.category = 'billing') AS billing_tickets_90d,
           count(*) FILTER (WHERE s.category = 'technical') AS technical_tickets_90d,
           count(*) FILTER (WHERE s.category = 'refund_request') AS refund_tickets_90d
    FROM pop p JOIN support_tickets s
      ON s.customer_id = p.customer_id AND s.created_at < p.ref_at AND s.created_at >= p.ref_at - INTERVAL 90 DAY
    GROUP BY ALL
),
renewal AS (
    SELECT ref_at, customer_id,
           CASE WHEN anchor_at + to_months(k) > ref_at THEN anchor_at + to_months(k)
                ELSE anchor_at + to_months(k + billing_interval_months) END AS next_renewal_at
    FROM pop WHERE anchor_at IS NOT NULL
)
SELECT
    p.ref_at, p.customer_id, p.subscription_id,
    coalesce(pr.category, 'unknown') AS tier,
    (p.billing_interval_months = 12)::INTEGER AS annual,
    p.discount_percent,
    p.price_minor / sc.scale * (1 - p.discount_percent / 100.0) / p.billing_interval_months
        * CASE WHEN p.currency = $rc THEN 1.0 ELSE coalesce(fx.factor, fl.factor) END AS mrr_rc,
    p.currency <> $rc AND fx.factor IS NULL AND fl.factor IS NULL AS missing_rate, p.currency,
    p.ref_at AS created_at,
    (epoch(p.ref_at) - epoch(p.started_at)) / 86400.0 AS tenure_days,
    p.upgrades, p.downgrades, p.reactivations, p.had_trial::INTEGER AS had_trial,
    (epoch(rn.next_renewal_at) - epoch(p.ref_at)) / 86400.0 AS days_to_renewal,
    (rn.next_renewal_at < p.ref_at + to_days($horizon_days))::INTEGER AS renews_within_horizon,
    rn.next_renewal_at,
    coalesce(pay.attempts_90d, 0) AS payment_attempts_90d,
    coalesce(pay.failures_90d, 0) AS payment_failures_90d,
    coalesce(pay.failures_90d, 0) / nullif(pay.attempts_90d, 0) AS payment_failure_rate_90d,
    coalesce(pay.failures_30d, 0) AS payment_failures_30d,
    coalesce(pay.last_payment_failed, false)::INTEGER AS last_payment_failed,
    date_diff('day', la.last_activity, p.ref_day) AS days_since_last_activity,
    coalesce(act.active_days_30d, 0) AS active_days_30d,
    coalesce(act.active_days_prev_30d, 0) AS active_days_prev_30d,
    coalesce(act.active_days_30d, 0) - coalesce(act.active_days_prev_30d, 0) AS activity_trend,
    coalesce(act.logins_30d, 0) AS logins_30d,
    coalesce(act.lesson_views_30d, 0) AS lesson_views_30d,
    coalesce(act.minutes_30d, 0) AS minutes_30d,
    coalesce(act.minutes_30d, 0) - coalesce(act.minutes_prev_30d, 0) AS minutes_trend,
    coalesce(tk.tickets_90d, 0) AS support_tickets_90d,
    coalesce(tk.tickets_30d, 0) AS support_tickets_30d,
    coalesce(tk.billing_tickets_90d, 0) AS billing_tickets_90d,
    coalesce(tk.technical_tickets_90d, 0) AS technical_tickets_90d,
    coalesce(tk.refund_tickets_90d, 0) AS refund_tickets_90d,
    coalesce(c.country_code, 'unknown') AS country_code,
    (c.country_code = $home)::INTEGER AS home_country,
    coalesce(c.acquisition_channel, 'unknown') AS acquisition_channel,
    coalesce(c.device_class, 'unknown') AS device_class,
    (epoch(p.ref_at) - epoch(c.signup_at)) / 86400.0 AS account_age_days
FROM pop p
LEFT JOIN products pr ON pr.product_id = p.product_id
LEFT JOIN customers c ON c.customer_id = p.customer_id
LEFT JOIN pay ON pay.ref_at = p.ref_at AND pay.customer_id = p.customer_id
LEFT JOIN act ON act.ref_at = p.ref_at AND act.customer_id = p.customer_id
LEFT JOIN last_act la ON la.ref_at = p.ref_at AND la.customer_id = p.customer_id
LEFT JOIN tickets tk ON tk.ref_at = p.ref_at AND tk.customer_id = p.customer_id
LEFT JOIN renewal rn ON rn.ref_at = p.ref_at AND rn.customer_id = p.customer_id
LEFT JOIN scales sc ON sc.currency = p.currency
LEFT JOIN fx ON fx.currency = p.currency AND fx.rate_date = p.ref_day
LEFT JOIN fx_latest fl ON fl.currency = p.currency AND p.ref_day > fl.last_day
ORDER BY p.ref_at, p.customer_id

-- name: labels
-- Rows after the reference date: used for the label only, never for features.
WITH cancels AS (
    SELECT e.subscription_id, e.customer_id, e.occurred_at,
           (SELECT min(later.occurred_at) FROM subscription_events later
            WHERE later.subscription_id = e.subscription_id AND later.event_type <> 'cancel'
              AND later.occurred_at > e.occurred_at) AS revoked_at
    FROM subscription_events e
    WHERE e.event_type = 'cancel' AND e.reason IN ('voluntary', 'payment_failed')
),
held AS (
    -- subscriptions each population row already had at its reference date
    SELECT DISTINCT p.ref_at, p.customer_id, e.subscription_id
    FROM churn_population p JOIN subscription_events e
      ON e.customer_id = p.customer_id AND e.occurred_at < p.ref_at
)
SELECT p.ref_at, p.customer_id,
       (count(c.occurred_at) > 0)::INTEGER AS churned,
       min(c.occurred_at) AS churned_at
FROM churn_population p
LEFT JOIN held h ON h.ref_at = p.ref_at AND h.customer_id = p.customer_id
LEFT JOIN cancels c
  ON c.subscription_id = h.subscription_id
 AND c.occurred_at >= p.ref_at AND c.occurred_at < p.ref_at + to_days($horizon_days)
 AND (c.revoked_at IS NULL OR c.revoked_at >= p.ref_at + to_days($horizon_days))
GROUP BY ALL
ORDER BY p.ref_at, p.customer_id

-- name: customers_known
SELECT customer_id FROM customers WHERE list_contains($ids, customer_id)
