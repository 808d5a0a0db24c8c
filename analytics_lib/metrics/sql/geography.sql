-- Family: geography. Payments created in the period by the buyer's country (countryCode).
--
-- transactions / volume  attempts, and the successful attempts' amount, per country
-- success_rate           successful / attempts in the country
-- average_value          volume / successful attempts
-- international_share    share of volume (and of successful payments) from buyers outside the
--                        home country (setting PAYMENT_ANALYTICS_HOME_COUNTRY)

-- name: countries
SELECT
    country_code,
    count(*) AS transactions,
    count(*) FILTER (WHERE is_success) AS successful,
    coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS volume,
    count(*) FILTER (WHERE is_success) / count(*) AS success_rate,
    sum(amount_rc) FILTER (WHERE is_success) / nullif(count(*) FILTER (WHERE is_success), 0) AS average_value,
    coalesce(sum(amount_rc) FILTER (WHERE is_success), 0)
        / nullif(sum(coalesce(sum(amount_rc) FILTER (WHERE is_success), 0)) OVER (), 0) AS share_of_volume,
    count(DISTINCT customer_id) FILTER (WHERE is_success) AS customers
FROM payments
GROUP BY ALL
ORDER BY volume DESC, transactions DESC, country_code

-- name: international
SELECT
    getvariable('home_country') AS home_country,
    coalesce(sum(amount_rc) FILTER (WHERE is_success AND country_code <> getvariable('home_country')), 0)
        / nullif(sum(amount_rc) FILTER (WHERE is_success), 0) AS international_share,
    count(*) FILTER (WHERE is_success AND country_code <> getvariable('home_country'))
        / nullif(count(*) FILTER (WHERE is_success), 0) AS international_share_of_payments,
    count(DISTINCT country_code) FILTER (WHERE is_success) AS countries
FROM payments
