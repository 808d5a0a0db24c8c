-- Family: recurring revenue (MRR). Per customer, the MRR in force at an instant is the sum over
-- their subscriptions of the MRR of the latest event strictly before that instant (see
-- _history.sql mrr_history: annual plans count 1/12, permanent discounts reduce it, trials and
-- cancelled/unpaid subscriptions count 0). Intervals come from the registered table mrr_bounds
-- (interval_no 0 = the whole period; 1.. = its calendar months, or the period itself when it is
-- shorter than a month).
--
-- mrr                  MRR at the end of the interval; arr = 12 x mrr
-- new_mrr              customers at 0 at the start, > 0 at the end, never paying before
-- reactivation_mrr     customers at 0 at the start, > 0 at the end, who paid at some earlier time
-- expansion_mrr        customers > 0 at both ends whose MRR rose (end - start)
-- contraction_mrr      customers > 0 at both ends whose MRR fell (start - end)
-- churned_mrr          customers > 0 at the start and 0 at the end (their start MRR)
-- net_new_mrr          new + reactivation + expansion - contraction - churned = mrr_end - mrr_start
-- same-interval joins  a customer who starts paying and leaves inside one interval is 0 at both
--   and leaves         ends; with mrr_same_interval = 'count' (default) their peak MRR is added
--                      to new (or reactivation) and to churned, so they cancel out in net new
--                      MRR but are not hidden; with 'ignore' they are left out.
-- quick_ratio          (new + expansion) / (contraction + churned)
-- gross_mrr_churn_rate (churned + contraction) / mrr at the start
-- net_mrr_churn_rate   (churned + contraction - expansion - reactivation) / mrr at the start
-- net_revenue_retention   MRR at the end from customers paying at the start / their MRR at the start
-- gross_revenue_retention the same with each customer capped at their start MRR (no expansion)
-- customer_churn_rate  customers paying at the start and not at the end / customers paying at the start

-- name: movements
-- Per interval: the totals at its start and end (MRR, subscribers) come from the history's
-- 15-minute buckets of changes plus the events of the last part-bucket; the customers with an
-- event inside the interval are compared start to end and classified (everyone else is
-- unchanged). Money is summed in integer millionths (exact) and shown in units. Intervals with
-- the same bounds (a month and its only calendar month) are computed once.
-- requires: mrr_customer_states, mrr_buckets
WITH spans AS (
    SELECT row_number() OVER () AS span, b_start, b_end FROM (SELECT DISTINCT b_start, b_end FROM mrr_bounds)
),
points AS (
    SELECT t, time_bucket(INTERVAL 15 MINUTE, t, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS t_bucket
    FROM (SELECT b_start AS t FROM spans UNION SELECT b_end FROM spans)
),
totals AS (
    SELECT t, sum(mrr_micro) AS mrr_micro, sum(subscribers) AS subscribers, sum(paying_micro) AS paying_micro
    FROM (
        SELECT p.t, b.mrr_micro, b.subscribers, b.paying_micro
        FROM points p JOIN mrr_buckets b ON b.bucket < p.t_bucket
        UNION ALL
        SELECT p.t, s.after_micro - s.before_micro,
               CAST(s.after_micro > 0 AS INTEGER) - CAST(s.before_micro > 0 AS INTEGER),
               greatest(s.after_micro, 0) - greatest(s.before_micro, 0)
        FROM points p JOIN mrr_customer_states s ON s.effective_ts >= p.t_bucket AND s.effective_ts < p.t
    )
    GROUP BY t
),
inside AS (  -- events inside the interval
    SELECT sp.span, s.ck, s.mrr, s.after_micro, s.before_micro, s.first_paid_at < sp.b_start AS paid_before,
           s.prev_ts IS NULL OR s.prev_ts < sp.b_start AS first_inside,
           s.next_ts IS NULL OR s.next_ts >= sp.b_end AS last_inside
    FROM spans sp JOIN mrr_customer_states s
      ON s.effective_ts >= sp.b_start AND s.effective_ts < sp.b_end
),
pairs AS (  -- each customer with an event inside: MRR before the first, after the last
    SELECT span, ck,
           any_value(before_micro) FILTER (WHERE first_inside) AS start_micro,
           any_value(after_micro) FILTER (WHERE last_inside) AS end_micro,
           any_value(paid_before) AS paid_before,
           CAST(round(max(mrr) FILTER (WHERE mrr > 0) * 1000000) AS BIGINT) AS peak_micro
    FROM inside
    GROUP BY ALL
),
classified AS (
    SELECT p.*,
        CASE
            WHEN p.start_micro = 0 AND p.end_micro > 0 AND NOT coalesce(p.paid_before, false) THEN 'new'
            WHEN p.start_micro = 0 AND p.end_micro > 0 THEN 'reactivation'
            WHEN p.start_micro > 0 AND p.end_micro = 0 THEN 'churn'
            WHEN p.start_micro > 0 AND p.end_micro > p.start_micro THEN 'expansion'
            WHEN p.start_micro > 0 AND p.end_micro < p.start_micro THEN 'contraction'
            WHEN p.start_micro = 0 AND p.end_micro = 0 AND p.peak_micro > 0 AND getvariable('mrr_same_interval') = 'count'
                THEN 'in_and_out'
            ELSE 'unchanged'
        END AS movement
    FROM pairs p
),
moved AS (
    SELECT
        span,
        coalesce(sum(end_micro) FILTER (WHERE movement = 'new'), 0)
            + coalesce(sum(peak_micro) FILTER (WHERE movement = 'in_and_out' AND NOT coalesce(paid_before, false)), 0) AS new_micro,
        coalesce(sum(end_micro - start_micro) FILTER (WHERE movement = 'expansion'), 0) AS expansion_micro,
        coalesce(sum(start_micro - end_micro) FILTER (WHERE movement = 'contraction'), 0) AS contraction_micro,
        coalesce(sum(start_micro) FILTER (WHERE movement = 'churn'), 0)
            + coalesce(sum(peak_micro) FILTER (WHERE movement = 'in_and_out'), 0) AS churned_micro,
        coalesce(sum(end_micro) FILTER (WHERE movement = 'reactivation'), 0)
            + coalesce(sum(peak_micro) FILTER (WHERE movement = 'in_and_out' AND coalesce(paid_before, false)), 0) AS reactivation_micro,
        count(*) FILTER (WHERE movement IN ('new', 'in_and_out') AND NOT coalesce(paid_before, false)) AS new_customers,
        count(*) FILTER (WHERE movement = 'churn') AS churned_customers,
        count(*) FILTER (WHERE movement = 'reactivation') AS reactivated_customers,
        count(*) FILTER (WHERE movement = 'in_and_out') AS joined_and_left_customers,
        -- customers paying at the start who had an event inside: their MRR at the start and end
        coalesce(sum(start_micro) FILTER (WHERE start_micro > 0), 0) AS paying_start_micro,
        coalesce(sum(end_micro) FILTER (WHERE start_micro > 0), 0) AS retained_end_micro,
        coalesce(sum(least(end_micro, start_micro)) FILTER (WHERE start_micro > 0), 0) AS retained_capped_micro
    FROM classified
    GROUP BY ALL
)
SELECT
    b.interval_no, b.label, b.b_start AS interval_start, b.b_end AS interval_end,
    coalesce(t0.mrr_micro, 0) / 1000000 AS mrr_start,
    coalesce(m.new_micro, 0) / 1000000 AS new_mrr,
    coalesce(m.expansion_micro, 0) / 1000000 AS expansion_mrr,
    coalesce(m.contraction_micro, 0) / 1000000 AS contraction_mrr,
    coalesce(m.churned_micro, 0) / 1000000 AS churned_mrr,
    coalesce(m.reactivation_micro, 0) / 1000000 AS reactivation_mrr,
    coalesce(t1.mrr_micro, 0) / 1000000 AS mrr_end,
    CAST(coalesce(t0.subscribers, 0) AS BIGINT) AS subscribers_start,
    CAST(coalesce(t1.subscribers, 0) AS BIGINT) AS subscribers_end,
    coalesce(m.new_customers, 0) AS new_customers,
    coalesce(m.churned_customers, 0) AS churned_customers,
    coalesce(m.reactivated_customers, 0) AS reactivated_customers,
    coalesce(m.joined_and_left_customers, 0) AS joined_and_left_customers,
    -- paying at the start without an event inside: unchanged, so their start MRR is their end MRR
    (coalesce(t0.paying_micro, 0) - coalesce(m.paying_start_micro, 0) + coalesce(m.retained_end_micro, 0))
        / 1000000 AS retained_mrr_end,
    (coalesce(t0.paying_micro, 0) - coalesce(m.paying_start_micro, 0) + coalesce(m.retained_capped_micro, 0))
        / 1000000 AS retained_mrr_capped
FROM mrr_bounds b
JOIN spans sp USING (b_start, b_end)
LEFT JOIN moved m USING (span)
LEFT JOIN totals t0 ON t0.t = b.b_start
LEFT JOIN totals t1 ON t1.t = b.b_end
WHERE EXISTS (SELECT 1 FROM mrr_customer_states)
ORDER BY b.interval_no

-- name: by_plan
-- MRR in force at the period end by plan (mrr_bounds interval 0 ends at the period end, p_end):
-- each subscription's last event strictly before it. When the end is on a quarter hour (every
-- period's local midnight), the plan totals are the history's bucketed changes before it;
-- otherwise the subscriptions' states are read one by one.
-- requires: mrr_subscription_states, mrr_plan_buckets
WITH plans AS (
    SELECT product_id, billing_interval_months, sum(states) AS states, sum(subscribers) AS subscribers,
           sum(trialing) AS trialing, sum(mrr_micro) AS mrr_micro
    FROM mrr_plan_buckets
    WHERE getvariable('p_end_on_quarter_hour') AND bucket < getvariable('p_end')
    GROUP BY ALL
    UNION ALL
    SELECT s.product_id, s.billing_interval_months, count(*), count(*) FILTER (WHERE s.mrr > 0),
           count(*) FILTER (WHERE s.trialing), sum(CAST(round(s.mrr * 1000000) AS BIGINT))
    FROM mrr_subscription_states s
    WHERE NOT getvariable('p_end_on_quarter_hour')
      AND s.effective_ts < getvariable('p_end') AND (s.next_ts IS NULL OR s.next_ts >= getvariable('p_end'))
    GROUP BY ALL
),
state AS (SELECT * FROM plans WHERE states > 0)
SELECT
    state.product_id,
    coalesce(any_value(p.name), state.product_id) AS plan_name,
    CASE any_value(state.billing_interval_months) WHEN 12 THEN 'annual' WHEN 1 THEN 'monthly' ELSE 'other' END AS plan_type,
    CAST(sum(subscribers) AS BIGINT) AS subscribers,
    CAST(sum(trialing) AS BIGINT) AS trialing,
    sum(mrr_micro) / 1000000 AS mrr,
    sum(mrr_micro) / nullif(sum(sum(mrr_micro)) OVER (), 0) AS share_of_mrr
FROM state LEFT JOIN products p USING (product_id)
GROUP BY state.product_id
HAVING sum(subscribers) > 0 OR sum(trialing) > 0
ORDER BY mrr DESC, product_id
