-- Family: recurring revenue (MRR). Per customer, the MRR in force at an instant is the sum over
-- their subscriptions of the MRR of the latest event strictly before that instant (see
-- _history.sql mrr_events: annual plans count 1/12, permanent discounts reduce it, trials and
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
-- requires: mrr_deltas
WITH points AS (SELECT b_start AS t FROM mrr_bounds UNION SELECT b_end FROM mrr_bounds),
cust AS (
    SELECT p.t, d.customer_id, round(sum(d.delta), 6) AS mrr
    FROM points p JOIN mrr_deltas d ON d.effective_ts < p.t
    GROUP BY ALL
),
first_paid AS (SELECT customer_id, min(effective_ts) AS first_paid_at FROM mrr_deltas WHERE mrr > 0 GROUP BY ALL),
pairs AS (
    -- everyone with an event before the interval's end has a row at its end (maybe 0 MRR);
    -- everyone with one before its start also has a row there
    SELECT b.interval_no, b.label, b.b_start, b.b_end, c1.customer_id,
           coalesce(c0.mrr, 0) AS mrr_start, c1.mrr AS mrr_end
    FROM mrr_bounds b
    JOIN cust c1 ON c1.t = b.b_end
    LEFT JOIN cust c0 ON c0.customer_id = c1.customer_id AND c0.t = b.b_start
    UNION ALL  -- one empty row per interval, so an interval before any event still has a row
    SELECT interval_no, label, b_start, b_end, NULL, 0, 0 FROM mrr_bounds WHERE EXISTS (SELECT 1 FROM mrr_deltas)
),
peaks AS (
    SELECT b.interval_no, e.customer_id, max(e.mrr) AS peak
    FROM mrr_bounds b JOIN mrr_deltas e ON e.effective_ts >= b.b_start AND e.effective_ts < b.b_end AND e.mrr > 0
    GROUP BY ALL
),
classified AS (
    SELECT p.*, w.peak, fp.first_paid_at < p.b_start AS paid_before,
        CASE
            WHEN p.mrr_start = 0 AND p.mrr_end > 0 AND NOT coalesce(fp.first_paid_at < p.b_start, false) THEN 'new'
            WHEN p.mrr_start = 0 AND p.mrr_end > 0 THEN 'reactivation'
            WHEN p.mrr_start > 0 AND p.mrr_end = 0 THEN 'churn'
            WHEN p.mrr_start > 0 AND p.mrr_end > p.mrr_start THEN 'expansion'
            WHEN p.mrr_start > 0 AND p.mrr_end < p.mrr_start THEN 'contraction'
            WHEN p.mrr_start = 0 AND p.mrr_end = 0 AND w.peak > 0 AND getvariable('mrr_same_interval') = 'count'
                THEN 'in_and_out'
            ELSE 'unchanged'
        END AS movement
    FROM pairs p
    LEFT JOIN first_paid fp USING (customer_id)
    LEFT JOIN peaks w ON w.interval_no = p.interval_no AND w.customer_id = p.customer_id
)
SELECT
    interval_no, label, b_start AS interval_start, b_end AS interval_end,
    sum(mrr_start) AS mrr_start,
    coalesce(sum(mrr_end) FILTER (WHERE movement = 'new'), 0)
        + coalesce(sum(peak) FILTER (WHERE movement = 'in_and_out' AND NOT coalesce(paid_before, false)), 0) AS new_mrr,
    coalesce(sum(mrr_end - mrr_start) FILTER (WHERE movement = 'expansion'), 0) AS expansion_mrr,
    coalesce(sum(mrr_start - mrr_end) FILTER (WHERE movement = 'contraction'), 0) AS contraction_mrr,
    coalesce(sum(mrr_start) FILTER (WHERE movement = 'churn'), 0)
        + coalesce(sum(peak) FILTER (WHERE movement = 'in_and_out'), 0) AS churned_mrr,
    coalesce(sum(mrr_end) FILTER (WHERE movement = 'reactivation'), 0)
        + coalesce(sum(peak) FILTER (WHERE movement = 'in_and_out' AND coalesce(paid_before, false)), 0) AS reactivation_mrr,
    sum(mrr_end) AS mrr_end,
    count(*) FILTER (WHERE mrr_start > 0) AS subscribers_start,
    count(*) FILTER (WHERE mrr_end > 0) AS subscribers_end,
    count(*) FILTER (WHERE movement IN ('new', 'in_and_out') AND NOT coalesce(paid_before, false)) AS new_customers,
    count(*) FILTER (WHERE movement = 'churn') AS churned_customers,
    count(*) FILTER (WHERE movement = 'reactivation') AS reactivated_customers,
    count(*) FILTER (WHERE movement = 'in_and_out') AS joined_and_left_customers,
    sum(CASE WHEN mrr_start > 0 THEN mrr_end ELSE 0 END) AS retained_mrr_end,
    sum(CASE WHEN mrr_start > 0 THEN least(mrr_end, mrr_start) ELSE 0 END) AS retained_mrr_capped
FROM classified
GROUP BY ALL
ORDER BY interval_no

-- name: by_plan
-- MRR in force at the period end by plan (mrr_bounds interval 0 ends at the period end)
-- requires: mrr_events
WITH subs AS (
    SELECT DISTINCT e.subscription_id, b.b_end AS t
    FROM mrr_events e CROSS JOIN (SELECT b_end FROM mrr_bounds WHERE interval_no = 0) b
),
state AS (
    SELECT e.product_id, e.billing_interval_months, e.mrr, e.event_type
    FROM subs s ASOF JOIN mrr_events e
      ON e.subscription_id = s.subscription_id AND e.effective_ts < s.t
)
SELECT
    state.product_id,
    coalesce(any_value(p.name), state.product_id) AS plan_name,
    CASE any_value(state.billing_interval_months) WHEN 12 THEN 'annual' WHEN 1 THEN 'monthly' ELSE 'other' END AS plan_type,
    count(*) FILTER (WHERE mrr > 0) AS subscribers,
    count(*) FILTER (WHERE event_type = 'trial_start') AS trialing,
    sum(mrr) AS mrr,
    sum(mrr) / nullif(sum(sum(mrr)) OVER (), 0) AS share_of_mrr
FROM state LEFT JOIN products p USING (product_id)
GROUP BY state.product_id
HAVING count(*) FILTER (WHERE mrr > 0) > 0 OR count(*) FILTER (WHERE event_type = 'trial_start') > 0
ORDER BY mrr DESC, product_id
