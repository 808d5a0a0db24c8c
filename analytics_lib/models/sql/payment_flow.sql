-- Payment flow (checkout funnel). A session "reaches" a step when it has an event of that step
-- or of any later step (a lost event does not break the funnel). Windows are [$start, $end) on
-- the event time (UTC instants bound as parameters).
--
-- reached_<step>   sessions that reached the step
-- conversion       sessions reaching the next step / sessions reaching this step
-- drop_off         1 - conversion

-- name: sessions
-- One row per checkout session in the window: its segment attributes and the furthest step.
WITH events AS (
    SELECT session_id, step, occurred_at, device_class, country_code, campaign_id, payment_method,
           transaction_id,
           CASE step WHEN 'view_product' THEN 1 WHEN 'begin_checkout' THEN 2 WHEN 'enter_payment' THEN 3
                     WHEN 'submit_payment' THEN 4 WHEN 'payment_succeeded' THEN 5 END AS step_no
    FROM checkout_events
    WHERE occurred_at >= $start AND occurred_at < $end
)
SELECT session_id,
       min(occurred_at) AS started_at,
       max(step_no) AS furthest_step,
       coalesce(any_value(device_class), 'unknown') AS device_class,
       coalesce(any_value(country_code), 'unknown') AS country_code,
       coalesce(any_value(campaign_id), 'none') AS campaign_id,
       coalesce(max(payment_method), 'none') AS payment_method,
       max(transaction_id) AS transaction_id
FROM events
GROUP BY session_id

-- name: paid_amounts
-- the payments of sessions that succeeded in the window, with the USD rate of their day
SELECT t.amount_minor, t.currency,
       CASE WHEN t.currency = 'USD' THEN 1.0 ELSE f.usd_per_unit END AS usd_per_unit
FROM transactions t
JOIN (SELECT DISTINCT transaction_id FROM checkout_events
      WHERE step = 'payment_succeeded' AND occurred_at >= $start AND occurred_at < $end) c USING (transaction_id)
LEFT JOIN fx_rates f ON f.currency = t.currency AND f.rate_date = CAST(t.created_at AS DATE)
