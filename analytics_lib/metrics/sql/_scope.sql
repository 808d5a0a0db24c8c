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
    t.*,
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

-- name: scoped_refunds
CREATE OR REPLACE TEMP TABLE scoped_refunds AS
SELECT
    r.*, t.provider, t.payment_method, t.country_code, t.product_id, t.plan_type,
    r.amount_minor / s.scale
        * CASE WHEN r.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    r.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM refunds r
JOIN filtered_transactions t USING (transaction_id)
JOIN currency_scale s ON s.currency = r.currency
LEFT JOIN fx_factor f ON f.currency = r.currency AND f.rate_date = CAST(r.created_at AS DATE)
WHERE r.status = 'succeeded'
  AND r.created_at >= getvariable('p_start') AND r.created_at < getvariable('p_end')

-- name: scoped_disputes
CREATE OR REPLACE TEMP TABLE scoped_disputes AS
SELECT
    d.*, t.provider, t.payment_method, t.country_code, t.product_id, t.plan_type, t.risk_score,
    t.fraud_indicators,
    d.amount_minor / s.scale
        * CASE WHEN d.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    d.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM disputes d
JOIN filtered_transactions t USING (transaction_id)
JOIN currency_scale s ON s.currency = d.currency
LEFT JOIN fx_factor f ON f.currency = d.currency AND f.rate_date = CAST(d.created_at AS DATE)
WHERE d.created_at >= getvariable('p_start') AND d.created_at < getvariable('p_end')

-- name: scoped_fees
CREATE OR REPLACE TEMP TABLE scoped_fees AS
SELECT
    e.*, t.payment_method, t.country_code,
    e.amount_minor / s.scale
        * CASE WHEN e.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS amount_rc,
    e.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
FROM fees e
JOIN filtered_transactions t USING (transaction_id)
JOIN currency_scale s ON s.currency = e.currency
LEFT JOIN fx_factor f ON f.currency = e.currency AND f.rate_date = CAST(e.created_at AS DATE)
WHERE e.created_at >= getvariable('p_start') AND e.created_at < getvariable('p_end')

