-- Family: customers. A customer is counted in a period when they have a successful payment in it
-- (after filters). History-based measures look at all successful payments up to the period end.
--
-- total_customers      distinct customers with a successful payment in the period
-- new_customers        of those, customers whose first successful payment ever is in the period
-- returning_customers  of those, customers who had paid before the period (total - new)
-- arpu                 gross revenue of the period / total_customers (average revenue per paying user)
-- historical_clv       revenue of all successful payments up to the period end / customers who ever paid
-- cac                  marketing spend in the period (converted at the spend day's rate) / new customers
-- rfm                  per customer as of the period end: recency (days since last payment),
--                      frequency (successful payments), monetary (their revenue); each scored 1-5 by
--                      quintile (5 = best) and named by the usual RFM segment map
-- cohorts              customers grouped by the local month of their first successful payment; for each
--                      month since, the share of the cohort paying in it (customer retention) and the
--                      cohort's revenue in it relative to its first month (revenue retention)

-- name: summary
-- requires: customer_firsts
WITH paying AS (SELECT DISTINCT customer_id FROM payments WHERE is_success)
SELECT
    count(*) AS total_customers,
    count(*) FILTER (WHERE f.first_at >= getvariable('p_start')) AS new_customers,
    count(*) FILTER (WHERE f.first_at < getvariable('p_start')) AS returning_customers,
    (SELECT sum(amount_rc) FROM payments WHERE is_success) / nullif(count(*), 0) AS arpu,
    (SELECT sum(revenue) / nullif(count(*), 0) FROM customer_firsts) AS historical_clv,
    (SELECT count(*) FROM customer_firsts) AS customers_ever
FROM paying JOIN customer_firsts f USING (customer_id)

-- name: marketing_spend
-- spend in the period, converted at the spend day's rate; filters: country and campaign
WITH spend AS (
    SELECT m.*, m.spend_minor / s.scale
               * CASE WHEN m.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS spend_rc,
           m.currency <> getvariable('rc') AND f.factor IS NULL AS missing_rate
    FROM marketing_spend m
    JOIN currency_scale s ON s.currency = m.currency
    LEFT JOIN fx_factor f ON f.currency = m.currency AND f.rate_date = m.spend_date
    WHERE m.spend_date >= getvariable('p_start_date') AND m.spend_date < getvariable('p_end_date')
      AND (len(getvariable('f_country')) = 0 OR list_contains(getvariable('f_country'), m.country_code))
      AND (len(getvariable('f_campaign')) = 0 OR list_contains(getvariable('f_campaign'), m.campaign_id))
)
SELECT coalesce(sum(spend_rc), 0) AS marketing_spend,
       count(*) FILTER (WHERE missing_rate) AS missing_rate_rows,
       min(currency) FILTER (WHERE missing_rate) AS missing_currency,
       min(spend_date) FILTER (WHERE missing_rate) AS missing_day
FROM spend

-- name: spend_by_channel
-- requires: customer_firsts
WITH spend AS (
    SELECT m.channel, m.spend_minor / s.scale
               * CASE WHEN m.currency = getvariable('rc') THEN 1.0 ELSE f.factor END AS spend_rc
    FROM marketing_spend m
    JOIN currency_scale s ON s.currency = m.currency
    LEFT JOIN fx_factor f ON f.currency = m.currency AND f.rate_date = m.spend_date
    WHERE m.spend_date >= getvariable('p_start_date') AND m.spend_date < getvariable('p_end_date')
      AND (len(getvariable('f_country')) = 0 OR list_contains(getvariable('f_country'), m.country_code))
      AND (len(getvariable('f_campaign')) = 0 OR list_contains(getvariable('f_campaign'), m.campaign_id))
),
acquired AS (
    SELECT coalesce(c.acquisition_channel, 'unknown') AS channel, count(*) AS new_customers
    FROM customer_firsts f JOIN customers c USING (customer_id)
    WHERE f.first_at >= getvariable('p_start') AND f.first_at < getvariable('p_end')
    GROUP BY ALL
)
SELECT coalesce(s.channel, a.channel) AS channel,
       coalesce(s.spend, 0) AS marketing_spend,
       coalesce(a.new_customers, 0) AS new_customers,
       s.spend / nullif(a.new_customers, 0) AS cac
FROM (SELECT channel, sum(spend_rc) AS spend FROM spend GROUP BY ALL) s
FULL JOIN acquired a USING (channel)
ORDER BY marketing_spend DESC, channel

-- name: rfm
-- requires: customer_rfm
-- one row per customer: recency, frequency, monetary, their 1-5 scores and the segment
SELECT * FROM customer_rfm

-- name: rfm_segments
-- requires: customer_rfm
-- customers, share, revenue and averages per RFM segment
SELECT segment, count(*) AS customers, count(*) / sum(count(*)) OVER () AS share,
       sum(monetary) AS revenue, avg(recency_days) AS avg_recency_days, avg(frequency) AS avg_frequency
FROM customer_rfm
GROUP BY segment
ORDER BY revenue DESC, segment

-- name: day_hour
-- successful payments of the period by local weekday (1 = Monday) and hour
SELECT isodow(created_local) AS weekday, hour(created_local) AS hour,
       count(*) AS payments, sum(amount_rc) AS revenue
FROM payments WHERE is_success
GROUP BY ALL ORDER BY weekday, hour

-- name: time_between_purchases
-- per repeat customer (2+ successful payments up to the period end), the average days between
-- consecutive payments = (last - first) / (payments - 1); then the median, mean and 90th
-- percentile of that over repeat customers
-- requires: customer_firsts
WITH s AS (
    SELECT date_diff('second', first_at, last_at) / 86400.0 / (payments - 1) AS gap_days
    FROM customer_firsts WHERE payments > 1
)
SELECT count(*) AS repeat_customers, median(gap_days) AS median_days, avg(gap_days) AS mean_days,
       quantile_cont(gap_days, 0.9) AS p90_days
FROM s

-- name: course_pairs
-- courses bought by the same customer (up to the period end): the most frequent pairs
-- requires: customer_courses
WITH all_bought AS (
    SELECT customer_id, product_id FROM customer_courses WHERE first_bought_at < getvariable('p_end')
),
bought AS (  -- only customers with two courses or more can form a pair
    SELECT * FROM all_bought
    WHERE customer_id IN (SELECT customer_id FROM all_bought GROUP BY ALL HAVING count(*) > 1)
)
SELECT a.product_id AS course_a, b.product_id AS course_b, count(*) AS customers
FROM bought a JOIN bought b ON a.customer_id = b.customer_id AND a.product_id < b.product_id
GROUP BY ALL
ORDER BY customers DESC, course_a, course_b
LIMIT 20

-- name: cohorts
-- requires: customer_firsts
WITH cm AS (
    SELECT m.customer_id, f.cohort_month, m.month, m.revenue,
           date_diff('month', f.cohort_month, m.month) AS months_since
    FROM customer_months_asof m JOIN customer_firsts f USING (customer_id)
    WHERE f.cohort_month >= CAST(date_trunc('month', getvariable('p_end_date') - INTERVAL 1 DAY) AS DATE)
                            - to_months($cohort_months - 1)
),
sizes AS (SELECT cohort_month, count(DISTINCT customer_id) AS cohort_size,
                 sum(revenue) FILTER (WHERE months_since = 0) AS first_month_revenue
          FROM cm GROUP BY ALL)
SELECT cm.cohort_month, any_value(s.cohort_size) AS cohort_size, cm.months_since,
       count(DISTINCT cm.customer_id) AS active_customers,
       count(DISTINCT cm.customer_id) / any_value(s.cohort_size) AS customer_retention,
       sum(cm.revenue) AS revenue,
       sum(cm.revenue) / nullif(any_value(s.first_month_revenue), 0) AS revenue_retention
FROM cm JOIN sizes s USING (cohort_month)
GROUP BY cm.cohort_month, cm.months_since
ORDER BY cm.cohort_month, cm.months_since
