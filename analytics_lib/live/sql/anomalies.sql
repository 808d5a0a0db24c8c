-- Anomaly rules: the counts the live rules test (analytics_lib/live/anomalies.py, docs/live.md).
--
-- Grain and definitions:
-- live_spans         one row per (week, span): span "previous" is the last complete clock hour in
--                    the business time zone, span "current" the clock hour so far; week 0 is now,
--                    week k the same local weekday and time k weeks earlier. as_of is the end of
--                    week 0's current span shifted by k weeks: a payment counts as succeeded or
--                    failed only if it was so by then, so a window whose newest payments are still
--                    pending is compared with earlier weeks at the same age.
-- span_counts        per week, span and (grouping set) provider: attempts, settled successes and
--                    failures as of as_of, scored attempts, attempts scored at or above the review
--                    threshold ($review).
-- live_window        the payments of week 0's spans that match the filters, in the reporting
--                    currency (amount_rc, major units; null where a rate is missing);
--                    payment_country is the country the payment was made from (IP country where
--                    known, else the buyer's country).
-- high_value_reference  for each high-value candidate, how many baseline payments (weeks >= 1,
--                    same spans) were at least as large, and how many there were.
-- country_history    attempts per customer and payment country in the lookback before the window,
--                    for the customers in the window (unfiltered: a filter must not hide history).
-- Every scan is bounded by time (month partitions plus created_at), so the cost follows the
-- window and the number of baseline weeks, not the length of the history. {week_ranges} is
-- replaced by one "created_at in [start_k, end_k)" test per week with bound values $start_k,
-- $end_k: DuckDB prunes row groups on each range, where one range join over the eight weeks
-- read every row between them (measured at 10M payments: 0.8 s against 0.1 s).
-- Scope variables (set by MetricSession.scope): p_start/p_end (the window: start of the previous
-- hour .. now), p_start_month/p_end_month, rc, f_<filter>.

-- name: data_start
SELECT min(created_at) AS first_payment
FROM transactions
WHERE created_month BETWEEN $first_month AND $last_month AND created_at < $now

-- name: span_counts
SELECT s.week, s.span,
       CASE WHEN grouping(t.provider) = 1 THEN NULL ELSE t.provider END AS provider,
       count(*) AS attempts,
       count(*) FILTER (WHERE is_successful(t.status)
                          AND coalesce(t.completed_at, t.created_at) < s.as_of) AS settled_success,
       count(*) FILTER (WHERE t.status = 'failed'
                          AND coalesce(t.failed_at, t.created_at) < s.as_of) AS settled_failed,
       count(t.risk_score) AS scored,
       count(*) FILTER (WHERE t.risk_score >= $review) AS high_risk
FROM filtered_transactions t
JOIN live_spans s ON t.created_at >= s.start_at AND t.created_at < s.end_at
WHERE t.created_month BETWEEN $first_month AND $last_month
  AND ({week_ranges})
GROUP BY GROUPING SETS ((s.week, s.span), (s.week, s.span, t.provider))

-- name: live_window
CREATE OR REPLACE TEMP TABLE live_window AS
SELECT t.transaction_id, t.customer_id, t.created_at, t.status, t.payment_method, t.provider,
       coalesce(t.ip_country, t.country_code) AS payment_country, t.risk_score,
       t.amount_minor / s.scale
           * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc
FROM filtered_transactions t
JOIN currency_scale s ON s.currency = t.currency
LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = CAST(t.created_at AS DATE)
WHERE t.created_month BETWEEN getvariable('p_start_month') AND getvariable('p_end_month')
  AND t.created_at >= getvariable('p_start') AND t.created_at < getvariable('p_end')

-- name: high_value_reference
WITH reference AS (
    SELECT t.amount_minor / s.scale
               * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc
    FROM filtered_transactions t
    JOIN live_spans p ON t.created_at >= p.start_at AND t.created_at < p.end_at AND p.week >= 1
    JOIN currency_scale s ON s.currency = t.currency
    LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = CAST(t.created_at AS DATE)
    WHERE t.created_month BETWEEN $first_month AND $last_month
      AND ({week_ranges})
)
SELECT c.transaction_id,
       count(r.amount_rc) FILTER (WHERE r.amount_rc >= c.amount_rc) AS exceeding,
       (SELECT count(amount_rc) FROM reference) AS total
FROM live_candidates c LEFT JOIN reference r ON true
GROUP BY c.transaction_id

-- name: country_history
SELECT t.customer_id, coalesce(t.ip_country, t.country_code) AS payment_country, count(*) AS payments
FROM transactions t
WHERE t.created_month BETWEEN $lookback_month AND getvariable('p_start_month')
  AND t.created_at >= $lookback_start AND t.created_at < getvariable('p_start')
  AND t.customer_id IN (SELECT customer_id FROM live_window)
GROUP BY ALL
