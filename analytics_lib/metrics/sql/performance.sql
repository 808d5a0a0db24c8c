-- Family: provider and method performance. Payments created in the period.
--
-- success_rate / authorization_rate  as in the transactions family, per provider and method
-- latency_p50_ms / latency_p95_ms    processing latency of successful attempts: completed_at - created_at
-- error mix                          failure reasons per provider, as shares of its failures
-- fee_per_net_revenue                the provider's fees / the provider's net revenue (its gross, minus the
--                                    refunds and chargebacks of its payments and the fees it charged, each
--                                    dated as in revenue): what one unit of net revenue costs in fees with
--                                    that provider. A provider appears when it has payments, refunds,
--                                    disputes or fees in the period.
-- effective_fee_rate                 fees / gross revenue

-- name: providers
-- requires: scoped_refunds, scoped_disputes, scoped_fees
WITH p AS (
    SELECT provider,
           count(*) AS transactions,
           count(*) FILTER (WHERE is_success) AS successful,
           count(*) FILTER (WHERE is_failed) AS failed,
           count(*) FILTER (WHERE is_success) / count(*) AS success_rate,
           count(*) FILTER (WHERE outcome_type = 'authorized')
               / nullif(count(*) FILTER (WHERE outcome_type IN ('authorized', 'issuer_declined')), 0) AS authorization_rate,
           coalesce(sum(amount_rc) FILTER (WHERE is_success), 0) AS gross_revenue,
           quantile_cont(milliseconds_between(created_at, completed_at), [0.5, 0.95])
               FILTER (WHERE is_success AND completed_at IS NOT NULL) AS latency_ms,
           count(*) FILTER (WHERE outcome_type = 'provider_error') / count(*) AS provider_error_rate,
           count(*) FILTER (WHERE attempt_number > 1) AS retries
    FROM payments GROUP BY ALL
),
r AS (SELECT provider, sum(amount_rc) AS refunds FROM scoped_refunds GROUP BY ALL),
d AS (SELECT provider, sum(amount_rc) FILTER (WHERE status <> 'won') AS chargebacks FROM scoped_disputes GROUP BY ALL),
f AS (SELECT provider, sum(amount_rc) AS fees FROM scoped_fees GROUP BY ALL),
names AS (SELECT provider FROM p UNION SELECT provider FROM r UNION SELECT provider FROM d
          UNION SELECT provider FROM f)
SELECT n.provider,
       coalesce(p.transactions, 0) AS transactions, coalesce(p.successful, 0) AS successful,
       coalesce(p.failed, 0) AS failed, p.success_rate, p.authorization_rate,
       coalesce(p.gross_revenue, 0) AS gross_revenue, p.latency_ms[1] AS latency_p50_ms, p.latency_ms[2] AS latency_p95_ms,
       p.provider_error_rate, coalesce(p.retries, 0) AS retries,
       coalesce(r.refunds, 0) AS refunds, coalesce(d.chargebacks, 0) AS chargebacks,
       coalesce(f.fees, 0) AS fees,
       coalesce(p.gross_revenue, 0) - coalesce(r.refunds, 0) - coalesce(d.chargebacks, 0) - coalesce(f.fees, 0) AS net_revenue,
       coalesce(f.fees, 0) / nullif(coalesce(p.gross_revenue, 0) - coalesce(r.refunds, 0) - coalesce(d.chargebacks, 0) - coalesce(f.fees, 0), 0) AS fee_per_net_revenue,
       coalesce(f.fees, 0) / nullif(p.gross_revenue, 0) AS effective_fee_rate
FROM names n LEFT JOIN p USING (provider) LEFT JOIN r USING (provider) LEFT JOIN d USING (provider)
LEFT JOIN f USING (provider)
ORDER BY transactions DESC, provider

-- name: provider_methods
SELECT provider, payment_method, transactions, success_rate, authorization_rate,
       latency_ms[1] AS latency_p50_ms, latency_ms[2] AS latency_p95_ms
FROM (
    SELECT provider, payment_method,
           count(*) AS transactions,
           count(*) FILTER (WHERE is_success) / count(*) AS success_rate,
           count(*) FILTER (WHERE outcome_type = 'authorized')
               / nullif(count(*) FILTER (WHERE outcome_type IN ('authorized', 'issuer_declined')), 0) AS authorization_rate,
           quantile_cont(milliseconds_between(created_at, completed_at), [0.5, 0.95])
               FILTER (WHERE is_success AND completed_at IS NOT NULL) AS latency_ms
    FROM payments
    GROUP BY ALL
)
ORDER BY provider, transactions DESC, payment_method

-- name: error_mix
SELECT provider, coalesce(failure_reason, 'other') AS failure_reason, count(*) AS failures,
       count(*) / sum(count(*)) OVER (PARTITION BY provider) AS share_of_provider_failures
FROM payments WHERE is_failed
GROUP BY provider, coalesce(failure_reason, 'other')
ORDER BY provider, failures DESC, failure_reason
