"""Customer lifetime value: BG/NBD + Gamma-Gamma for one-off purchases, sBG for subscriptions.

Two ways in:

* :func:`fit_clv_file` fits BG/NBD and Gamma-Gamma on any transactions file (the
  ``payment-analytics models fit-clv`` command) and validates on the period after the calibration
  end;
* :class:`LifetimeValueModel` (registered as ``clv``) works on the warehouse: the one-off
  (course) payments of every customer feed BG/NBD and Gamma-Gamma, the subscriptions feed a
  shifted-beta-geometric retention model per billing interval, and a customer's predicted value
  over the next 365 days is the sum of the two components, in the reporting currency.

The statistics live in :mod:`analytics_lib.models.btyd`; this module owns the data, the
calibration/holdout split, the scorecard and the prediction shape.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from analytics_lib.models import btyd
from analytics_lib.models.base import (
    Action,
    Model,
    ModelError,
    Prediction,
    RiskFactor,
    TrainResult,
    parse_dates,
    parse_numbers,
    read_table_file,
)
from analytics_lib.models.features import query as feature_query
from analytics_lib.models.registry import LoadedModel
from analytics_lib.models.scoring import (
    Scorecard,
    TimeSplit,
    beats,
    confidence_from_margin,
    risk_level,
)
from analytics_lib.warehouse import Snapshot

#: the LTV horizon of the platform's predictions
HORIZON_DAYS = 365
#: days in an average month (the length of a monthly billing period)
DAYS_PER_MONTH = 365.25 / 12
#: LTV segments by predicted 365-day value: top 20 %, next 30 %, the rest (cut points learned at
#: training time and stored with the model)
SEGMENT_QUANTILES = {"high_value": 0.80, "medium_value": 0.50}
#: calibration frequency groups of the validation table: 0, 1, ..., 7+
MAX_FREQUENCY_GROUP = 7
PURCHASE_MODES = ("one_off", "all")


# =============================================================================================
# Any transactions file: the fit-clv command
# =============================================================================================


def read_transactions(path: str | Path, customer_column: str, date_column: str, amount_column: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Read and check a transactions file (CSV, CSV.gz or Parquet); one-line errors for bad input.

    Returns the rows (customer, day, amount) and counts of what was read and dropped.
    """
    path = Path(path)
    columns = [customer_column, date_column, amount_column]
    if len(set(columns)) < 3:
        raise ModelError("customer, date and amount columns must be three different columns")
    raw = read_table_file(path, columns, text_columns=(customer_column, date_column))
    customer = raw[customer_column].astype("string").str.strip()
    no_customer = customer.isna() | (customer == "")
    raw = raw[~no_customer]
    if raw.empty:
        raise ModelError(f"every row of {path.name} lacks a {customer_column}")
    dates = parse_dates(raw, date_column)
    amounts = parse_numbers(raw, amount_column)
    if dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    frame = pd.DataFrame({"customer": customer[~no_customer].to_numpy(), "day": dates.dt.normalize().to_numpy(),
                          "amount": amounts.to_numpy()})
    return frame, {"rows": int(len(no_customer)), "rows_without_customer": int(no_customer.sum())}


def _parse_day(value: Any, name: str) -> pd.Timestamp:
    if isinstance(value, (date, datetime, pd.Timestamp)):
        return pd.Timestamp(value).normalize()
    try:
        return pd.Timestamp(date.fromisoformat(str(value).strip()))
    except ValueError:
        raise ModelError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from None


@dataclass
class BTYDFit:
    """BG/NBD + Gamma-Gamma fitted on one calibration summary."""

    bgnbd: btyd.BGNBDParams
    gamma_gamma: btyd.GammaGammaParams
    time_unit: str
    seconds: float
    frequency_monetary_correlation: float | None

    @property
    def unit_days(self) -> float:
        return btyd.TIME_UNITS[self.time_unit]

    def expected_purchases(self, summary: pd.DataFrame, days: float) -> np.ndarray:
        return btyd.bgnbd_conditional_expected_purchases(self.bgnbd, days / self.unit_days, summary["frequency"],
                                                        summary["recency"], summary["T"])

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        return btyd.bgnbd_probability_alive(self.bgnbd, summary["frequency"], summary["recency"], summary["T"])

    def probability_no_purchase(self, summary: pd.DataFrame, days: float) -> np.ndarray:
        """P(no purchase in the next ``days``) = 1 - P(alive) + P(alive) ((alpha+T)/(alpha+T+t))^(r+x):
        a customer alive now keeps a Gamma(r+x, alpha+T) posterior purchase rate."""
        b = self.bgnbd
        t = days / self.unit_days
        x, T = summary["frequency"].to_numpy(float), summary["T"].to_numpy(float)
        alive = self.probability_alive(summary)
        quiet = np.exp((b.r + x) * (np.log(b.alpha + T) - np.log(b.alpha + T + t)))
        return 1 - alive + alive * quiet

    def expected_average_value(self, summary: pd.DataFrame) -> np.ndarray:
        return btyd.gamma_gamma_expected_value(self.gamma_gamma, summary["frequency"], summary["monetary_value"])

    def value(self, summary: pd.DataFrame, days: float, annual_discount_rate: float = 0.0) -> np.ndarray:
        return btyd.customer_value(self.bgnbd, self.gamma_gamma, summary["frequency"], summary["recency"],
                                   summary["T"], summary["monetary_value"], days / self.unit_days,
                                   annual_discount_rate, self.unit_days)


def fit_btyd(summary: pd.DataFrame, time_unit: str = "days", penalizer: float = 0.0) -> BTYDFit:
    """Fit BG/NBD on (frequency, recency, T) and Gamma-Gamma on the repeat customers' mean values."""
    if summary.empty:
        raise ModelError("no customers with a purchase before the calibration end")
    started = time.perf_counter()
    try:
        bg = btyd.fit_bgnbd(summary["frequency"], summary["recency"], summary["T"], penalizer=penalizer)
        gg = btyd.fit_gamma_gamma(summary["frequency"], summary["monetary_value"], penalizer=penalizer)
    except btyd.BTYDError as exc:
        raise ModelError(str(exc)) from None
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    corr = None
    if len(repeat) > 2 and repeat["frequency"].nunique() > 1 and repeat["monetary_value"].nunique() > 1:
        corr = float(np.corrcoef(repeat["frequency"], repeat["monetary_value"])[0, 1])
    return BTYDFit(bg, gg, time_unit, time.perf_counter() - started, corr)


def holdout_comparison(fit: BTYDFit, summary: pd.DataFrame) -> dict[str, Any]:
    """Predicted vs actual holdout purchases (model and the historical-rate baseline)."""
    duration_days = float(summary["duration_holdout"].iloc[0]) * fit.unit_days
    predicted = fit.expected_purchases(summary, duration_days)
    actual = summary["frequency_holdout"].to_numpy(float)
    baseline = historical_rate_baseline(summary)
    table = btyd.frequency_groups(summary["frequency"], predicted, actual, MAX_FREQUENCY_GROUP)
    table["baseline_mean"] = btyd.frequency_groups(summary["frequency"], baseline, actual, MAX_FREQUENCY_GROUP)["predicted_mean"]
    return {"predicted": predicted, "actual": actual, "baseline": baseline, "table": table,
            "duration": float(summary["duration_holdout"].iloc[0])}


def group_mae(table: pd.DataFrame, column: str) -> float:
    """Customer-weighted mean absolute gap between predicted and actual mean holdout purchases of
    the calibration-frequency groups (how well the model is calibrated across groups)."""
    return float(np.average(np.abs(table[column] - table["actual_mean"]), weights=table["customers"].to_numpy(float)))


def historical_rate_baseline(summary: pd.DataFrame) -> np.ndarray:
    """Each customer's own repeat rate so far (repeats / age) times the holdout length; 0 for a
    customer whose first purchase is on the calibration end (age 0)."""
    T = summary["T"].to_numpy(float)
    rate = np.divide(summary["frequency"].to_numpy(float), T, out=np.zeros(len(T)), where=T > 0)
    return rate * summary["duration_holdout"].to_numpy(float)


def last_period_baseline(days: pd.DataFrame, summary: pd.DataFrame, calibration_end: pd.Timestamp) -> np.ndarray:
    """Repeat purchases in the last holdout-length window of the calibration period (a customer
    repeats what they just did)."""
    duration_days = int(round(float(summary["duration_holdout"].iloc[0]) * _unit_of(summary)))
    start = calibration_end - pd.Timedelta(days=duration_days)
    daily = days.groupby(["customer", "day"])["amount"].sum()
    daily = daily[daily > 0].reset_index()
    firsts = daily.groupby("customer")["day"].transform("min")
    recent = daily[(daily["day"] > start) & (daily["day"] <= calibration_end) & (daily["day"] > firsts)]
    return recent.groupby("customer").size().reindex(summary.index, fill_value=0).to_numpy(float)


def _unit_of(summary: pd.DataFrame) -> float:
    return float(summary.attrs.get("unit_days", 1.0))


def _json_table(table: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in table.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else
                        (v.item() if hasattr(v, "item") else v)) for k, v in row.items()})
    return out


def fit_clv_file(path: str | Path, customer_column: str, date_column: str, amount_column: str,
                 calibration_end: str | date, observation_end: str | date | None = None,
                 time_unit: str = "days", penalizer: float = 0.0) -> dict[str, Any]:
    """Fit BG/NBD and Gamma-Gamma on a transactions file and validate on the holdout.

    Conventions (the BTYD ones): purchases on the same calendar day are one transaction; frequency
    counts repeat transactions; recency and T are fractional ``time_unit``s; Gamma-Gamma is fitted
    on the mean value of repeat transactions. Rows without a customer are skipped (counted in
    ``input``); days whose amounts sum to zero or less (returns only) are not purchases.

    Returns
    -------
    dict with ``bgnbd`` (r, alpha, a, b, log_likelihood, ...), ``gamma_gamma`` (p, q, gamma,
    log_likelihood, ...), ``customers``, and ``holdout`` (predicted vs actual repeat purchases,
    totals and per calibration-frequency group, beside the historical-rate baseline) when the
    file has purchases after the calibration end.
    """
    if time_unit not in btyd.TIME_UNITS:
        raise ModelError(f"time unit must be one of {', '.join(btyd.TIME_UNITS)}, not {time_unit!r}")
    cal_end = _parse_day(calibration_end, "calibration end")
    obs_end = None if observation_end is None else _parse_day(observation_end, "observation end")
    if obs_end is not None and obs_end <= cal_end:
        raise ModelError(f"observation end {obs_end.date()} must be after the calibration end {cal_end.date()}")
    frame, counts = read_transactions(path, customer_column, date_column, amount_column)
    first_day, last_day = frame["day"].min(), frame["day"].max()
    if first_day > cal_end:
        raise ModelError(f"no purchases on or before the calibration end {cal_end.date()} (data start {first_day.date()})")
    if obs_end is None and last_day > cal_end:
        obs_end = last_day
    summary = btyd.summarise(frame["customer"], frame["day"], frame["amount"], cal_end, obs_end, time_unit)
    summary.attrs["unit_days"] = btyd.TIME_UNITS[time_unit]
    fit = fit_btyd(summary, time_unit, penalizer)
    p_alive = fit.probability_alive(summary)
    out: dict[str, Any] = {
        "customers": int(len(summary)),
        "time_unit": time_unit,
        "calibration_end": cal_end.date().isoformat(),
        "observation_end": obs_end.date().isoformat() if obs_end is not None else None,
        "bgnbd": fit.bgnbd.to_dict(),
        "gamma_gamma": {**fit.gamma_gamma.to_dict(), "population_mean_value": fit.gamma_gamma.population_mean,
                        "frequency_monetary_correlation": fit.frequency_monetary_correlation},
        "calibration": {
            "repeat_customers": int((summary["frequency"] > 0).sum()),
            "mean_frequency": float(summary["frequency"].mean()),
            "mean_probability_alive": float(p_alive.mean()),
            "expected_purchases_365d": float(fit.expected_purchases(summary, HORIZON_DAYS).sum()),
            "expected_value_365d": float(fit.value(summary, HORIZON_DAYS).sum()),
        },
        "input": {**counts, "purchase_days": int(len(frame.groupby(["customer", "day"]))),
                  "first_day": first_day.date().isoformat(), "last_day": last_day.date().isoformat()},
        "seconds": round(fit.seconds, 3),
    }
    if obs_end is not None and "frequency_holdout" in summary and (frame["day"] > cal_end).any():
        h = holdout_comparison(fit, summary)
        model_metrics = btyd.count_metrics(h["predicted"], h["actual"])
        base_metrics = btyd.count_metrics(h["baseline"], h["actual"])
        out["holdout"] = {
            "duration": h["duration"],
            "predicted": model_metrics["predicted_total"],
            "actual": model_metrics["actual_total"],
            "mae": model_metrics["mae"],
            "rmse": model_metrics["rmse"],
            "frequency_group_mae": group_mae(h["table"], "predicted_mean"),
            "baseline": {"name": "historical_rate", "predicted": base_metrics["predicted_total"],
                         "mae": base_metrics["mae"], "rmse": base_metrics["rmse"],
                         "frequency_group_mae": group_mae(h["table"], "baseline_mean")},
            "by_frequency": _json_table(h["table"]),
        }
    return out


# =============================================================================================
# Subscriptions: shifted-beta-geometric retention
# =============================================================================================


@dataclass
class SubscriptionRetention:
    """Retention of paid subscription spells: sBG per month for monthly plans; for annual plans
    the pooled renewal rate (a Beta(1, 1) posterior mean): with two years of history an annual
    cohort has at most one or two renewals, too few to tell heterogeneity from the mean."""

    monthly: btyd.SBGParams | None
    monthly_geometric_churn: float | None
    annual_renewal: float | None
    annual_counts: tuple[int, int] = (0, 0)

    def survival_ratio(self, interval_months: np.ndarray, renewals: np.ndarray, ahead: np.ndarray) -> np.ndarray:
        """P(alive after ``renewals + ahead`` renewals | alive after ``renewals``)."""
        out = np.zeros(len(renewals))
        monthly = interval_months == 1
        if self.monthly is not None and monthly.any():
            a, b = self.monthly.alpha, self.monthly.beta
            n, k = renewals[monthly], ahead[monthly]
            out[monthly] = np.exp(btyd.special.betaln(a, b + n + k) - btyd.special.betaln(a, b + n))
        annual = interval_months == 12
        if self.annual_renewal is not None and annual.any():
            out[annual] = self.annual_renewal ** ahead[annual]
        return out

    def geometric_ratio(self, interval_months: np.ndarray, ahead: np.ndarray) -> np.ndarray:
        """The same under a constant churn rate (no heterogeneity): the baseline."""
        out = np.zeros(len(ahead))
        monthly = interval_months == 1
        if self.monthly_geometric_churn is not None:
            out[monthly] = (1 - self.monthly_geometric_churn) ** ahead[monthly]
        annual = interval_months == 12
        if self.annual_renewal is not None:
            out[annual] = self.annual_renewal ** ahead[annual]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"monthly_sbg": self.monthly.to_dict() if self.monthly else None,
                "monthly_mean_churn": self.monthly.mean_churn if self.monthly else None,
                "monthly_geometric_churn": self.monthly_geometric_churn,
                "annual_renewal_rate": self.annual_renewal,
                "annual_renewals_observed": self.annual_counts[0],
                "annual_renewal_opportunities": self.annual_counts[1]}


def spell_history(spells: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Renewals and churn of each paid spell as known at ``as_of``.

    A spell that was cancelled (cancel requested before ``as_of``) churned after
    ``round(paid days / period) - 1`` renewals; an open spell has survived
    ``floor(days since start / period)`` renewals.
    """
    out = spells.copy()
    if out.empty:
        for col in ("renewals", "churned", "period_days"):
            out[col] = pd.Series(dtype=float)
        return out
    period = out["billing_interval_months"].astype(float) * DAYS_PER_MONTH
    began = pd.to_datetime(out["began_at"], utc=True)
    ended = pd.to_datetime(out["ended_at"], utc=True)
    churned = out["canceled_at"].notna().to_numpy()
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    paid_days = ((ended - began).dt.total_seconds() / 86400).to_numpy(float)
    open_days = ((as_of - began).dt.total_seconds() / 86400).to_numpy(float)
    paid = np.maximum(1, np.round(np.nan_to_num(paid_days) / period.to_numpy()))
    renewals = np.where(churned, paid - 1, np.floor(np.maximum(open_days, 0) / period.to_numpy()))
    out["renewals"] = renewals
    out["churned"] = churned.astype(float)
    out["period_days"] = period.to_numpy()
    return out


def fit_retention(history: pd.DataFrame) -> SubscriptionRetention:
    """Fit the retention models on spell histories (see :class:`SubscriptionRetention`)."""
    monthly = history[history["billing_interval_months"] == 1]
    sbg = None
    geo = None
    if len(monthly) and monthly["churned"].sum() > 0:
        try:
            sbg = btyd.fit_sbg(monthly["renewals"], monthly["churned"])
        except btyd.BTYDError:
            sbg = None
        renewals, losses = float(monthly["renewals"].sum()), float(monthly["churned"].sum())
        geo = losses / (renewals + losses)
    annual = history[history["billing_interval_months"] == 12]
    successes = int(annual["renewals"].sum())
    failures = int(annual["churned"].sum())
    rate = (successes + 1) / (successes + failures + 2) if len(annual) else None
    return SubscriptionRetention(sbg, geo, rate, (successes, successes + failures))


def expected_subscription_payments(retention: SubscriptionRetention, history: pd.DataFrame,
                                   start: pd.Timestamp, end: pd.Timestamp,
                                   baseline: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Expected payments of each open spell at its renewal dates in ``(start, end)``.

    Returns (expected payments, number of renewal dates in the window). Cancelled spells expect 0.
    """
    began = pd.to_datetime(history["began_at"], utc=True)
    period = history["period_days"].to_numpy(float)
    n = history["renewals"].to_numpy(float)
    start_days = ((start - began).dt.total_seconds() / 86400).to_numpy(float)
    end_days = ((end - began).dt.total_seconds() / 86400).to_numpy(float)
    # renewal j happens at began + j * period; dates strictly inside the window
    first = np.maximum(np.floor(start_days / period) + 1, n + 1)
    last = np.ceil(end_days / period) - 1
    count = np.maximum(last - first + 1, 0)
    interval = history["billing_interval_months"].to_numpy(int)
    expected = np.zeros(len(history))
    open_ = history["churned"].to_numpy(float) == 0
    for k in range(1, int(count.max(initial=0)) + 1):
        has = open_ & (count >= k)
        if not has.any():
            continue
        ahead = (first - n + k - 1)[has]
        ratio = (retention.geometric_ratio(interval[has], ahead) if baseline
                 else retention.survival_ratio(interval[has], n[has], ahead))
        expected[has] += ratio
    return expected, count


def actual_subscription_payments(before: pd.DataFrame, after: pd.DataFrame, start: pd.Timestamp,
                                 end: pd.Timestamp) -> np.ndarray:
    """Renewals each spell open at ``start`` really made in ``(start, end)``: renewal dates in the
    window up to the spell's last renewal known at ``end``."""
    key = ["subscription_id", "spell_no"]
    later = after.set_index(key)["renewals"]
    final = later.reindex(pd.MultiIndex.from_frame(before[key])).to_numpy(float)
    final = np.where(np.isnan(final), before["renewals"].to_numpy(float), final)
    began = pd.to_datetime(before["began_at"], utc=True)
    period = before["period_days"].to_numpy(float)
    start_days = ((start - began).dt.total_seconds() / 86400).to_numpy(float)
    end_days = ((end - began).dt.total_seconds() / 86400).to_numpy(float)
    first = np.maximum(np.floor(start_days / period) + 1, before["renewals"].to_numpy(float) + 1)
    last = np.minimum(np.ceil(end_days / period) - 1, final)
    made = np.maximum(last - first + 1, 0)
    return np.where(before["churned"].to_numpy(float) == 0, made, 0.0)


# =============================================================================================
# The warehouse model
# =============================================================================================


@dataclass
class LifetimeValueFit:
    """What the registry stores for ``clv``: fitted parameters and the scoring conventions."""

    btyd: BTYDFit
    retention: SubscriptionRetention | None
    purchases: str
    currency: str
    timezone: str
    horizon_days: int
    annual_discount_rate: float
    segment_thresholds: dict[str, float] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        return {
            "bgnbd": self.btyd.bgnbd.to_dict(),
            "gamma_gamma": {**self.btyd.gamma_gamma.to_dict(), "population_mean_value": self.btyd.gamma_gamma.population_mean},
            "subscriptions": self.retention.to_dict() if self.retention else None,
            "purchases": self.purchases, "currency": self.currency, "timezone": self.timezone,
            "time_unit": self.btyd.time_unit, "horizon_days": self.horizon_days,
            "annual_discount_rate": self.annual_discount_rate, "segment_thresholds": self.segment_thresholds,
        }


@dataclass
class CLVData:
    """Features of every customer as of a day: BTYD summary (with a holdout when asked) and the
    subscription spells."""

    days: pd.DataFrame
    summary: pd.DataFrame
    spells: pd.DataFrame
    end: date


def _end_instant(day: date, timezone: str) -> pd.Timestamp:
    """UTC instant of local midnight starting ``day``."""
    return pd.Timestamp(datetime.combine(day, datetime.min.time())).tz_localize(timezone).tz_convert("UTC")


def data_end(snapshot: Snapshot, timezone: str) -> tuple[date, date]:
    """First local day and the end (exclusive) of the last complete local day with payments.

    The day of the latest payment is taken as incomplete (the data stop somewhere inside it)."""
    row = snapshot.con.execute(
        "SELECT CAST(min(timezone($tz, created_at)) AS DATE), CAST(max(timezone($tz, created_at)) AS DATE) "
        "FROM transactions", {"tz": timezone}).fetchall()[0]
    if row[0] is None:
        raise ModelError("no transactions in the warehouse: load data (or `payment-analytics demo-data`) first")
    return row[0], row[1]


class LifetimeValueModel(Model):
    """BG/NBD + Gamma-Gamma (one-off purchases) and sBG (subscriptions): value over 365 days."""

    name: ClassVar[str] = "clv"
    description: ClassVar[str] = ("Customer lifetime value over 365 days: BG/NBD and Gamma-Gamma on one-off "
                                  "purchases, shifted-beta-geometric retention on subscriptions")
    feature_version: ClassVar[str] = "clv-1"
    features: ClassVar[list[str]] = ["frequency", "recency", "T", "monetary_value", "subscription_renewals",
                                     "subscription_price", "billing_interval_months"]

    # -- data -----------------------------------------------------------------------------------
    def default_split(self, snapshot: Snapshot) -> TimeSplit:
        """Calibrate on everything before the last third of the history (at most 365 days held out)."""
        from analytics_lib.config import get_settings

        first, end = data_end(snapshot, get_settings().timezone)
        span = (end - first).days
        if span < 60:
            raise ModelError(f"{span} days of payments: the CLV model needs at least 60 (calibration and holdout)")
        holdout = min(HORIZON_DAYS, span // 3)
        return TimeSplit(first, end - timedelta(days=holdout), end)

    def load_data(self, snapshot: Snapshot, start: date, end: date, currency: str | None = None,
                  timezone: str | None = None, purchases: str = "one_off", calibration_end: date | None = None,
                  time_unit: str = "days") -> CLVData:
        """Successful payments per customer and local day in ``[start, end)`` and the subscription
        spells known at ``calibration_end`` (default ``end``), summarised the BTYD way with the
        calibration period ending the day before ``calibration_end`` and, when that is before
        ``end``, the holdout running to ``end``."""
        from analytics_lib.metrics import MetricSession, Period

        if purchases not in PURCHASE_MODES:
            raise ModelError(f"purchases must be one of {', '.join(PURCHASE_MODES)}, not {purchases!r}")
        session = MetricSession(snapshot)
        tz = timezone or session.settings.timezone
        currency = (currency or session.settings.reporting_currency).upper()
        session.scope(Period(start, end, "custom", tz), None, currency)
        days = feature_query(snapshot, "clv", "customer_days", {"end": end})
        days = days.rename(columns={"customer_id": "customer"})
        days["day"] = pd.to_datetime(days["day"])
        cal = calibration_end or end
        as_of = _end_instant(cal, tz)
        spells = feature_query(snapshot, "clv", "subscription_spells", {"as_of": as_of.to_pydatetime()})
        if spells["missing_rate"].any():
            row = spells[spells["missing_rate"]].iloc[0]
            raise ModelError(f"no FX rate for {row['currency']} before {cal} (needed to value subscriptions in {currency})")
        use = days if purchases == "all" else days[days["kind"] == "one_off"]
        last_cal = pd.Timestamp(cal) - pd.Timedelta(days=1)
        obs_end = pd.Timestamp(end) - pd.Timedelta(days=1) if cal < end else None
        summary = btyd.summarise(use["customer"], use["day"], use["amount"], last_cal, obs_end, time_unit)
        summary.attrs["unit_days"] = btyd.TIME_UNITS[time_unit]
        return CLVData(days, summary, spell_history(spells, as_of), end)

    # -- training -------------------------------------------------------------------------------
    def train(self, snapshot: Snapshot, split: TimeSplit, purchases: str = "one_off", currency: str | None = None,
              timezone: str | None = None, time_unit: str = "days", annual_discount_rate: float = 0.0,
              penalizer: float = 0.0, **unknown: Any) -> TrainResult:
        if unknown:
            raise ModelError(f"unknown clv parameter(s): {', '.join(unknown)}; parameters: purchases, currency, "
                             "timezone, time_unit, annual_discount_rate, penalizer")
        from analytics_lib.config import get_settings

        settings = get_settings()
        tz = timezone or settings.timezone
        currency = (currency or settings.reporting_currency).upper()
        started = time.perf_counter()
        data = self.load_data(snapshot, split.train_start, split.evaluation_end, currency, tz, purchases,
                              calibration_end=split.cutoff, time_unit=time_unit)
        summary = data.summary
        if summary.empty:
            raise ModelError(f"no customer paid before {split.cutoff}: nothing to calibrate on")
        if summary["T"].max() * btyd.TIME_UNITS[time_unit] > (split.cutoff - split.train_start).days:
            raise ModelError("calibration data reach past the cutoff")  # out of time, never after it
        fit = fit_btyd(summary, time_unit, penalizer)
        retention = None
        if purchases == "one_off" and not data.spells.empty:
            retention = fit_retention(data.spells)
        model = LifetimeValueFit(fit, retention, purchases, currency, tz, HORIZON_DAYS, annual_discount_rate)
        fitted_seconds = time.perf_counter() - started
        # segment cut points from the customers' predicted value at the cutoff
        scored = self._score(model, data, pd.Timestamp(split.cutoff))
        model.segment_thresholds = {name: float(np.quantile(scored["predicted_ltv"], q)) for name, q in SEGMENT_QUANTILES.items()}
        card = self._scorecard(model, data, split, snapshot)
        card.extra["training_seconds"] = round(fitted_seconds, 3)
        rows = {"customers": int(len(summary)), "repeat_customers": int((summary["frequency"] > 0).sum()),
                "holdout_purchases": int(summary["frequency_holdout"].sum()),
                "subscription_spells": int(len(data.spells))}
        params = {"purchases": purchases, "currency": currency, "timezone": tz, "time_unit": time_unit,
                  "annual_discount_rate": annual_discount_rate, "penalizer": penalizer, **model.params()}
        return TrainResult(model, card, list(self.features), params, rows, split)

    def _scorecard(self, model: LifetimeValueFit, data: CLVData, split: TimeSplit, snapshot: Snapshot) -> Scorecard:
        summary = data.summary
        h = holdout_comparison(model.btyd, summary)
        metrics = btyd.count_metrics(h["predicted"], h["actual"])
        baseline = btyd.count_metrics(h["baseline"], h["actual"])
        last = last_period_baseline(data.days if model.purchases == "all" else data.days[data.days["kind"] == "one_off"],
                                    summary, pd.Timestamp(split.cutoff) - pd.Timedelta(days=1))
        table = h["table"]
        metrics["frequency_group_mae"] = group_mae(table, "predicted_mean")
        baseline["frequency_group_mae"] = group_mae(table, "baseline_mean")
        # spend in the holdout: expected purchases x expected average value vs what was paid
        actual_value = (summary["frequency_holdout"] * summary["monetary_value_holdout"]).to_numpy(float)
        duration_days = h["duration"] * model.btyd.unit_days
        predicted_value = model.btyd.value(summary, duration_days)
        mean_value = self._historical_mean_value(data, model.purchases, split.cutoff)
        metrics["value_mae"] = float(np.mean(np.abs(predicted_value - actual_value)))
        baseline["value_mae"] = float(np.mean(np.abs(h["baseline"] * mean_value.reindex(summary.index).to_numpy(float) - actual_value)))
        metrics["value_predicted_total"], metrics["value_actual_total"] = float(predicted_value.sum()), float(actual_value.sum())
        baseline["value_predicted_total"] = float((h["baseline"] * mean_value.reindex(summary.index).to_numpy(float)).sum())
        baseline["value_actual_total"] = float(actual_value.sum())
        extra: dict[str, Any] = {
            "frequency_groups": _json_table(table),
            "holdout_days": int(round(duration_days)),
            "last_period_baseline": btyd.count_metrics(last, h["actual"]),
            "bgnbd": model.btyd.bgnbd.to_dict(),
            "gamma_gamma": model.btyd.gamma_gamma.to_dict(),
            "frequency_monetary_correlation": model.btyd.frequency_monetary_correlation,
        }
        if model.retention is not None:
            extra["subscriptions"] = self._subscription_holdout(model, data, split, snapshot)
        notes = [
            "purchases: one-off (course) payments; subscriptions are valued by the sBG retention model"
            if model.purchases == "one_off" else "purchases: every successful payment (subscriptions included)",
            "primary metric: mean absolute error of holdout repeat purchases per customer (lower is better)",
            "baseline: each customer's own repeat rate so far (repeats / age) x holdout length",
        ]
        bg = model.btyd.bgnbd
        if bg.a / (bg.a + bg.b) < 1e-3:
            notes.append(f"the fitted dropout probability per purchase is ~0 (a/(a+b) = {bg.a / (bg.a + bg.b):.1e}): "
                         "the data show no buy-till-you-die dropout, so P(alive) is close to 1 for everyone and "
                         "BG/NBD acts as an NBD model")
        return Scorecard(
            model=self.name, split=split.to_dict(),
            sizes={"customers": int(len(summary)), "repeat_customers": int((summary["frequency"] > 0).sum()),
                   "holdout_purchases": int(summary["frequency_holdout"].sum())},
            metrics=metrics, baseline_name="historical_rate", baseline=baseline,
            beats_baseline=beats(metrics, baseline, "mae", higher_is_better=False),
            primary_metric="mae", notes=notes, extra=extra,
        )

    @staticmethod
    def _historical_mean_value(data: CLVData, purchases: str, cutoff: date) -> pd.Series:
        days = data.days if purchases == "all" else data.days[data.days["kind"] == "one_off"]
        days = days[days["day"] < pd.Timestamp(cutoff)]
        daily = days.groupby(["customer", "day"])["amount"].sum()
        return daily[daily > 0].groupby("customer").mean()

    def _subscription_holdout(self, model: LifetimeValueFit, data: CLVData, split: TimeSplit,
                              snapshot: Snapshot) -> dict[str, Any]:
        """Predicted vs actual renewals in the holdout of the spells open at the cutoff."""
        start = _end_instant(split.cutoff, model.timezone)
        end = _end_instant(split.evaluation_end, model.timezone)
        spells_end = feature_query(snapshot, "clv", "subscription_spells", {"as_of": end.to_pydatetime()})
        after = spell_history(spells_end, end)
        before = data.spells
        assert model.retention is not None
        predicted, _ = expected_subscription_payments(model.retention, before, start, end)
        geometric, _ = expected_subscription_payments(model.retention, before, start, end, baseline=True)
        actual = actual_subscription_payments(before, after, start, end)
        out: dict[str, Any] = {"retention": model.retention.to_dict()}
        for label, mask in (("monthly", before["billing_interval_months"] == 1), ("annual", before["billing_interval_months"] == 12)):
            m = mask.to_numpy() & (before["churned"].to_numpy() == 0)
            out[label] = {"open_spells": int(m.sum()), "predicted_renewals": float(predicted[m].sum()),
                          "geometric_baseline": float(geometric[m].sum()), "actual_renewals": float(actual[m].sum()),
                          "mae": float(np.mean(np.abs(predicted[m] - actual[m]))) if m.any() else None,
                          "geometric_mae": float(np.mean(np.abs(geometric[m] - actual[m]))) if m.any() else None}
        return out

    # -- scoring --------------------------------------------------------------------------------
    def _score(self, model: LifetimeValueFit, data: CLVData, as_of: pd.Timestamp) -> pd.DataFrame:
        """Every customer with a successful payment before ``as_of``: the 365-day prediction.

        Customers are handled by position (integer codes), not by id lookups: at millions of
        customers, text-keyed joins dominate the time otherwise."""
        horizon = float(model.horizon_days)
        summary = data.summary
        fit = model.btyd
        before = data.days[data.days["day"] < as_of]
        codes, names = pd.factorize(before["customer"], sort=True)
        customers = pd.Index(np.asarray(names), name="customer")
        n = len(customers)
        out = pd.DataFrame(index=customers)
        out["historical_revenue"] = np.bincount(codes, weights=before["amount"].to_numpy(float), minlength=n)
        pos = customers.get_indexer(summary.index)
        keep = pos >= 0
        s = summary[keep]
        pos = pos[keep]

        def column(values: Any, fill: float) -> np.ndarray:
            arr = np.full(n, fill, dtype=float)
            arr[pos] = np.asarray(values, dtype=float)
            return arr

        out["frequency"] = column(s["frequency"], 0.0)
        out["recency_days"] = column(s["recency"] * fit.unit_days, np.nan)
        out["age_days"] = column(s["T"] * fit.unit_days, np.nan)
        out["monetary_value"] = column(s["monetary_value"], 0.0)
        out["p_alive_purchases"] = column(fit.probability_alive(s), 0.0)
        out["expected_purchases"] = column(fit.expected_purchases(s, horizon), 0.0)
        out["expected_average_value"] = column(fit.expected_average_value(s), 0.0)
        out["one_off_value"] = column(fit.value(s, horizon, model.annual_discount_rate), 0.0)
        out["p_no_purchase"] = column(fit.probability_no_purchase(s, horizon), 1.0)
        # subscriptions
        value = np.zeros(n)
        active = np.zeros(n, dtype=bool)
        renewals = np.full(n, np.nan)
        next_retention = np.full(n, np.nan)
        former = np.zeros(n, dtype=bool)
        spells = data.spells
        if not spells.empty:
            spell_pos = customers.get_indexer(spells["customer_id"])
            former[spell_pos[spell_pos >= 0]] = True
            if model.retention is not None:
                is_open = (spells["churned"].to_numpy() == 0) & (spell_pos >= 0)
                open_ = spells[is_open]
                if not open_.empty:
                    where = spell_pos[is_open]
                    end = as_of.tz_localize(model.timezone).tz_convert("UTC") if as_of.tzinfo is None else as_of
                    payments, _ = expected_subscription_payments(model.retention, open_, end, end + pd.Timedelta(days=horizon))
                    interval = open_["billing_interval_months"].to_numpy(int)
                    n_renewals = open_["renewals"].to_numpy(float)
                    ratio = model.retention.survival_ratio(interval, n_renewals, np.ones(len(open_)))
                    np.add.at(value, where, payments * open_["price_rc"].to_numpy(float))
                    active[where] = True
                    renewals[where] = -np.inf
                    next_retention[where] = -np.inf
                    np.maximum.at(renewals, where, n_renewals)
                    np.maximum.at(next_retention, where, ratio)
        out["subscription_value"] = value
        out["active_subscription"] = active
        out["subscription_renewals"] = renewals
        out["next_renewal_retention"] = next_retention
        out["p_no_subscription_payment"] = np.where(active, 1 - np.nan_to_num(next_retention, nan=0.0), 1.0)
        out["former_subscriber"] = former & ~active
        out["predicted_ltv"] = out["one_off_value"] + out["subscription_value"]
        # P(alive): in the purchase process for course buyers, 1 for an active subscriber
        out["p_alive"] = np.where(active, 1.0, out["p_alive_purchases"])
        out["p_no_payment"] = out["p_no_purchase"] * out["p_no_subscription_payment"]
        return out

    def _segment(self, model: LifetimeValueFit, ltv: np.ndarray) -> np.ndarray:
        t = model.segment_thresholds
        return np.where(ltv >= t.get("high_value", np.inf), "high_value",
                        np.where(ltv >= t.get("medium_value", np.inf), "medium_value", "low_value"))

    def customer_values(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None) -> pd.DataFrame:
        """Every customer's 365-day prediction as a table (one row per customer): P(alive), expected
        purchases and average value, one-off and subscription value, predicted LTV, LTV segment,
        P(no payment in 365 days) and value at risk (that probability x revenue so far).

        ``as_of`` (default: the end of the last complete day in the snapshot) is where the history
        stops; the fitted parameters are not re-estimated."""
        model: LifetimeValueFit = loaded.model
        first, end = data_end(snapshot, model.timezone)
        as_of = as_of or end
        if as_of <= first:
            raise ModelError(f"as_of {as_of} is before the first payment ({first})")
        data = self.load_data(snapshot, first, as_of, model.currency, model.timezone, model.purchases,
                              time_unit=model.btyd.time_unit)
        scored = self._score(model, data, pd.Timestamp(as_of))
        scored["ltv_segment"] = self._segment(model, scored["predicted_ltv"].to_numpy(float))
        scored["value_at_risk"] = scored["p_no_payment"] * scored["historical_revenue"]
        risk = scored["p_no_payment"].to_numpy(float)
        # the cut points of scoring.risk_level, vectorised
        scored["risk_level"] = np.select([risk >= 0.8, risk >= 0.6, risk >= 0.3], ["critical", "high", "medium"], "low")
        scored.attrs.update(as_of=as_of.isoformat(), currency=model.currency)
        return scored

    def predict(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None,
                ids: list[str] | None = None, limit: int | None = None) -> list[Prediction]:
        """Each customer's predicted 365-day value, P(alive), segment, risk and actions (see
        :meth:`customer_values`). ``limit`` keeps the customers with the most value at risk."""
        model: LifetimeValueFit = loaded.model
        scored = self.customer_values(loaded, snapshot, as_of)
        if ids:
            unknown = [i for i in ids if i not in scored.index]
            if unknown:
                raise ModelError(f"unknown customer id(s) (no successful payment before {scored.attrs['as_of']}): "
                                 f"{', '.join(unknown[:5])}")
            scored = scored.loc[list(dict.fromkeys(ids))]
        else:
            scored = scored.sort_values(["value_at_risk", "predicted_ltv"], ascending=[False, False], kind="stable")
        if limit:
            scored = scored.head(limit)
        return [self._prediction(model, cid, row, row["ltv_segment"]) for cid, row in scored.iterrows()]

    def _prediction(self, model: LifetimeValueFit, customer: str, row: pd.Series, segment: str) -> Prediction:
        risk = float(row["p_no_payment"])
        level = risk_level(risk)
        factors: list[RiskFactor] = []
        if row["p_alive_purchases"] < 0.5 and row["frequency"] > 0:
            factors.append(RiskFactor("low_probability_alive", float(1 - row["p_alive_purchases"]),
                                      "The customer's purchase rhythm suggests they may have stopped buying",
                                      round(float(row["p_alive_purchases"]), 4)))
        if row["frequency"] > 0 and pd.notna(row["recency_days"]):
            gap = row["recency_days"] / row["frequency"]
            quiet = row["age_days"] - row["recency_days"]
            if gap > 0 and quiet > 2 * gap:
                factors.append(RiskFactor("overdue_purchase", min(1.0, float(quiet / (4 * gap))),
                                          "Longer than twice their usual time between purchases since the last one",
                                          round(float(quiet), 1)))
        if pd.notna(row["next_renewal_retention"]) and row["next_renewal_retention"] < 0.9:
            factors.append(RiskFactor("subscription_churn_risk", float(1 - row["next_renewal_retention"]),
                                      "Probability of cancelling at the next renewal (sBG)",
                                      round(float(1 - row["next_renewal_retention"]), 4)))
        if row["former_subscriber"]:
            factors.append(RiskFactor("subscription_cancelled", 0.9, "Had a subscription and has none now", None))
        if segment == "low_value":
            factors.append(RiskFactor("low_predicted_value", 0.3, "Predicted 365-day value in the lower half",
                                      round(float(row["predicted_ltv"]), 2)))
        factors.sort(key=lambda f: f.importance, reverse=True)
        details = {
            "ltv_segment": segment,
            "predicted_ltv_365d": round(float(row["predicted_ltv"]), 2),
            "currency": model.currency,
            "horizon_days": model.horizon_days,
            "value_components": {"one_off_purchases": round(float(row["one_off_value"]), 2),
                                 "subscription": round(float(row["subscription_value"]), 2)},
            "expected_purchases_365d": round(float(row["expected_purchases"]), 4),
            "expected_average_value": round(float(row["expected_average_value"]), 2),
            "probability_alive_purchases": round(float(row["p_alive_purchases"]), 4),
            "probability_no_payment_365d": round(risk, 4),
            "active_subscription": bool(row["active_subscription"]),
            "former_subscriber": bool(row["former_subscriber"]),
            "subscription_renewals": None if pd.isna(row["subscription_renewals"]) else int(row["subscription_renewals"]),
            "next_renewal_retention": None if pd.isna(row["next_renewal_retention"]) else round(float(row["next_renewal_retention"]), 4),
            "frequency": int(row["frequency"]),
            "recency_days": None if pd.isna(row["recency_days"]) else float(row["recency_days"]),
            "age_days": None if pd.isna(row["age_days"]) else float(row["age_days"]),
            "historical_revenue": round(float(row["historical_revenue"]), 2),
        }
        return Prediction(entity_id=str(customer), probability=round(float(row["p_alive"]), 6), risk_level=level,
                          confidence=confidence_from_margin(risk), key_risk_factors=factors,
                          recommended_actions=segment_actions(segment, level, bool(row["active_subscription"]),
                                                              bool(row["former_subscriber"])),
                          details=details)

    def evaluate(self, loaded: LoadedModel, snapshot: Snapshot) -> dict[str, Any]:
        """The training scorecard's numbers again, on the data after the cutoff the snapshot holds now."""
        model: LifetimeValueFit = loaded.model
        window = loaded.metadata.training_window
        start, cutoff = date.fromisoformat(window["train_start"]), date.fromisoformat(window["cutoff"])
        _, end = data_end(snapshot, model.timezone)
        if end <= cutoff:
            raise ModelError(f"no complete day after the cutoff {cutoff} in the warehouse yet")
        split = TimeSplit(start, cutoff, end)
        data = self.load_data(snapshot, start, end, model.currency, model.timezone, model.purchases,
                              calibration_end=cutoff, time_unit=model.btyd.time_unit)
        return self._scorecard(model, data, split, snapshot).to_dict()


def segment_actions(segment: str, level: str, subscriber: bool, former_subscriber: bool = False) -> list[Action]:
    """What to do for a customer of a value segment at a risk level (no measured impact yet, so
    ``expected_impact`` stays empty until campaigns are tested)."""
    at_risk = level in ("high", "critical")
    actions: list[Action] = []
    if segment == "high_value" and at_risk:
        actions.append(Action("win_back_high_value", "urgent",
                              ["Personal outreach from the customer success team",
                               "Tailored course bundle with a win-back discount",
                               "Ask what stopped them (short survey)"]))
    elif segment == "high_value":
        actions.append(Action("vip_retention", "medium",
                              ["Early access to new courses", "Offer an annual plan or team plan upgrade",
                               "Thank-you message with a referral reward"]))
    elif segment == "medium_value":
        actions.append(Action("grow_value", "medium" if not at_risk else "high",
                              ["Recommend the next course from their purchase history",
                               "Subscription trial offer" if not subscriber else "Annual plan offer",
                               "Bundle discount during the next seasonal campaign"]))
    elif at_risk:
        actions.append(Action("low_cost_reactivation", "low",
                              ["Automated win-back e-mail", "Reminders of the January, September and Black Friday sales"]))
    else:
        actions.append(Action("nurture", "low", ["Onboarding and course-completion e-mails", "Personalised recommendations"]))
    if former_subscriber:
        actions.append(Action("win_back_subscriber", "medium",
                              ["Offer the win-back discount on a new subscription",
                               "Show what is new since they left"]))
    if subscriber and at_risk:
        actions.append(Action("subscription_retention", "high",
                              ["Check the payment method before the next renewal", "Offer a pause instead of a cancellation"]))
    return actions
