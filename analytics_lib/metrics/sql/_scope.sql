-- Scope set-up: the period's rows, filtered and converted to the reporting currency, in one
-- place. Variables: p_start/p_end (UTC instants of the period's local midnights), tz,
-- rc (reporting currency), f_<filter> (accepted values; empty = no filter).
-- Money columns ending in _rc are in major units of the reporting currency.

-- name: filtered_transactions
CREATE OR REPLACE TEMP VIEW filtered_transactions AS
SELECT *
FROM transactions t
WHERE (len(getvariable('f_currency')) = 0 OR list_contains(getvariable('f_currency'), t.currency))
  AND (len(getvariable('f_country')) = 0 OR list_contains(getvariable('f_country'), t.country_code))
  AND (len(getvariable('f_payment_method')) = 0 OR list_contains(getvariable('f_payment_method'), t.payment_method))
  AND (len(getvariable('f_provider')) = 0 OR list_contains(getvariable('f_provider'), t.provider))
  AND (len(getvariable('f_plan_type')) = 0 OR list_contains(getvariable('f_plan_type'), t.plan_type))
  AND (len(getvariable('f_product')) = 0 OR list_contains(getvariable('f_product'), t.product_id))
  AND (len(getvariable('f_campaign')) = 0 OR list_contains(getvariable('f_campaign'), t.campaign_id))
  AND (len(getvariable('f_discount_code')) = 0 OR list_contains(getvariable('f_discount_code'), t.discount_code))

-- name: payments
CREATE OR REPLACE TEMP TABLE payments AS
SELECT
    t.transaction_id, t.customer_id, t.amount_minor, t.currency, t.status, t.outcome_type,
    t.payment_method, t.provider, t.country_code, t.created_at, t.completed_at, t.failure_reason,
    t.attempt_number, t.original_transaction_id, t.billing_reason, t.product_id,
    t.subscription_id, t.plan_type, t.campaign_id, t.discount_code, t.risk_score,
    t.fraud_indicators,
    is_successful(t.status) AS is_success,
    t.status = 'failed' AS is_failed,
    timezone(getvariable('tz'), t.created_at) AS created_local,
    t.amount_minor / s.scale
        * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    t.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM filtered_transactions t
JOIN currency_scale s ON s.currency = t.currency
LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = CAST(t.created_at AS DATE)
WHERE t.created_month BETWEEN getvariable('p_start_month') AND getvariable('p_end_month')
  AND t.created_at >= getvariable('p_start') AND t.created_at < getvariable('p_end')

-- name: claim_transactions
-- The payments behind the period's refunds and disputes (and behind its fees when a filter is
-- on), with the columns breakdowns need: one scan of transactions per scope, shared by the three.
CREATE OR REPLACE TEMP TABLE claim_transactions AS
SELECT transaction_id, provider, payment_method, country_code, product_id, plan_type, risk_score,
       fraud_indicators
FROM filtered_transactions
WHERE transaction_id IN (
    SELECT transaction_id FROM refunds
    WHERE created_at >= getvariable('p_start') AND created_at < getvariable('p_end')
    UNION
    SELECT transaction_id FROM disputes
    WHERE created_at >= getvariable('p_start') AND created_at < getvariable('p_end')
    UNION
    SELECT transaction_id FROM fees
    WHERE getvariable('filters_active')
      AND created_at >= getvariable('p_start') AND created_at < getvariable('p_end')
)

-- name: alert_transactions
-- Under filters, the payments of the window's fraud alerts that match them (empty, and no scan,
-- without filters: alert counts then need no payment at all).
CREATE OR REPLACE TEMP TABLE alert_transactions AS
SELECT transaction_id FROM filtered_transactions
WHERE getvariable('filters_active')
  AND transaction_id IN (SELECT transaction_id FROM fraud_alerts
                         WHERE created_at >= getvariable('p_start') AND created_at < getvariable('p_end'))

-- name: scoped_refunds
-- requires: claim_transactions
CREATE OR REPLACE TEMP TABLE scoped_refunds AS
SELECT
    r.*, t.provider, t.payment_method, t.country_code, t.product_id, t.plan_type,
    r.amount_minor / s.scale
        * CASE WHEN r.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    r.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM refunds r
JOIN claim_transactions t USING (transaction_id)
JOIN currency_scale s ON s.currency = r.currency
LEFT JOIN fx_factor f ON f.currency = r.currency AND f.rate_date = CAST(r.created_at AS DATE)
WHERE r.status = 'succeeded'
  AND r.created_at >= getvariable('p_start') AND r.created_at < getvariable('p_end')

-- name: scoped_disputes
-- requires: claim_transactions
CREATE OR REPLACE TEMP TABLE scoped_disputes AS
SELECT
    d.*, t.provider, t.payment_method, t.country_code, t.product_id, t.plan_type, t.risk_score,
    t.fraud_indicators,
    d.amount_minor / s.scale
        * CASE WHEN d.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    d.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM disputes d
JOIN claim_transactions t USING (transaction_id)
JOIN currency_scale s ON s.currency = d.currency
LEFT JOIN fx_factor f ON f.currency = d.currency AND f.rate_date = CAST(d.created_at AS DATE)
WHERE d.created_at >= getvariable('p_start') AND d.created_at < getvariable('p_end')

-- name: scoped_fees
-- Fees carry their provider; the payment is only needed to apply filters.
-- requires: claim_transactions
CREATE OR REPLACE TEMP TABLE scoped_fees AS
SELECT
    e.*,
    e.amount_minor / s.scale
        * CASE WHEN e.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    e.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM fees e
JOIN currency_scale s ON s.currency = e.currency
LEFT JOIN fx_factor f ON f.currency = e.currency AND f.rate_date = CAST(e.created_at AS DATE)
WHERE e.created_at >= getvariable('p_start') AND e.created_at < getvariable('p_end')
  AND (NOT getvariable('filters_active')
       OR e.transaction_id IN (SELECT transaction_id FROM claim_transactions))

-- name: customer_months_asof
-- customer_months as of the period end: whole months before the end's month from the cached
-- history, plus the part of the end's month up to the period end, computed exactly.
-- requires: customer_months
CREATE OR REPLACE TEMP TABLE customer_months_asof AS
SELECT customer_id, month, payments, revenue, first_at, last_at,
       unconverted_at IS NOT NULL AS missing_rate, unconverted_currency AS currency,
       unconverted_at AS created_at
FROM customer_months WHERE month < getvariable('p_cut_date')
UNION ALL
SELECT
    t.customer_id,
    CAST(date_trunc('month', timezone(getvariable('tz'), t.created_at)) AS DATE) AS month,
    count(*), sum(t.amount_minor / s.scale
        * CASE WHEN t.currency = getvariable('rc') THEN 1.0 ELSE f.factor END),
    min(t.created_at), max(t.created_at),
    bool_or(t.currency <> getvariable('rc') AND f.factor IS NULL),
    any_value(t.currency) FILTER (WHERE t.currency <> getvariable('rc') AND f.factor IS NULL),
    min(t.created_at) FILTER (WHERE t.currency <> getvariable('rc') AND f.factor IS NULL)
FROM filtered_transactions t
JOIN currency_scale s ON s.currency = t.currency
LEFT JOIN fx_factor f ON f.currency = t.currency AND f.rate_date = CAST(t.created_at AS DATE)
WHERE is_successful(t.status)
  AND t.created_month BETWEEN getvariable('p_cut_month') AND getvariable('p_end_month')
  AND t.created_at >= getvariable('p_cut') AND t.created_at < getvariable('p_end')
GROUP BY ALL

-- name: customer_firsts
-- requires: customer_months_asof
CREATE OR REPLACE TEMP TABLE customer_firsts AS
SELECT customer_id, min(first_at) AS first_at, max(last_at) AS last_at, min(month) AS cohort_month,
       sum(payments) AS payments, sum(revenue) AS revenue
FROM customer_months_asof
GROUP BY ALL

-- name: customer_rfm
-- RFM as of the period end. Scores are quintiles by value: the 4 cut points are computed once,
-- so ties share a score and no sort of all customers is needed (5 = best: most recent, most
-- frequent, most revenue).
-- requires: customer_firsts
CREATE OR REPLACE TEMP TABLE customer_rfm AS
WITH base AS (
    SELECT customer_id,
           date_diff('day', last_at, getvariable('p_end')) AS recency_days,
           payments AS frequency,
           revenue AS monetary
    FROM customer_firsts
),
cuts AS (
    SELECT quantile_cont(recency_days, [0.2, 0.4, 0.6, 0.8]) AS r,
           quantile_cont(frequency, [0.2, 0.4, 0.6, 0.8]) AS f,
           quantile_cont(monetary, [0.2, 0.4, 0.6, 0.8]) AS m
    FROM base
),
scored AS (
    SELECT base.*,
           5 - (recency_days > r[1])::INT - (recency_days > r[2])::INT - (recency_days > r[3])::INT
             - (recency_days > r[4])::INT AS r_score,
           1 + (frequency > f[1])::INT + (frequency > f[2])::INT + (frequency > f[3])::INT
             + (frequency > f[4])::INT AS f_score,
           1 + (monetary > m[1])::INT + (monetary > m[2])::INT + (monetary > m[3])::INT
             + (monetary > m[4])::INT AS m_score
    FROM base, cuts
)
SELECT *,
    CASE
        WHEN r_score >= 4 AND f_score >= 4 THEN 'Champions'
        WHEN r_score >= 3 AND f_score >= 3 THEN 'Loyal'
        WHEN r_score >= 4 AND f_score <= 2 THEN 'New / promising'
        WHEN r_score = 3 AND f_score <= 2 THEN 'Potential loyalists'
        WHEN r_score <= 2 AND f_score >= 4 THEN 'Cannot lose them'
        WHEN r_score <= 2 AND f_score = 3 THEN 'At risk'
        WHEN r_score = 2 AND f_score <= 2 THEN 'Hibernating'
        ELSE 'Lost'
    END AS segment
FROM scored
