"""The metric suite written the straightforward way in pandas, for the benchmark's comparison.

This is what a data scientist would write in a notebook without the metric layer: load the
tables into DataFrames, filter by period, convert currencies with a merge, and group. It computes
the same headline numbers as ``comprehensive_analytics`` (transactions, revenue, MRR movements,
customers, cohorts, geography, providers, fraud), and the benchmark checks a few of them against
the DuckDB results so the comparison is of equal work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics_lib.metrics.period import Period
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.currency import CURRENCY_EXPONENTS

SUCCESS = ("completed", "refunded", "partially_refunded", "disputed")
COLUMNS = {
    "transactions": ["transaction_id", "customer_id", "amount_minor", "currency", "status", "outcome_type",
                     "payment_method", "provider", "country_code", "created_at", "completed_at", "failure_reason",
                     "attempt_number", "original_transaction_id", "billing_reason", "subscription_id",
                     "product_id", "plan_type", "risk_score"],
    "refunds": ["transaction_id", "amount_minor", "currency", "status", "created_at"],
    "disputes": ["transaction_id", "amount_minor", "currency", "status", "created_at"],
    "fees": ["transaction_id", "amount_minor", "currency", "provider", "created_at"],
    "fx_rates": ["rate_date", "currency", "usd_per_unit"],
    "subscription_events": ["subscription_id", "customer_id", "event_type", "occurred_at", "effective_at",
                            "price_minor", "currency", "billing_interval_months", "discount_percent"],
    "marketing_spend": ["spend_date", "spend_minor", "currency"],
}


@dataclass
class Tables:
    frames: dict[str, pd.DataFrame]

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]


def load(warehouse: Warehouse) -> Tables:
    """Read the current version of each table into pandas (the Parquet files of the Delta log)."""
    frames = {}
    for name, cols in COLUMNS.items():
        dt = warehouse.table(name)
        files = dt.file_uris()
        if files:
            frames[name] = pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)
        else:
            frames[name] = pd.DataFrame(columns=cols)
    return Tables(frames)


def _to_rc(df: pd.DataFrame, fx: pd.DataFrame, amount: str, ts: str, rc: str) -> pd.Series:
    day = df[ts].dt.tz_convert("UTC").dt.date
    rates = fx.assign(rate_date=pd.to_datetime(fx["rate_date"]).dt.date)
    target = rates[rates["currency"] == rc][["rate_date", "usd_per_unit"]].rename(columns={"usd_per_unit": "target"})
    merged = pd.DataFrame({"currency": df["currency"].values, "rate_date": day.values,
                           amount: df[amount].values}).merge(
        rates, on=["currency", "rate_date"], how="left").merge(target, on="rate_date", how="left")
    usd = np.where(merged["currency"] == "USD", 1.0, merged["usd_per_unit"])
    target_rate = 1.0 if rc == "USD" else merged["target"]
    factor = np.where(merged["currency"] == rc, 1.0, usd / target_rate)
    scale = merged["currency"].map(lambda c: 10 ** CURRENCY_EXPONENTS[c])
    return pd.Series(merged[amount].to_numpy() / scale.to_numpy() * factor, index=df.index)


def suite(t: Tables, period: Period, rc: str = "USD") -> dict[str, float]:
    """The comprehensive numbers for ``period`` (no filters), straightforward pandas."""
    out: dict[str, float] = {}
    start, end = pd.Timestamp(period.start_utc), pd.Timestamp(period.end_utc)
    tx = t["transactions"]
    p = tx[(tx["created_at"] >= start) & (tx["created_at"] < end)].copy()
    p["amount_rc"] = _to_rc(p, t["fx_rates"], "amount_minor", "created_at", rc)
    p["ok"] = p["status"].isin(SUCCESS)
    p["failed"] = p["status"] == "failed"
    # transactions
    out["total_transactions"] = len(p)
    out["successful_transactions"] = int(p["ok"].sum())
    out["total_volume"] = float(p.loc[p["ok"], "amount_rc"].sum())
    out["success_rate"] = out["successful_transactions"] / max(len(p), 1)
    issuer = p["outcome_type"].isin(["authorized", "issuer_declined"])
    out["authorization_rate"] = float((p["outcome_type"] == "authorized").sum() / max(issuer.sum(), 1))
    p.groupby("payment_method").agg(n=("transaction_id", "size"), ok=("ok", "sum"))
    p.groupby("provider").agg(n=("transaction_id", "size"), ok=("ok", "sum"))
    p.groupby(p["created_at"].dt.tz_convert(period.timezone).dt.floor("D")).agg(n=("transaction_id", "size"))
    p[p["failed"]].groupby("failure_reason").size()
    firsts = p[p["failed"] & (p["attempt_number"] == 1) & p["billing_reason"].isin(["subscription_create", "subscription_cycle"])]
    retries = tx[tx["original_transaction_id"].isin(firsts["transaction_id"])]
    out["dunning_recovered"] = int(retries[retries["status"].isin(SUCCESS)]["original_transaction_id"].nunique())
    # revenue
    for name in ("refunds", "disputes", "fees"):
        df = t[name]
        df = df[(df["created_at"] >= start) & (df["created_at"] < end)]
        if name == "refunds":
            df = df[df["status"] == "succeeded"]
        if name == "disputes":
            df = df[df["status"] != "won"]
        out[name] = float(_to_rc(df, t["fx_rates"], "amount_minor", "created_at", rc).sum()) if len(df) else 0.0
    out["net_revenue"] = out["total_volume"] - out["refunds"] - out["disputes"] - out["fees"]
    ok = p[p["ok"]]
    ok.groupby("product_id").agg(revenue=("amount_rc", "sum"))
    ok.groupby("currency").agg(revenue=("amount_rc", "sum"))
    # customers
    hist = tx[tx["status"].isin(SUCCESS) & (tx["created_at"] < end)].copy()
    hist["amount_rc"] = _to_rc(hist, t["fx_rates"], "amount_minor", "created_at", rc)
    first = hist.groupby("customer_id")["created_at"].min()
    paying = ok["customer_id"].unique()
    out["total_customers"] = len(paying)
    out["new_customers"] = int((first.loc[paying] >= start).sum())
    hist["month"] = hist["created_at"].dt.tz_convert(period.timezone).dt.tz_localize(None).dt.to_period("M")
    cohort = hist.groupby("customer_id")["month"].min().rename("cohort")
    cm = hist.merge(cohort, left_on="customer_id", right_index=True)
    cm.groupby(["cohort", "month"]).agg(customers=("customer_id", "nunique"), revenue=("amount_rc", "sum"))
    rfm = hist.groupby("customer_id").agg(last=("created_at", "max"), n=("transaction_id", "size"),
                                           m=("amount_rc", "sum"))
    for col in ("last", "n", "m"):
        rfm[col + "_q"] = pd.qcut(rfm[col].rank(method="first"), 5, labels=False)
    # geography, providers, fraud
    p.groupby("country_code").agg(n=("transaction_id", "size"), ok=("ok", "sum"))
    lat = (ok["completed_at"] - ok["created_at"]).dt.total_seconds()
    lat.groupby(ok["provider"]).quantile([0.5, 0.95])
    out["review_share"] = float((p["risk_score"] >= 65).mean()) if len(p) else 0.0
    # MRR at the start and end of the period
    ev = t["subscription_events"].copy()
    # a cancellation taken back (a later event before it took effect) never takes effect
    later = ev[ev["event_type"] != "cancel"][["subscription_id", "occurred_at"]].rename(columns={"occurred_at": "later_at"})
    cancels = ev[ev["event_type"] == "cancel"].reset_index().merge(later, on="subscription_id", how="left")
    revoked = cancels[(cancels["later_at"] > cancels["occurred_at"]) & (cancels["later_at"] < cancels["effective_at"])]
    ev = ev.drop(index=revoked["index"].unique())
    ev["when"] = ev["effective_at"]
    ev["mrr"] = np.where(ev["event_type"].isin(["trial_start", "cancel"]), 0.0,
                         _to_rc(ev, t["fx_rates"], "price_minor", "occurred_at", rc)
                         * (1 - ev["discount_percent"] / 100) / ev["billing_interval_months"])
    ev = ev.sort_values("when")
    for label, instant in (("mrr_start", start), ("mrr", end)):
        state = ev[ev["when"] < instant].groupby("subscription_id").tail(1)
        out[label] = float(state["mrr"].sum())
    return out


def timed(warehouse: Warehouse, period: Period, rc: str = "USD") -> tuple[float, float, dict[str, float]]:
    """(load seconds, compute seconds, numbers); numbers["_compute_cpu_seconds"] is the process CPU
    time of the compute part."""
    return time_suite(load, suite, warehouse, period, rc)


def time_suite(load_tables, run_suite, warehouse: Warehouse, period: Period,
               rc: str = "USD") -> tuple[float, float, dict[str, float]]:
    """``timed`` for any implementation: ``load_tables(warehouse)`` then ``run_suite(tables,
    period, rc)``, timed apart; the compute part's process CPU time counts every thread."""
    import resource
    import time

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    t0 = time.perf_counter()
    tables = load_tables(warehouse)
    t1, c1 = time.perf_counter(), cpu()
    numbers = run_suite(tables, period, rc)
    compute_s, compute_cpu = time.perf_counter() - t1, cpu() - c1
    return t1 - t0, compute_s, {**numbers, "_compute_cpu_seconds": compute_cpu}
