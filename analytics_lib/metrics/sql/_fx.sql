-- FX: one factor per day and currency that turns major units of `currency` into major units
-- of the reporting currency (getvariable('rc')). USD is 1.0 per USD by definition even where
-- fx_rates has no USD row. A currency converted into itself needs no rate.

-- name: fx_factor
CREATE OR REPLACE TEMP TABLE fx_factor AS
WITH rates AS (
    SELECT rate_date, currency, usd_per_unit FROM fx_rates WHERE currency <> 'USD'
    UNION ALL
    SELECT DISTINCT rate_date, 'USD', 1.0 FROM fx_rates
),
target AS (
    SELECT rate_date, usd_per_unit FROM rates WHERE currency = getvariable('rc')
)
SELECT r.rate_date, r.currency, r.usd_per_unit / t.usd_per_unit AS factor
FROM rates r JOIN target t USING (rate_date)
