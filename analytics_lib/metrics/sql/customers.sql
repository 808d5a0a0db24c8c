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
-- A customer's first successful payment ever (customer_state.first_at) is new in the period exactly
-- when it lies in the period: such a payment is one of the period's payments, so the customer is
-- paying in it. History up to the period end: whole months before p_cut from cohort_matrix, the
-- rest from customer_tail.
-- requires: customer_history_missing, customer_state, cohort_matrix, customer_tail, paying_customers
WITH paying AS (
    SELECT (SELECT count(*) FROM paying_customers) AS customers,
           (SELECT sum(amount_rc) FROM payments WHERE is_success) AS revenue
),
fresh AS (
    SELECT count(*) AS customers FROM customer_state
    WHERE first_at >= getvariable('p_start') AND first_at < getvariable('p_end')
),
history AS (
    SELECT sum(revenue) AS revenue, coalesce(sum(customers) FILTER (WHERE month = cohort_month), 0) AS customers
    FROM cohort_matrix WHERE month < getvariable('p_cut_date')
),
tail AS (
    SELECT (SELECT sum(revenue) FROM customer_tail) AS revenue,
           (SELECT count(*) FROM customer_state
            WHERE first_at >= getvariable('p_cut') AND first_at < getvariable('p_end')) AS customers
),
ever AS (
    SELECT CASE WHEN h.revenue IS NULL THEN t.revenue WHEN t.revenue IS NULL THEN h.revenue
                ELSE h.revenue + t.revenue END AS revenue,
           CAST(h.customers + t.customers AS BIGINT) AS customers
    FROM history h, tail t
)
SELECT
    p.customers AS total_customers,
    f.customers AS new_customers,
    p.customers - f.customers AS returning_customers,
    p.revenue / nullif(p.customers, 0) AS arpu,
    e.revenue / nullif(e.customers, 0) AS historical_clv,
    e.customers AS customers_ever
FROM paying p, fresh f, ever e

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
-- requires: customer_state
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
    SELECT coalesce(acquisition_channel, 'unknown') AS channel, count(*) AS new_customers
    FROM customer_state
    WHERE first_at >= getvariable('p_start') AND first_at < getvariable('p_end')
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
-- requires: customer_rfm, customer_state
-- one row per customer: recency, frequency, monetary, their 1-5 scores and the segment
SELECT s.customer_id, r.* EXCLUDE (ck) FROM customer_rfm r JOIN customer_state s USING (ck)

-- name: rfm_segments
-- customers, share, revenue and averages per RFM segment. The segment depends only on recency and
-- frequency, so customers are first counted per (recency, frequency) and each such group scored.
-- requires: customer_measures, rfm_cuts
WITH groups AS (
    SELECT recency_days, frequency, count(*) AS customers, sum(monetary) AS revenue
    FROM customer_measures
    GROUP BY ALL
),
scored AS (
    SELECT g.*, rfm_segment(rfm_recency_score(g.recency_days, c.r), rfm_score(g.frequency, c.f)) AS segment
    FROM groups g, rfm_cuts c
)
SELECT segment, CAST(sum(customers) AS BIGINT) AS customers, sum(customers) / sum(sum(customers)) OVER () AS share,
       sum(revenue) AS revenue, sum(recency_days * customers) / sum(customers) AS avg_recency_days,
       sum(frequency * customers) / sum(customers) AS avg_frequency
FROM scored
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
-- requires: customer_measures
WITH s AS (SELECT gap_days FROM customer_measures WHERE frequency > 1)
SELECT n AS repeat_customers, q[1] AS median_days, mean_days, q[2] AS p90_days
FROM (SELECT count(*) AS n, quantile_cont(gap_days, [0.5, 0.9]) AS q, avg(gap_days) AS mean_days FROM s)

-- name: course_pairs
-- courses bought by the same customer (up to the period end): the most frequent pairs. A pair
-- counts from the later of its two first purchases: pairs formed in whole months before p_cut come
-- from the history, the rest are formed from the courses of customers who bought one since p_cut.
-- requires: course_pair_months, customer_courses, course_keys
WITH recent AS (
    SELECT DISTINCT ck FROM customer_courses
    WHERE first_bought_at >= getvariable('p_cut') AND first_bought_at < getvariable('p_end')
),
bought AS (
    SELECT c.ck, c.pk, c.first_bought_at FROM customer_courses c
    WHERE c.ck IN (SELECT ck FROM recent) AND c.first_bought_at < getvariable('p_end')
),
pairs AS (
    SELECT course_a, course_b, customers FROM course_pair_months WHERE month < getvariable('p_cut_date')
    UNION ALL
    SELECT a.pk, b.pk, count(*)
    FROM bought a JOIN bought b ON a.ck = b.ck AND a.pk < b.pk
    WHERE greatest(a.first_bought_at, b.first_bought_at) >= getvariable('p_cut')
    GROUP BY ALL
),
counted AS (SELECT course_a, course_b, CAST(sum(customers) AS BIGINT) AS customers FROM pairs GROUP BY ALL)
SELECT ka.product_id AS course_a, kb.product_id AS course_b, c.customers
FROM counted c JOIN course_keys ka ON ka.pk = c.course_a JOIN course_keys kb ON kb.pk = c.course_b
ORDER BY customers DESC, course_a, course_b
LIMIT 20

-- name: cohorts
-- Whole months before p_cut from the history's cohort matrix, the rest from customer_tail. Every
-- customer of a cohort pays in its first month, so the cohort's size is its month-0 count.
-- requires: customer_history_missing, cohort_matrix, customer_tail
WITH cm AS (
    SELECT cohort_month, month, customers, revenue FROM cohort_matrix
    WHERE month < getvariable('p_cut_date')
    UNION ALL
    SELECT cohort_month, getvariable('p_cut_date'), count(*), sum(revenue)
    FROM customer_tail
    GROUP BY ALL
),
recent AS (
    SELECT *, date_diff('month', cohort_month, month) AS months_since FROM cm
    WHERE cohort_month >= CAST(date_trunc('month', getvariable('p_end_date') - INTERVAL 1 DAY) AS DATE)
                          - to_months($cohort_months - 1)
),
sizes AS (SELECT cohort_month, CAST(sum(customers) FILTER (WHERE months_since = 0) AS BIGINT) AS cohort_size,
                 sum(revenue) FILTER (WHERE months_since = 0) AS first_month_revenue
          FROM recent GROUP BY ALL)
SELECT r.cohort_month, s.cohort_size, r.months_since,
       r.customers AS active_customers,
       r.customers / s.cohort_size AS customer_retention,
       r.revenue,
       r.revenue / nullif(s.first_month_revenue, 0) AS revenue_retention
FROM recent r JOIN sizes s USING (cohort_month)
ORDER BY r.cohort_month, r.months_since
