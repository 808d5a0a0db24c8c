"""The metric suite written the natural polars way, for the benchmark's comparison.

The same work as ``pandas_suite`` (the same tables and columns, the same numbers and the same
side tables: breakdowns, cohorts, RFM quintiles, latency quantiles, MRR at both ends of the
period), written as a polars user would: the tables read into polars DataFrames, then expressions
on lazy frames, the independent side tables collected together with ``pl.collect_all`` so polars
can run them in parallel. The benchmark checks the headline numbers against the DuckDB results so
the comparison is of equal work.
"""

from __future__ import annotations

import polars as pl

from analytics_lib.metrics.period import Period
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.currency import CURRENCY_EXPONENTS
from tests.benchmarks.pandas_suite import COLUMNS, SUCCESS, time_suite


def load(warehouse: Warehouse) -> dict[str, pl.DataFrame]:
    """Read the current version of each table (the Parquet files of the Delta log)."""
    frames = {}
    for name, cols in COLUMNS.items():
        files = [f.removeprefix("file://") for f in warehouse.table(name).file_uris()]
        frames[name] = pl.read_parquet(files, columns=cols) if files else pl.DataFrame()
    return frames


def _to_rc(frame: pl.LazyFrame, fx: pl.LazyFrame, amount: str, ts: str, rc: str, out: str = "amount_rc") -> pl.LazyFrame:
    """``frame`` with ``out``: ``amount`` (minor units of ``currency``) in ``rc`` at the rate of the
    UTC day of ``ts`` (null where the day has no rate)."""
    scale = pl.DataFrame({"currency": list(CURRENCY_EXPONENTS),
                          "_scale": [float(10 ** e) for e in CURRENCY_EXPONENTS.values()]}).lazy()
    target = fx.filter(pl.col("currency") == rc).select("rate_date", pl.col("usd_per_unit").alias("_target"))
    usd = pl.when(pl.col("currency") == "USD").then(1.0).otherwise(pl.col("usd_per_unit"))
    target_rate = pl.lit(1.0) if rc == "USD" else pl.col("_target")
    factor = pl.when(pl.col("currency") == rc).then(1.0).otherwise(usd / target_rate)
    return (frame.with_columns(pl.col(ts).dt.date().alias("rate_date"))
            .join(fx, on=["currency", "rate_date"], how="left")
            .join(target, on="rate_date", how="left")
            .join(scale, on="currency", how="left")
            .with_columns((pl.col(amount) / pl.col("_scale") * factor).alias(out))
            .drop("rate_date", "usd_per_unit", "_target", "_scale"))


def suite(t: dict[str, pl.DataFrame], period: Period, rc: str = "USD") -> dict[str, float]:
    """The comprehensive numbers for ``period`` (no filters), the polars way."""
    out: dict[str, float] = {}
    start, end = period.start_utc, period.end_utc
    tz = str(period.timezone)
    fx = t["fx_rates"].lazy()
    tx = t["transactions"].lazy()
    in_period = pl.col("created_at").is_between(start, end, closed="left")
    p = (_to_rc(tx.filter(in_period), fx, "amount_minor", "created_at", rc)
         .with_columns(ok=pl.col("status").is_in(SUCCESS), failed=pl.col("status") == "failed")
         .collect())
    lp = p.lazy()
    ok = lp.filter("ok")
    # customers' history: successful payments before the period end
    hist = (_to_rc(tx.filter(pl.col("status").is_in(SUCCESS) & (pl.col("created_at") < end)), fx,
                   "amount_minor", "created_at", rc)
            .with_columns(month=pl.col("created_at").dt.convert_time_zone(tz).dt.truncate("1mo")))
    firsts = p.lazy().filter(pl.col("failed") & (pl.col("attempt_number") == 1)
                             & pl.col("billing_reason").is_in(["subscription_create", "subscription_cycle"]))
    side = [
        lp.group_by("payment_method").agg(n=pl.len(), ok=pl.col("ok").sum()),
        lp.group_by("provider").agg(n=pl.len(), ok=pl.col("ok").sum()),
        lp.group_by(pl.col("created_at").dt.convert_time_zone(tz).dt.truncate("1d").alias("day")).agg(n=pl.len()),
        lp.filter("failed").group_by("failure_reason").len(),
        ok.group_by("product_id").agg(revenue=pl.col("amount_rc").sum()),
        ok.group_by("currency").agg(revenue=pl.col("amount_rc").sum()),
        lp.group_by("country_code").agg(n=pl.len(), ok=pl.col("ok").sum()),
        ok.with_columns(lat=(pl.col("completed_at") - pl.col("created_at")).dt.total_microseconds() / 1e6)
          .group_by("provider").agg(p50=pl.col("lat").quantile(0.5, "linear"), p95=pl.col("lat").quantile(0.95, "linear")),
        # dunning: failed first attempts of subscription payments recovered by a later retry
        tx.join(firsts.select(pl.col("transaction_id").alias("original_transaction_id")), on="original_transaction_id",
                how="semi").filter(pl.col("status").is_in(SUCCESS)).select(pl.col("original_transaction_id").n_unique()),
        # new customers: first successful payment before the period end
        hist.group_by("customer_id").agg(first=pl.col("created_at").min())
            .join(ok.select("customer_id").unique(), on="customer_id", how="semi")
            .select(n=pl.len(), new=(pl.col("first") >= start).sum()),
        # cohort matrix
        hist.with_columns(cohort=pl.col("month").min().over("customer_id"))
            .group_by("cohort", "month").agg(customers=pl.col("customer_id").n_unique(), revenue=pl.col("amount_rc").sum()),
        # RFM quintiles
        hist.group_by("customer_id").agg(last=pl.col("created_at").max(), n=pl.len(), m=pl.col("amount_rc").sum())
            .with_columns([pl.col(c).rank("ordinal").qcut(5, labels=[str(i) for i in range(5)]).alias(f"{c}_q")
                           for c in ("last", "n", "m")]),
    ]
    # revenue: refunds, disputes and fees created in the period
    money = {}
    for name, keep in (("refunds", pl.col("status") == "succeeded"), ("disputes", pl.col("status") != "won"),
                       ("fees", pl.lit(True))):
        frame = t[name].lazy().filter(in_period & keep)
        money[name] = len(side)
        side.append(_to_rc(frame, fx, "amount_minor", "created_at", rc).select(pl.col("amount_rc").sum()))
    # MRR: each subscription's last event effective before an instant; a cancellation taken back
    # (a later non-cancel event before it took effect) never takes effect
    ev = t["subscription_events"].lazy().with_row_index("_row")
    later = ev.filter(pl.col("event_type") != "cancel").select("subscription_id", later_at=pl.col("occurred_at"))
    revoked = (ev.filter(pl.col("event_type") == "cancel").join(later, on="subscription_id")
               .filter((pl.col("later_at") > pl.col("occurred_at")) & (pl.col("later_at") < pl.col("effective_at")))
               .select("_row").unique())
    ev = (_to_rc(ev.join(revoked, on="_row", how="anti"), fx, "price_minor", "occurred_at", rc, out="price_rc")
          .with_columns(mrr=pl.when(pl.col("event_type").is_in(["trial_start", "cancel"])).then(0.0)
                        .otherwise(pl.col("price_rc") * (1 - pl.col("discount_percent") / 100)
                                   / pl.col("billing_interval_months")))
          .sort("effective_at", "_row"))
    mrr = {}
    for label, instant in (("mrr_start", start), ("mrr", end)):
        mrr[label] = len(side)
        side.append(ev.filter(pl.col("effective_at") < instant).group_by("subscription_id")
                    .agg(pl.col("mrr").last()).select(pl.col("mrr").sum()))
    done = pl.collect_all(side)

    out["total_transactions"] = p.height
    out["successful_transactions"] = int(p["ok"].sum())
    out["total_volume"] = float(p.filter("ok")["amount_rc"].sum())
    out["success_rate"] = out["successful_transactions"] / max(p.height, 1)
    issuer = int(p["outcome_type"].is_in(["authorized", "issuer_declined"]).sum())
    out["authorization_rate"] = float((p["outcome_type"] == "authorized").sum() / max(issuer, 1))
    out["dunning_recovered"] = int(done[8].item())
    for name, index in money.items():
        out[name] = float(done[index].item() or 0.0)
    out["net_revenue"] = out["total_volume"] - out["refunds"] - out["disputes"] - out["fees"]
    out["total_customers"] = int(done[9]["n"].item())
    out["new_customers"] = int(done[9]["new"].item())
    out["review_share"] = float((p["risk_score"] >= 65).mean()) if p.height else 0.0
    for label, index in mrr.items():
        out[label] = float(done[index].item() or 0.0)
    return out


def timed(warehouse: Warehouse, period: Period, rc: str = "USD") -> tuple[float, float, dict[str, float]]:
    """(load seconds, compute seconds, numbers), as ``pandas_suite.timed`` (CPU of all of polars'
    threads)."""
    return time_suite(load, suite, warehouse, period, rc)
