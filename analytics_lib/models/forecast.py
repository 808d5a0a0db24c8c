"""Revenue forecast: Prophet and baselines, chosen by a rolling-origin backtest.

Candidates, each with 80 % and 95 % prediction intervals:

* ``seasonal_naive``: the value one season earlier (season 7 days, 52 weeks or 12 months);
  intervals from empirical quantiles of the in-sample seasonal differences, widened by the
  square root of the number of seasons ahead;
* ``ets`` / ``ets_log``: statsmodels ETS (additive error, damped additive trend, additive
  season when the history holds two seasons), on the values or on their logarithm;
* ``prophet`` / ``prophet_log``: Prophet with weekly and yearly seasonality and the holidays of
  the main markets (TR, US, GB, DE, from the ``holidays`` package, offline) plus the Black Friday
  to Cyber Monday week, on the values or on their logarithm (multiplicative seasonality).

The ``_log`` variants exist only for strictly positive series. Every candidate is backtested
from several origins (rolling origin: train on everything before the origin, forecast the
holdout after it), the recent ones plus, when the history allows, one a year before the end, so
that the forecast's own season a year earlier is judged too; the one with the lowest mean MASE
is chosen, refitted on the whole series and asked for the forecast. A Prophet fit on the whole series supplies the components (trend,
seasonality, holidays) reported as key drivers and seasonal factors.

Entry points: :func:`forecast_series` (any pandas series), :func:`forecast_file` (the
``payment-analytics models forecast`` command) and :class:`RevenueForecastModel` (registered as
``revenue_forecast``: the warehouse's daily revenue from the metric layer).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

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
from analytics_lib.models.registry import LoadedModel
from analytics_lib.models.scoring import Scorecard, TimeSplit, beats
from analytics_lib.warehouse import Snapshot

LEVELS = (80, 95)
#: countries whose public holidays enter Prophet (the platform's main markets)
HOLIDAY_COUNTRIES = ("TR", "US", "GB", "DE")
#: the platform's forecast horizon in days, converted to periods per granularity
HORIZON_DAYS = 90
DEFAULT_ORIGINS = 3
BASELINE = "seasonal_naive"


@dataclass(frozen=True)
class Frequency:
    code: str
    label: str
    season: int
    pandas: str
    days: float

    def period_start(self, dates: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
        d = pd.DatetimeIndex(pd.to_datetime(dates)).normalize()
        if self.code == "W":
            return d - pd.to_timedelta(d.day_of_week, unit="D")
        if self.code == "M":
            return d - pd.to_timedelta(d.day - 1, unit="D")
        return d

    def periods_for_days(self, days: int) -> int:
        return max(1, int(round(days / self.days)))


FREQUENCIES: dict[str, Frequency] = {
    "D": Frequency("D", "daily", 7, "D", 1.0),
    "W": Frequency("W", "weekly", 52, "W-MON", 7.0),
    "M": Frequency("M", "monthly", 12, "MS", 365.25 / 12),
}
GRANULARITIES = {f.label: f.code for f in FREQUENCIES.values()}


def frequency(code: str) -> Frequency:
    code = GRANULARITIES.get(code, code)
    if code not in FREQUENCIES:
        raise ModelError(f"freq must be one of D, W, M (or daily, weekly, monthly), not {code!r}")
    return FREQUENCIES[code]


def quiet_prophet() -> None:
    """Prophet and cmdstanpy log every fit at INFO; keep JSON output and notebooks clean.

    Both set their loggers' levels when first imported (cmdstanpy lazily, on its first log
    call), so import them first, then lower the levels."""
    import prophet  # noqa: F401  (sets the 'prophet' logger to INFO on import)

    try:
        from cmdstanpy.utils.logging import get_logger

        get_logger()
    except ImportError:  # pragma: no cover - another cmdstanpy layout
        pass
    for name in ("prophet", "prophet.models", "prophet.plot", "cmdstanpy"):
        logging.getLogger(name).setLevel(logging.ERROR)


# =============================================================================================
# Series preparation
# =============================================================================================


@dataclass
class PreparedSeries:
    """A regular series (index = period starts) and what was done to get it."""

    values: pd.Series
    freq: Frequency
    info: dict[str, Any] = field(default_factory=dict)


def prepare_series(dates: Any, values: Any, freq: str | Frequency) -> PreparedSeries:
    """Sum values per period (day, Monday-starting week or month), drop incomplete first/last
    periods of finer-grained input, and fill missing periods inside the range by linear
    interpolation (counted in ``info['filled']``)."""
    f = freq if isinstance(freq, Frequency) else frequency(freq)
    frame = pd.DataFrame({"ds": pd.to_datetime(pd.Series(dates)).to_numpy(), "y": np.asarray(values, dtype=float)})
    if frame.empty:
        raise ModelError("the series is empty")
    days = pd.DatetimeIndex(frame["ds"]).normalize()
    frame["period"] = f.period_start(days)
    grouped = frame.groupby("period")["y"].sum().sort_index()
    per_period = frame.groupby("period")["ds"].nunique()
    info: dict[str, Any] = {"input_rows": int(len(frame)), "aggregated": bool(per_period.max() > 1), "dropped_partial": []}
    if f.code != "D" and per_period.median() > 1:
        first_day, last_day = days.min(), days.max()
        start, end = grouped.index[0], grouped.index[-1]
        next_start = (end + pd.offsets.MonthBegin(1)) if f.code == "M" else end + pd.Timedelta(days=7)
        if first_day > start:
            info["dropped_partial"].append(start.date().isoformat())
            grouped = grouped.iloc[1:]
        if len(grouped) and last_day < next_start - pd.Timedelta(days=1):
            info["dropped_partial"].append(end.date().isoformat())
            grouped = grouped.iloc[:-1]
    if grouped.empty:
        raise ModelError("no complete period in the series")
    full = pd.date_range(grouped.index[0], grouped.index[-1], freq=f.pandas)
    regular = grouped.reindex(full)
    info["filled"] = int(regular.isna().sum())
    if info["filled"]:
        regular = regular.interpolate(method="linear")
    regular.index.name = "ds"
    info.update(start=full[0].date().isoformat(), end=full[-1].date().isoformat(), periods=int(len(full)))
    return PreparedSeries(regular.astype(float), f, info)


# =============================================================================================
# Forecasters
# =============================================================================================


def _future_index(y: pd.Series, steps: int, f: Frequency) -> pd.DatetimeIndex:
    return pd.date_range(y.index[-1], periods=steps + 1, freq=f.pandas)[1:]


def _interval_frame(index: pd.DatetimeIndex, yhat: np.ndarray, bounds: dict[int, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    out = pd.DataFrame({"yhat": yhat}, index=index)
    for level in LEVELS:
        lo, hi = bounds[level]
        out[f"lower_{level}"] = np.minimum(lo, yhat)
        out[f"upper_{level}"] = np.maximum(hi, yhat)
    out.index.name = "ds"
    return out


class Forecaster:
    """A candidate model: ``fit(y)`` on a regular series, ``forecast(steps)`` with intervals."""

    name: ClassVar[str]
    needs_positive: ClassVar[bool] = False

    def __init__(self, freq: Frequency):
        self.freq = freq
        self.y: pd.Series | None = None

    def fit(self, y: pd.Series) -> Forecaster:
        raise NotImplementedError

    def forecast(self, steps: int) -> pd.DataFrame:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class SeasonalNaive(Forecaster):
    """y(T + h) = y(T + h - m * ceil(h / m)); intervals from the in-sample seasonal differences."""

    name = "seasonal_naive"

    def fit(self, y: pd.Series) -> SeasonalNaive:
        m = self.freq.season
        if len(y) <= m:
            raise ModelError(f"seasonal naive needs more than one season ({m} periods), got {len(y)}")
        self.y = y
        values = y.to_numpy(float)
        self.residuals = values[m:] - values[:-m]
        return self

    def forecast(self, steps: int) -> pd.DataFrame:
        assert self.y is not None
        m = self.freq.season
        values = self.y.to_numpy(float)
        h = np.arange(1, steps + 1)
        yhat = values[len(values) - m + (h - 1) % m]
        widen = np.sqrt((h - 1) // m + 1)
        bounds = {}
        for level in LEVELS:
            tail = (100 - level) / 200
            lo, hi = np.quantile(self.residuals, [tail, 1 - tail])
            bounds[level] = (yhat + lo * widen, yhat + hi * widen)
        return _interval_frame(_future_index(self.y, steps, self.freq), yhat, bounds)


class ExponentialSmoothing(Forecaster):
    """statsmodels ETS(A, Ad, A): additive error, damped additive trend, additive season when the
    history holds at least two full seasons plus one; analytic prediction intervals."""

    name = "ets"
    log = False

    def fit(self, y: pd.Series) -> ExponentialSmoothing:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        self.y = y
        values = y.to_numpy(float)
        data = np.log(values) if self.log else values
        m = self.freq.season
        seasonal = "add" if len(values) >= 2 * m + 1 and m > 1 else None
        self.seasonal = seasonal
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a pandas series (statsmodels 0.15 needs an index to label predictions)
            model = ETSModel(pd.Series(data), error="add", trend="add", damped_trend=True, seasonal=seasonal,
                             seasonal_periods=m if seasonal else None)
            self.result = model.fit(disp=False, maxiter=2000)
        return self

    def forecast(self, steps: int) -> pd.DataFrame:
        assert self.y is not None
        n = len(self.y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = self.result.get_prediction(start=n, end=n + steps - 1)
            yhat = np.asarray(pred.predicted_mean, dtype=float)
            bounds = {}
            for level in LEVELS:
                frame = pred.summary_frame(alpha=1 - level / 100)
                bounds[level] = (frame["pi_lower"].to_numpy(float), frame["pi_upper"].to_numpy(float))
        if self.log:
            yhat = np.exp(yhat)
            bounds = {k: (np.exp(lo), np.exp(hi)) for k, (lo, hi) in bounds.items()}
        return _interval_frame(_future_index(self.y, steps, self.freq), yhat, bounds)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "seasonal": self.seasonal, "log": self.log,
                "params": {k: float(v) for k, v in zip(self.result.param_names, self.result.params, strict=False)
                           if k in ("smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend")}}


class ExponentialSmoothingLog(ExponentialSmoothing):
    name = "ets_log"
    log = True
    needs_positive = True


def holiday_frame(start: pd.Timestamp, end: pd.Timestamp, countries: tuple[str, ...] = HOLIDAY_COUNTRIES,
                  black_friday: bool = True) -> pd.DataFrame:
    """Prophet holidays for ``countries`` between two dates (one row per holiday name and day; a
    holiday shared by several countries appears once), plus the Black Friday to Cyber Monday week
    (Monday before Black Friday to the Monday after)."""
    import holidays as holidays_lib

    years = list(range(start.year, end.year + 1))
    rows = []
    for country in countries:
        try:
            calendar = holidays_lib.country_holidays(country, years=years, language="en_US")
        except (NotImplementedError, KeyError):
            calendar = holidays_lib.country_holidays(country, years=years)
        for day, name in calendar.items():
            rows.append((str(name), pd.Timestamp(day), 0, 0))
    if black_friday:
        for year in years:
            nov1 = pd.Timestamp(year, 11, 1)
            thanksgiving = nov1 + pd.Timedelta(days=(3 - nov1.weekday()) % 7 + 21)
            rows.append(("Black Friday week", thanksgiving + pd.Timedelta(days=1), -4, 3))
    frame = pd.DataFrame(rows, columns=["holiday", "ds", "lower_window", "upper_window"])
    frame = frame[(frame["ds"] >= start - pd.Timedelta(days=7)) & (frame["ds"] <= end + pd.Timedelta(days=7))]
    return frame.drop_duplicates(["holiday", "ds"]).sort_values(["ds", "holiday"]).reset_index(drop=True)


class ProphetForecaster(Forecaster):
    """Prophet with weekly (daily data) and yearly seasonality and main-market holidays (daily
    data). ``defaults=True`` fits a plain ``Prophet()`` (the documentation's configuration)."""

    name = "prophet"
    log = False
    samples = 1000

    def __init__(self, freq: Frequency, defaults: bool = False, holidays: bool = True, **prophet_args: Any):
        super().__init__(freq)
        self.defaults = defaults
        self.use_holidays = holidays and freq.code == "D" and not defaults
        self.prophet_args = prophet_args

    def _build(self, y: pd.Series) -> Any:
        quiet_prophet()
        from prophet import Prophet

        if self.defaults:
            return Prophet(**self.prophet_args)
        span_days = (y.index[-1] - y.index[0]).days
        args: dict[str, Any] = {
            "weekly_seasonality": self.freq.code == "D",
            "daily_seasonality": False,
            # yearly seasonality from one year of history on (Prophet's own default waits for two)
            "yearly_seasonality": (10 if self.freq.code == "D" else 6 if self.freq.code == "W" else 4) if span_days >= 360 else False,
            "uncertainty_samples": 0,
        }
        if self.use_holidays:
            args["holidays"] = holiday_frame(y.index[0], y.index[-1] + pd.Timedelta(days=400))
        args.update(self.prophet_args)
        return Prophet(**args)

    def fit(self, y: pd.Series) -> ProphetForecaster:
        self.y = y
        values = y.to_numpy(float)
        frame = pd.DataFrame({"ds": y.index, "y": np.log(values) if self.log else values})
        self.model = self._build(y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(frame)
        return self

    def predict_frame(self, steps: int) -> pd.DataFrame:
        """Prophet's own prediction frame (history and ``steps`` future periods, components included)."""
        assert self.y is not None
        future = pd.DataFrame({"ds": self.y.index.append(_future_index(self.y, steps, self.freq))})
        keep = self.model.uncertainty_samples
        self.model.uncertainty_samples = 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.model.predict(future)
        finally:
            self.model.uncertainty_samples = keep

    def forecast(self, steps: int) -> pd.DataFrame:
        assert self.y is not None
        index = _future_index(self.y, steps, self.freq)
        future = pd.DataFrame({"ds": index})
        m = self.model
        keep = m.uncertainty_samples
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.uncertainty_samples = 0
            point = m.predict(future)["yhat"].to_numpy(float)
            m.uncertainty_samples = self.samples
            np.random.seed(0)  # Prophet samples with numpy's global generator: same input, same intervals
            sims = m.predictive_samples(future)["yhat"]
            m.uncertainty_samples = keep
        bounds = {}
        for level in LEVELS:
            tail = (100 - level) / 200
            bounds[level] = (np.quantile(sims, tail, axis=1), np.quantile(sims, 1 - tail, axis=1))
        if self.log:
            point = np.exp(point)
            bounds = {k: (np.exp(lo), np.exp(hi)) for k, (lo, hi) in bounds.items()}
        return _interval_frame(index, point, bounds)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "log": self.log, "holidays": list(HOLIDAY_COUNTRIES) if self.use_holidays else [],
                "weekly_seasonality": bool(self.model.weekly_seasonality) if hasattr(self, "model") else None,
                "yearly_seasonality": self.model.yearly_seasonality if hasattr(self, "model") else None}


class ProphetLogForecaster(ProphetForecaster):
    name = "prophet_log"
    log = True
    needs_positive = True


CANDIDATES: dict[str, type[Forecaster]] = {
    "seasonal_naive": SeasonalNaive,
    "ets": ExponentialSmoothing,
    "ets_log": ExponentialSmoothingLog,
    "prophet": ProphetForecaster,
    "prophet_log": ProphetLogForecaster,
}


def candidate_names(y: pd.Series, models: list[str] | None = None) -> list[str]:
    names = list(models or CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise ModelError(f"unknown forecast model(s) {', '.join(unknown)}; models: {', '.join(CANDIDATES)}")
    positive = bool((y > 0).all())
    names = [n for n in names if positive or not CANDIDATES[n].needs_positive]
    if BASELINE not in names:
        names.insert(0, BASELINE)
    return names


# =============================================================================================
# Accuracy and the rolling-origin backtest
# =============================================================================================


def accuracy(actual: np.ndarray, forecast: pd.DataFrame, train: np.ndarray, season: int) -> dict[str, float | None]:
    """MAPE (fraction, over non-zero actuals), MASE (scaled by the in-sample seasonal-naive MAE),
    RMSE, bias and the coverage of the 80 % and 95 % intervals."""
    a = np.asarray(actual, dtype=float)
    yhat = forecast["yhat"].to_numpy(float)[: len(a)]
    err = a - yhat
    nonzero = a != 0
    scale = float(np.mean(np.abs(train[season:] - train[:-season]))) if len(train) > season else math.nan
    out: dict[str, float | None] = {
        "mape": float(np.mean(np.abs(err[nonzero] / a[nonzero]))) if nonzero.any() else None,
        "mase": float(np.mean(np.abs(err)) / scale) if scale and math.isfinite(scale) else None,
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "bias": float(np.mean(yhat - a)),
        "points": int(len(a)),
    }
    for level in LEVELS:
        lo = forecast[f"lower_{level}"].to_numpy(float)[: len(a)]
        hi = forecast[f"upper_{level}"].to_numpy(float)[: len(a)]
        out[f"coverage_{level}"] = float(np.mean((a >= lo) & (a <= hi)))
    return out


#: seasonal differences a training window needs beyond its first season (MASE scale, naive intervals)
MIN_SEASONAL_DIFFERENCES = 4


def min_training(f: Frequency) -> int:
    """The shortest training window a backtest origin may have: one season plus a few seasonal
    differences (the seasonal naive forecast and the MASE scale need them; ETS adds its season
    only from two seasons on, Prophet its yearly seasonality only from one year on)."""
    return f.season + MIN_SEASONAL_DIFFERENCES


@dataclass
class Backtest:
    origins: list[str]
    holdout: int
    step: int
    per_origin: dict[str, list[dict[str, Any]]]
    summary: dict[str, dict[str, Any]]
    chosen: str
    seconds: dict[str, float]
    #: the first origin is the one a year before the end (same season as the forecast)
    seasonal_origin: bool = False

    def table(self) -> pd.DataFrame:
        """One row per model: mean MAPE, MASE and coverage over the origins, and the last origin's."""
        rows = []
        for name, s in self.summary.items():
            rows.append({"model": name, **{k: s.get(k) for k in ("mase", "mape", "rmse", "coverage_80", "coverage_95")},
                         **{f"holdout_{k}": s["holdout"].get(k) for k in ("mase", "mape", "coverage_80", "coverage_95")},
                         "chosen": name == self.chosen, "seconds": round(self.seconds.get(name, 0.0), 2)})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"origins": self.origins, "holdout": self.holdout, "step": self.step, "chosen": self.chosen,
                "seasonal_origin": self.origins[0] if self.seasonal_origin else None,
                "models": self.summary, "per_origin": self.per_origin}


#: spacing of the backtest origins as a share of the holdout (overlapping windows keep the first
#: origin's training window long; back-to-back windows (1.0) chose the same models on the demo data)
ORIGIN_STEP = 0.5
#: periods in a year, in whole weeks for daily data so weekdays line up
YEAR_PERIODS = {"D": 364, "W": 52, "M": 12}
#: the origin a year back is used only with at least this many holdouts of history before it: a
#: model fitted on a few weeks of a launch says little about the one fitted on everything (on an
#: 18-month demo, 91 days of training before it made ETS win the backtest and lose out of time)
SEASONAL_MIN_TRAINING = 2


def plan_origins(n: int, f: Frequency, holdout: int, origins: int,
                 seasonal: bool = False) -> tuple[list[int], int]:
    """End positions (exclusive) of the training windows; the last one leaves exactly ``holdout``
    periods. Fewer origins are used when the series is short; none fit -> ModelError.

    With ``seasonal``, one more origin a year before the end of the series is added first, when
    at least :data:`SEASONAL_MIN_TRAINING` holdouts of history come before it: its holdout covers the weeks of the year that the forecast
    from the end will cover, one year earlier, so yearly steps (back to school, Black Friday) that
    the recent windows cannot show are judged too."""
    step = max(1, int(round(holdout * ORIGIN_STEP)))
    need = min_training(f)
    for k in range(origins, 0, -1):
        first_end = n - holdout - (k - 1) * step
        if first_end >= need:
            ends = [n - holdout - j * step for j in reversed(range(k))]
            year_before = n - YEAR_PERIODS[f.code]
            if seasonal and year_before >= max(need, SEASONAL_MIN_TRAINING * holdout) and year_before < ends[0]:
                ends.insert(0, year_before)
            return ends, step
    raise ModelError(f"the series has {n} {f.label} periods; a backtest on {holdout} held-out periods needs at "
                     f"least {holdout + need} (a season of {f.season} plus {MIN_SEASONAL_DIFFERENCES} to train on)")


def backtest(y: pd.Series, f: Frequency, holdout: int, origins: int = DEFAULT_ORIGINS,
             models: list[str] | None = None, builder: Callable[[str, Frequency], Forecaster] | None = None,
             seasonal_origin: bool = True) -> Backtest:
    """Rolling-origin evaluation of every candidate (plus, when the series allows, an origin a year
    before the last: see :func:`plan_origins`); the lowest mean MASE is chosen."""
    ends, step = plan_origins(len(y), f, holdout, origins, seasonal_origin)
    seasonal = len(ends) > len(plan_origins(len(y), f, holdout, origins)[0])
    names = candidate_names(y, models)
    build = builder or (lambda name, fr: CANDIDATES[name](fr))
    values = y.to_numpy(float)
    per_origin: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    seconds = dict.fromkeys(names, 0.0)
    failures: dict[str, str] = {}
    for end in ends:
        train = y.iloc[:end]
        actual = values[end:end + holdout]
        for name in names:
            if name in failures:
                continue
            started = time.perf_counter()
            try:
                fc = build(name, f).fit(train).forecast(holdout)
            except ModelError:
                raise
            except Exception as exc:  # a candidate that cannot fit this series is dropped, not fatal
                if name == BASELINE:
                    raise
                failures[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                continue
            seconds[name] += time.perf_counter() - started
            metrics = accuracy(actual, fc, train.to_numpy(float), f.season)
            per_origin[name].append({"origin": y.index[end].date().isoformat(), **metrics})
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        rows = per_origin[name]
        if name in failures or not rows:
            summary[name] = {"error": failures.get(name, "no origin")}
            continue
        mean = {k: _mean([r[k] for r in rows]) for k in ("mape", "mase", "rmse", "mae", "bias")}
        points = sum(r["points"] for r in rows)
        for level in LEVELS:
            mean[f"coverage_{level}"] = sum(r[f"coverage_{level}"] * r["points"] for r in rows) / points
        summary[name] = {**mean, "holdout": rows[-1], "origins": len(rows)}
    scored = {n: s["mase"] for n, s in summary.items() if s.get("mase") is not None}
    if not scored:
        raise ModelError("no candidate model produced a backtest score")
    chosen = min(scored, key=lambda n: (scored[n], n != BASELINE))
    return Backtest([y.index[e].date().isoformat() for e in ends], holdout, step,
                    {n: r for n, r in per_origin.items() if n not in failures}, summary, chosen, seconds, seasonal)


def _mean(values: list[Any]) -> float | None:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(clean)) if clean else None


# =============================================================================================
# Forecast with drivers
# =============================================================================================


@dataclass
class ForecastResult:
    series: PreparedSeries
    horizon: int
    backtest: Backtest
    chosen: str
    forecast: pd.DataFrame
    model: Forecaster
    components: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        f = self.series.freq
        rows = [{"date": ix.date().isoformat(), **{k: round(float(v), 6) for k, v in row.items()}}
                for ix, row in self.forecast.iterrows()]
        bt = self.backtest
        models = {}
        for name, s in bt.summary.items():
            if "error" in s:
                models[name] = {"error": s["error"]}
                continue
            models[name] = {
                "mape": s["mape"], "mase": s["mase"], "coverage_80": s["coverage_80"], "coverage_95": s["coverage_95"],
                "rmse": s["rmse"], "bias": s["bias"], "origins": s["origins"],
                "holdout": {k: s["holdout"][k] for k in ("origin", "mape", "mase", "coverage_80", "coverage_95", "rmse")},
                "seconds": round(bt.seconds.get(name, 0.0), 3),
            }
        chosen = bt.summary[self.chosen]
        base = bt.summary.get(BASELINE, {})
        return _clean({
            "series": {**self.series.info, "freq": f.code, "granularity": f.label, "season": f.season},
            "horizon": self.horizon,
            "holdout": bt.holdout,
            "backtest": {"origins": bt.origins, "step": bt.step, "selection": "lowest mean MASE over the origins"},
            "models": models,
            "chosen": self.chosen,
            "chosen_config": self.model.describe(),
            "beats_seasonal_naive": bool(chosen.get("mase") is not None and base.get("mase") is not None
                                         and chosen["mase"] < base["mase"]),
            "model_accuracy": {k: chosen.get(k) for k in ("mape", "mase", "coverage_80", "coverage_95")},
            "forecast": rows,
            "total_predicted": float(self.forecast["yhat"].sum()),
            "key_drivers": self.components.get("key_drivers", []),
            "seasonal_factors": self.components.get("seasonal_factors", {}),
            "components": self.components.get("summary", {}),
            "seconds": round(self.seconds, 2),
        })


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _clean(value.item())
    return value


def decompose(y: pd.Series, f: Frequency, steps: int, fitted: Forecaster | None = None) -> dict[str, Any]:
    """Trend, seasonality and holiday components from a Prophet fit on the whole series (the
    chosen one when it is a Prophet model), as key drivers and seasonal factors.

    Factors are multiplicative: exp(component) for a log model, 1 + component / mean level for an
    additive one.
    """
    if isinstance(fitted, ProphetForecaster):
        model = fitted
    else:
        cls = ProphetLogForecaster if (y > 0).all() else ProphetForecaster
        model = cls(f).fit(y)
    frame = model.predict_frame(steps)
    frame["ds"] = pd.to_datetime(frame["ds"])
    history = frame.iloc[: len(y)]
    future = frame.iloc[len(y):]
    level = float(np.mean(np.exp(history["trend"]) if model.log else history["trend"]))

    def factor(series: pd.Series) -> pd.Series:
        return np.exp(series) if model.log else 1 + series / level

    def trend_value(v: float) -> float:
        return float(np.exp(v)) if model.log else float(v)

    parts = pd.DataFrame({"ds": frame["ds"], "trend": np.exp(frame["trend"]) if model.log else frame["trend"]})
    for name in ("weekly", "yearly", "holidays"):
        if name in frame and (name != "holidays" or model.use_holidays):
            parts[f"{name}_factor"] = factor(frame[name]).to_numpy()
    parts["history"] = np.arange(len(frame)) < len(y)
    drivers: list[dict[str, Any]] = []
    seasonal: dict[str, Any] = {}
    t_now, t_end = trend_value(history["trend"].iloc[-1]), trend_value(frame["trend"].iloc[-1])
    t_year = trend_value(history["trend"].iloc[max(0, len(history) - f.periods_for_days(365))])
    drivers.append({"driver": "trend", "description": "underlying level without seasonality or holidays",
                    "change_over_horizon": t_end / t_now - 1 if t_now else None,
                    "change_over_last_year": t_now / t_year - 1 if t_year else None})
    summary = {"model": model.name, "log": model.log, "trend_start": trend_value(history["trend"].iloc[0]),
               "trend_now": t_now, "trend_end_of_horizon": t_end}
    if "weekly" in frame:
        by_day = history.assign(dow=history["ds"].dt.day_name()).groupby("dow")["weekly"].mean()
        factors = factor(by_day).reindex(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"])
        seasonal["weekday"] = {k: round(float(v), 4) for k, v in factors.items()}
        drivers.append({"driver": "weekly_seasonality", "description": "day-of-week pattern",
                        "amplitude": float(factors.max() - factors.min()),
                        "strongest": str(factors.idxmax()), "weakest": str(factors.idxmin())})
    if "yearly" in frame:
        by_month = frame.assign(month=frame["ds"].dt.month).groupby("month")["yearly"].mean()
        factors = factor(by_month)
        seasonal["month"] = {pd.Timestamp(2000, int(k), 1).strftime("%B"): round(float(v), 4) for k, v in factors.items()}
        in_horizon = factor(future["yearly"]) if len(future) else factors
        drivers.append({"driver": "yearly_seasonality", "description": "time-of-year pattern (January, back to school, Black Friday)",
                        "amplitude": float(factors.max() - factors.min()),
                        "peak_month": pd.Timestamp(2000, int(factors.idxmax()), 1).strftime("%B"),
                        "low_month": pd.Timestamp(2000, int(factors.idxmin()), 1).strftime("%B"),
                        "mean_factor_in_horizon": float(np.mean(in_horizon))})
    if "holidays" in frame and model.use_holidays:
        names = [c for c in frame.columns if c not in _PROPHET_BASE and not c.endswith(("_lower", "_upper"))
                 and c in set(_holiday_names(model))]
        effects = []
        for name in names:
            active = future[future[name].abs() > 1e-9]
            if len(active):
                effects.append({"holiday": name, "days_in_horizon": int(len(active)),
                                "factor": float(np.mean(factor(active[name])))})
        effects.sort(key=lambda e: abs(e["factor"] - 1), reverse=True)
        if effects:
            drivers.append({"driver": "holidays", "description": "holidays and Black Friday week inside the horizon",
                            "effects": effects[:8]})
    return {"key_drivers": drivers, "seasonal_factors": seasonal, "summary": summary, "frame": parts}


def _holiday_names(model: ProphetForecaster) -> list[str]:
    names = getattr(model.model, "train_holiday_names", None)
    return [] if names is None else [str(n) for n in list(names)]


_PROPHET_BASE = {"ds", "trend", "yhat", "additive_terms", "multiplicative_terms", "weekly", "yearly", "daily",
                 "holidays", "yhat_lower", "yhat_upper", "trend_lower", "trend_upper"}


def forecast_series(y: pd.Series | PreparedSeries, horizon: int, freq: str | Frequency = "D", holdout: int | None = None,
                    origins: int = DEFAULT_ORIGINS, models: list[str] | None = None,
                    components: bool = True) -> ForecastResult:
    """Backtest the candidates on ``y``, choose by MASE, forecast ``horizon`` periods with intervals."""
    started = time.perf_counter()
    prepared = y if isinstance(y, PreparedSeries) else PreparedSeries(y.astype(float), freq if isinstance(freq, Frequency) else frequency(freq), {
        "start": y.index[0].date().isoformat(), "end": y.index[-1].date().isoformat(), "periods": len(y), "filled": 0})
    f = prepared.freq
    values = prepared.values
    if horizon < 1:
        raise ModelError("horizon must be at least 1 period")
    holdout = holdout or horizon
    if holdout < 1:
        raise ModelError("holdout must be at least 1 period")
    if not np.all(np.isfinite(values.to_numpy(float))):
        raise ModelError("the series has missing or infinite values")
    bt = backtest(values, f, holdout, origins, models)
    model = CANDIDATES[bt.chosen](f).fit(values)
    fc = model.forecast(horizon)
    comps = decompose(values, f, horizon, model) if components else {}
    return ForecastResult(prepared, horizon, bt, bt.chosen, fc, model, comps, time.perf_counter() - started)


# =============================================================================================
# Any series file: the forecast command
# =============================================================================================


def read_series(path: str | Path, date_column: str, value_column: str) -> pd.DataFrame:
    """Read and check a (date, value) file (CSV, CSV.gz or Parquet); one-line errors."""
    if date_column == value_column:
        raise ModelError("date and value columns must differ")
    raw = read_table_file(path, [date_column, value_column], text_columns=(date_column,))
    dates = parse_dates(raw, date_column)
    values = parse_numbers(raw, value_column)
    if dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    return pd.DataFrame({"ds": dates, "y": values})


def forecast_file(path: str | Path, date_column: str, value_column: str, freq: str = "D", horizon: int = 90,
                  holdout: int | None = None, origins: int = DEFAULT_ORIGINS, models: list[str] | None = None) -> dict[str, Any]:
    """Forecast any (date, value) series file ``horizon`` periods ahead.

    Values are summed per period (a transactions file works as it is); missing periods inside
    the range are interpolated and counted. Every candidate is backtested from up to ``origins``
    rolling origins on ``holdout`` periods (default: the horizon); the lowest mean MASE wins.

    Returns
    -------
    dict with each model's MAPE, MASE and 80 %/95 % interval coverage (mean over the origins and
    on the final holdout), the chosen model, the forecast rows with intervals, the total, key
    drivers and seasonal factors.
    """
    f = frequency(freq)
    if int(horizon) < 1:
        raise ModelError("horizon must be at least 1 period")
    if holdout is not None and int(holdout) < 1:
        raise ModelError("holdout must be at least 1 period")
    frame = read_series(path, date_column, value_column)
    prepared = prepare_series(frame["ds"], frame["y"], f)
    n = prepared.info["periods"]
    need = (holdout or horizon) + min_training(f)
    if n < need:
        raise ModelError(f"the series has {n} {f.label} periods; a backtest on {holdout or horizon} held-out periods "
                         f"needs at least {need} (a season of {f.season} plus {MIN_SEASONAL_DIFFERENCES} to train on); "
                         "give a shorter --holdout (or --horizon)")
    return forecast_series(prepared, int(horizon), f, holdout, origins, models).to_dict()


# =============================================================================================
# The warehouse model
# =============================================================================================


def revenue_series(snapshot: Snapshot, start: date, end: date, currency: str | None = None,
                   timezone: str | None = None) -> pd.Series:
    """Daily gross revenue (successful payments, reporting currency, business time zone) for the
    local days ``[start, end)``, from the metric layer's ``revenue.daily`` table."""
    from analytics_lib.metrics import MetricSession, Period, revenue_analytics

    session = MetricSession(snapshot)
    tz = timezone or session.settings.timezone
    section = revenue_analytics(session, Period(start, end, "custom", tz), None, currency, with_growth=False)
    daily = section.tables["daily"]
    # rounded to the currency's minor unit: the sums carry 1e-12 noise from the order of DuckDB's
    # parallel aggregation, and Prophet's optimiser amplified that into a 1.5 % different MASE
    # between two fits of the same days
    from analytics_lib.warehouse.currency import CURRENCY_EXPONENTS

    digits = CURRENCY_EXPONENTS.get((currency or session.settings.reporting_currency).upper(), 2)
    series = pd.Series(np.round(daily["revenue"].to_numpy(float), digits),
                       index=pd.DatetimeIndex(pd.to_datetime(daily["day"]), name="ds"))
    return series


def revenue_data_range(snapshot: Snapshot, timezone: str) -> tuple[date, date]:
    """First local day with payments and the end (exclusive) of the last complete local day."""
    from analytics_lib.models.clv import data_end

    return data_end(snapshot, timezone)


@dataclass
class RevenueForecastFit:
    """What the registry stores: the chosen model's name and configuration, the backtest, and
    the conventions. Prophet objects are not pickled; ``predict`` refits the chosen candidate on
    the series up to its as-of day (seconds), so a forecast always starts from the latest data."""

    chosen: str
    granularity: str
    horizon_days: int
    currency: str
    timezone: str
    backtest: dict[str, Any]
    config: dict[str, Any]
    trained_until: str


class RevenueForecastModel(Model):
    """Daily/weekly/monthly gross revenue forecast for 90 days with intervals."""

    name: ClassVar[str] = "revenue_forecast"
    description: ClassVar[str] = ("Gross revenue forecast (reporting currency) for 90 days at daily, weekly or monthly "
                                  "granularity: Prophet vs ETS vs seasonal naive, chosen by rolling-origin backtest")
    feature_version: ClassVar[str] = "revenue-daily-1"
    features: ClassVar[list[str]] = ["revenue"]

    def default_split(self, snapshot: Snapshot) -> TimeSplit:
        """Hold out the last 90 days (the forecast horizon)."""
        from analytics_lib.config import get_settings

        first, end = revenue_data_range(snapshot, get_settings().timezone)
        if (end - first).days < HORIZON_DAYS + 2 * 7:
            raise ModelError(f"{(end - first).days} days of payments: the forecast needs at least {HORIZON_DAYS + 14}")
        return TimeSplit(first, end - timedelta(days=HORIZON_DAYS), end)

    def train(self, snapshot: Snapshot, split: TimeSplit, granularity: str = "daily", currency: str | None = None,
              timezone: str | None = None, origins: int = DEFAULT_ORIGINS, models: list[str] | None = None,
              seasonal_origin: bool = True, **unknown: Any) -> TrainResult:
        """Backtest the candidates on the days before the cutoff (rolling origins), then score the
        chosen model and the seasonal-naive baseline on the days after it (out of time)."""
        if unknown:
            raise ModelError(f"unknown revenue_forecast parameter(s): {', '.join(unknown)}; parameters: "
                             "granularity, currency, timezone, origins, models, seasonal_origin")
        from analytics_lib.config import get_settings

        settings = get_settings()
        tz = timezone or settings.timezone
        currency = (currency or settings.reporting_currency).upper()
        f = frequency(granularity)
        started = time.perf_counter()
        daily = revenue_series(snapshot, split.train_start, split.evaluation_end, currency, tz)
        prepared = prepare_series(daily.index, daily.to_numpy(), f)
        y = prepared.values
        cutoff = pd.Timestamp(split.cutoff)
        train = y[y.index < cutoff]
        test = y[y.index >= cutoff]
        if f.code != "D":  # a period that straddles the cutoff belongs to neither side
            end_of = (lambda s: s + pd.offsets.MonthBegin(1)) if f.code == "M" else (lambda s: s + pd.Timedelta(days=7))
            train = train[[end_of(s) <= cutoff for s in train.index]]
            test = test[[end_of(s) <= pd.Timestamp(split.evaluation_end) for s in test.index]]
        if len(test) == 0:
            raise ModelError(f"no complete {f.label} period after the cutoff {split.cutoff} to evaluate on")
        horizon = f.periods_for_days(HORIZON_DAYS)
        holdout = min(horizon, max(1, len(train) - min_training(f)))
        bt = backtest(train, f, holdout, origins, models, seasonal_origin=bool(seasonal_origin))
        # out of time: the chosen model and the baseline, trained before the cutoff
        chosen_model = CANDIDATES[bt.chosen](f).fit(train)
        base_model = SeasonalNaive(f).fit(train)
        actual = test.to_numpy(float)
        metrics = accuracy(actual, chosen_model.forecast(len(test)), train.to_numpy(float), f.season)
        baseline = accuracy(actual, base_model.forecast(len(test)), train.to_numpy(float), f.season)
        seconds = time.perf_counter() - started
        card = Scorecard(
            model=self.name, split=split.to_dict(),
            sizes={"train_periods": int(len(train)), "test_periods": int(len(test))},
            metrics={"model": bt.chosen, **metrics}, baseline_name=BASELINE, baseline=baseline,
            beats_baseline=beats(metrics, baseline, "mase", higher_is_better=False), primary_metric="mase",
            notes=[f"{f.label} gross revenue in {currency} ({tz} days), from the metric layer",
                   f"candidates chosen by mean MASE over {len(bt.origins)} rolling origins before the cutoff"
                   + (f" (the first, {bt.origins[0]}, a year before the cutoff: the forecast's season)" if bt.seasonal_origin
                      else "") + "; "
                   "the scorecard is the chosen model vs seasonal naive on the days after the cutoff",
                   "MASE is scaled by the in-sample seasonal-naive MAE; coverage is the share of actuals inside the interval"],
            extra={"backtest": bt.table().to_dict(orient="records"), "backtest_detail": bt.to_dict(),
                   "granularity": f.label, "training_seconds": round(seconds, 2)},
        )
        fit = RevenueForecastFit(bt.chosen, f.label, HORIZON_DAYS, currency, tz, bt.to_dict(), chosen_model.describe(),
                                 train.index[-1].date().isoformat())
        params = {"granularity": f.label, "currency": currency, "timezone": tz, "origins": origins,
                  "seasonal_origin": bool(seasonal_origin),
                  "models": candidate_names(train, models), "chosen": bt.chosen, "horizon_days": HORIZON_DAYS}
        rows = {"train_periods": int(len(train)), "test_periods": int(len(test))}
        return TrainResult(fit, card, list(self.features), params, rows, split)

    def forecast_detail(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None) -> dict[str, Any]:
        """The registered model's forecast from ``as_of`` (default: the end of the last complete
        day): the chosen candidate refitted on the revenue up to then. Returns ``history`` (the
        series), ``forecast`` (yhat and 80 %/95 % bounds per period), ``components`` (trend and
        seasonal/holiday factors over history and horizon) and the key drivers."""
        fit: RevenueForecastFit = loaded.model
        f = frequency(fit.granularity)
        first, end = revenue_data_range(snapshot, fit.timezone)
        as_of = as_of or end
        if (as_of - first).days < min_training(f) * f.days:
            raise ModelError(f"too little revenue history before {as_of} to forecast")
        daily = revenue_series(snapshot, first, as_of, fit.currency, fit.timezone)
        y = prepare_series(daily.index, daily.to_numpy(), f).values
        horizon = f.periods_for_days(fit.horizon_days)
        model = CANDIDATES[fit.chosen](f).fit(y)
        fc = model.forecast(horizon)
        comps = decompose(y, f, horizon, model)
        return {"history": y, "forecast": fc, "components": comps.pop("frame"), "drivers": comps,
                "model": model, "horizon": horizon}

    def predict(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None,
                ids: list[str] | None = None, limit: int | None = None) -> list[Prediction]:
        """One prediction for the series: the chosen candidate refitted on the revenue up to
        ``as_of`` (default the last complete day), forecasting 90 days with intervals."""
        fit: RevenueForecastFit = loaded.model
        entity = f"revenue:{fit.currency}:{fit.granularity}"
        if ids and any(i != entity for i in ids):
            raise ModelError(f"unknown series id(s) {', '.join(i for i in ids if i != entity)}; this model forecasts {entity!r}")
        detail = self.forecast_detail(loaded, snapshot, as_of)
        y, fc, comps = detail["history"], detail["forecast"], detail["drivers"]
        accuracy_ = loaded.scorecard.get("metrics", {})
        chosen_bt = fit.backtest.get("models", {}).get(fit.chosen, {})
        rows = [{"date": ix.date().isoformat(), "predicted_revenue": round(float(r["yhat"]), 2),
                 "lower_bound": round(float(r["lower_80"]), 2), "upper_bound": round(float(r["upper_80"]), 2),
                 "lower_95": round(float(r["lower_95"]), 2), "upper_95": round(float(r["upper_95"]), 2),
                 "confidence": 0.8} for ix, r in fc.iterrows()]
        recent = y[y.index >= y.index[-1] - pd.Timedelta(days=fit.horizon_days - 1)]
        total = float(fc["yhat"].sum())
        previous = float(recent.sum())
        change = total / previous - 1 if previous else None
        width = float(((fc["upper_80"] - fc["lower_80"]) / fc["yhat"].abs().clip(lower=1e-9)).median()) if total else None
        level = "low"
        factors: list[RiskFactor] = []
        if change is not None and change < -0.05:
            level = "high" if change < -0.15 else "medium"
            factors.append(RiskFactor("revenue_decline", min(1.0, -change), "Forecast below the last 90 days", round(change, 4)))
        if width is not None and width > 0.5:
            factors.append(RiskFactor("wide_intervals", min(1.0, width / 2),
                                      "Forecast uncertainty is high (median 80 % interval width / forecast)", round(width, 4)))
        # how often the 80 % interval held the actual on the out-of-time test
        coverage = accuracy_.get("coverage_80")
        confidence = float(coverage) if coverage is not None else 0.5
        details = _clean({
            "time_horizon_days": fit.horizon_days, "granularity": fit.granularity, "currency": fit.currency,
            "model": fit.chosen, "forecast_periods": rows, "total_predicted_revenue": round(total, 2),
            "previous_period_revenue": round(previous, 2), "change_vs_previous_period": change,
            "key_drivers": comps["key_drivers"], "seasonal_factors": comps["seasonal_factors"],
            "model_accuracy": {"out_of_time": {k: accuracy_.get(k) for k in ("mape", "mase", "coverage_80", "coverage_95")},
                               "backtest": {k: chosen_bt.get(k) for k in ("mape", "mase", "coverage_80", "coverage_95")}},
            "history_until": y.index[-1].date().isoformat(),
        })
        actions = []
        if level != "low":
            actions.append(Action("protect_revenue", "high", ["Bring forward the next seasonal campaign",
                                                              "Review payment failure and churn drivers"]))
        return [Prediction(entity_id=entity, probability=None, risk_level=level, confidence=confidence,
                           key_risk_factors=factors, recommended_actions=actions, details=details)]

    def evaluate(self, loaded: LoadedModel, snapshot: Snapshot) -> dict[str, Any]:
        """The chosen candidate and seasonal naive, refitted on the data before the registered
        cutoff, scored on every complete period after it that the snapshot now holds."""
        fit: RevenueForecastFit = loaded.model
        f = frequency(fit.granularity)
        window = loaded.metadata.training_window
        start, cutoff = date.fromisoformat(window["train_start"]), date.fromisoformat(window["cutoff"])
        _, end = revenue_data_range(snapshot, fit.timezone)
        if end <= cutoff:
            raise ModelError(f"no complete day after the cutoff {cutoff} in the warehouse yet")
        daily = revenue_series(snapshot, start, end, fit.currency, fit.timezone)
        y = prepare_series(daily.index, daily.to_numpy(), f).values
        train, test = y[y.index < pd.Timestamp(cutoff)], y[y.index >= pd.Timestamp(cutoff)]
        actual = test.to_numpy(float)
        metrics = accuracy(actual, CANDIDATES[fit.chosen](f).fit(train).forecast(len(test)), train.to_numpy(float), f.season)
        baseline = accuracy(actual, SeasonalNaive(f).fit(train).forecast(len(test)), train.to_numpy(float), f.season)
        return Scorecard(self.name, TimeSplit(start, cutoff, end).to_dict(),
                         {"train_periods": len(train), "test_periods": len(test)}, {"model": fit.chosen, **metrics},
                         BASELINE, baseline, beats(metrics, baseline, "mase", higher_is_better=False), "mase").to_dict()
