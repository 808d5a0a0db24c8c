"""Revenue forecast: candidates and their intervals, accuracy metrics, the rolling-origin
backtest, the forecast command, the warehouse model, and Prophet's own published example."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from analytics_lib.cli import main
from analytics_lib.config import get_settings
from analytics_lib.models.base import ModelError
from analytics_lib.models.forecast import (
    FREQUENCIES,
    ProphetForecaster,
    RevenueForecastModel,
    SeasonalNaive,
    accuracy,
    backtest,
    forecast_file,
    forecast_series,
    holiday_frame,
    plan_origins,
    prepare_series,
    revenue_data_range,
)
from analytics_lib.models.registry import Registry, RegistryError
from analytics_lib.synth import generate
from analytics_lib.warehouse import Warehouse
from tests.conftest import SHARED_DATA

PEYTON_DIR = SHARED_DATA / "peyton_manning"
DAILY = FREQUENCIES["D"]


def synthetic_daily(days: int = 730, seed: int = 5) -> pd.Series:
    """Trend, weekly and yearly seasonality and noise: a series a seasonal naive forecast can be
    beaten on."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    index = pd.date_range("2023-01-02", periods=days, freq="D")
    weekly = np.array([5.0, 3, 0, -2, -4, -6, 4])[index.day_of_week]
    yearly = 12 * np.sin(2 * np.pi * t / 365.25) + 4 * np.cos(4 * np.pi * t / 365.25)
    return pd.Series(200 + 0.08 * t + weekly + yearly + rng.normal(0, 3, days), index=index)


@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory) -> Path:
    y = synthetic_daily()
    path = tmp_path_factory.mktemp("forecast") / "series.csv"
    pd.DataFrame({"day": y.index.strftime("%Y-%m-%d"), "revenue": y.to_numpy()}).to_csv(path, index=False)
    return path


# =============================================================================================
# Building blocks
# =============================================================================================


def test_seasonal_naive_repeats_the_last_season_with_widening_intervals():
    index = pd.date_range("2024-01-01", periods=21, freq="D")
    pattern = np.array([10.0, 20, 30, 40, 50, 60, 70])
    y = pd.Series(np.tile(pattern, 3) + np.repeat([0.0, 1, 2], 7), index=index)
    fc = SeasonalNaive(DAILY).fit(y).forecast(10)
    np.testing.assert_allclose(fc["yhat"].to_numpy(), np.concatenate([pattern + 2, pattern[:3] + 2]))
    assert list(fc.index) == list(pd.date_range("2024-01-22", periods=10, freq="D"))
    # residuals are all +1: the interval is [yhat + 1, yhat + 1] one season ahead, sqrt(2) wider the next
    width = fc["upper_95"] - fc["yhat"]
    assert width.iloc[0] == pytest.approx(1.0) and width.iloc[8] == pytest.approx(np.sqrt(2))
    assert (fc["lower_95"] <= fc["lower_80"]).all() and (fc["upper_80"] <= fc["upper_95"]).all()
    with pytest.raises(ModelError, match="more than one season"):
        SeasonalNaive(DAILY).fit(y.iloc[:7])


def test_accuracy_metrics_worked_by_hand():
    train = np.array([1.0, 2, 3, 4, 5, 6, 7, 3, 4, 5, 6, 7, 8, 9])  # seasonal-naive MAE = 2
    actual = np.array([10.0, 20.0, 0.0, 40.0])
    fc = pd.DataFrame({"yhat": [12.0, 18.0, 1.0, 40.0], "lower_80": [11, 19, -1, 39], "upper_80": [13, 21, 2, 41],
                       "lower_95": [9, 15, -2, 30], "upper_95": [15, 25, 3, 50]})
    m = accuracy(actual, fc, train, 7)
    assert m["mape"] == pytest.approx((0.2 + 0.1 + 0.0) / 3)  # the zero actual is left out
    assert m["mae"] == pytest.approx(5 / 4)
    assert m["mase"] == pytest.approx((5 / 4) / 2)
    assert m["coverage_80"] == pytest.approx(0.75) and m["coverage_95"] == pytest.approx(1.0)
    assert m["bias"] == pytest.approx(0.25)


def test_prepare_series_aggregates_and_fills():
    days = pd.date_range("2024-01-03", "2024-03-10", freq="D")  # a Wednesday to a Sunday
    values = np.ones(len(days))
    weekly = prepare_series(days, values, "W")
    assert weekly.info["dropped_partial"] == ["2024-01-01"]  # the first week misses Monday and Tuesday
    assert weekly.values.index[0] == pd.Timestamp("2024-01-08") and (weekly.values == 7).all()
    monthly = prepare_series(days, values, "M")
    # January starts on the 3rd and March ends on the 10th: only February is complete
    assert monthly.info["dropped_partial"] == ["2024-01-01", "2024-03-01"] and list(monthly.values) == [29.0]
    # transactions: several rows a day are summed; a missing day inside the range is interpolated
    rows = pd.to_datetime(["2024-01-01 10:00", "2024-01-01 18:00", "2024-01-02 00:00", "2024-01-04 00:00"])
    daily = prepare_series(rows, [1.0, 2.0, 5.0, 7.0], "daily")
    assert list(daily.values) == [3.0, 5.0, 6.0, 7.0] and daily.info["filled"] == 1 and daily.info["aggregated"]
    with pytest.raises(ModelError, match="freq must be one of"):
        prepare_series(rows, [1, 2, 3, 4], "Q")


def test_holidays_of_the_main_markets_offline():
    frame = holiday_frame(pd.Timestamp("2025-01-01"), pd.Timestamp("2025-12-31"))
    by_day = frame.groupby("ds")["holiday"].apply(set)
    assert "Republic Day" in by_day[pd.Timestamp("2025-10-29")]  # TR
    assert "Independence Day" in by_day[pd.Timestamp("2025-07-04")]  # US
    assert "Boxing Day" in by_day[pd.Timestamp("2025-12-26")] or "Second Day of Christmas" in by_day[pd.Timestamp("2025-12-26")]
    assert "German Unity Day" in by_day[pd.Timestamp("2025-10-03")]  # DE
    bf = frame[frame["holiday"] == "Black Friday week"]
    assert list(bf["ds"]) == [pd.Timestamp("2025-11-28")]
    assert (bf["lower_window"] == -4).all() and (bf["upper_window"] == 3).all()  # Monday .. Cyber Monday
    assert (frame.loc[frame["ds"] == "2025-01-01", "holiday"] == "New Year's Day").sum() == 1  # shared, once


def test_rolling_origins_and_short_series():
    ends, step = plan_origins(400, DAILY, 90, 3)
    assert ends == [220, 265, 310] and step == 45
    ends, _ = plan_origins(110, DAILY, 90, 3)  # room for one origin only
    assert ends == [20]
    with pytest.raises(ModelError, match="needs at least 101"):
        plan_origins(100, DAILY, 90, 3)


def test_an_origin_a_year_back_judges_the_forecasts_season():
    # 800 days, 90 held out: the recent origins end at 620, 665, 710; the seasonal one at
    # 800 - 364 = 436, whose 90-day holdout is the forecast's weeks one year earlier
    ends, step = plan_origins(800, DAILY, 90, 3, seasonal=True)
    assert ends == [436, 620, 665, 710] and step == 45
    assert plan_origins(800, DAILY, 90, 3)[0] == [620, 665, 710]  # off unless asked for
    # not when fewer than two holdouts of history come before it (a launch's first weeks)
    assert plan_origins(500, DAILY, 90, 3, seasonal=True)[0] == [320, 365, 410]
    bt = backtest(synthetic_daily(800), DAILY, 90, 3, ["seasonal_naive"])
    assert bt.seasonal_origin and bt.origins[0] == "2024-03-13" and len(bt.origins) == 4
    assert bt.to_dict()["seasonal_origin"] == "2024-03-13"


def test_backtest_never_trains_on_the_future():
    y = synthetic_daily(200)
    seen: list[pd.Timestamp] = []

    class Spy(SeasonalNaive):
        def fit(self, train: pd.Series) -> Spy:
            seen.append(train.index[-1])
            return super().fit(train)

    bt = backtest(y, DAILY, 30, 3, ["seasonal_naive"], builder=lambda name, f: Spy(f))
    assert [d + pd.Timedelta(days=1) for d in seen] == [pd.Timestamp(o) for o in bt.origins]
    assert bt.summary["seasonal_naive"]["origins"] == 3


# =============================================================================================
# forecast_file and the forecast command
# =============================================================================================


def test_forecast_file_on_a_seasonal_series(synthetic_csv):
    out = forecast_file(synthetic_csv, "day", "revenue", freq="D", horizon=30, holdout=30)
    models = out["models"]
    assert set(models) == {"seasonal_naive", "ets", "ets_log", "prophet", "prophet_log"}
    chosen = out["chosen"]
    assert chosen != "seasonal_naive" and out["beats_seasonal_naive"]
    # the chosen model beats seasonal naive on the final holdout too
    assert models[chosen]["holdout"]["mase"] < models["seasonal_naive"]["holdout"]["mase"]
    assert models[chosen]["mase"] == min(m["mase"] for m in models.values())
    # intervals near nominal over 3 origins x 30 days
    assert 0.65 <= models[chosen]["coverage_80"] <= 0.97
    assert models[chosen]["coverage_95"] >= 0.85
    rows = out["forecast"]
    assert len(rows) == 30 and rows[0]["date"] == "2025-01-01"
    assert all(r["lower_95"] <= r["lower_80"] <= r["yhat"] <= r["upper_80"] <= r["upper_95"] for r in rows)
    assert out["total_predicted"] == pytest.approx(sum(r["yhat"] for r in rows))
    drivers = {d["driver"] for d in out["key_drivers"]}
    assert {"trend", "weekly_seasonality", "yearly_seasonality"} <= drivers
    weekday = out["seasonal_factors"]["weekday"]
    assert weekday["Monday"] > weekday["Saturday"]  # +5 vs -6 in the simulation


def test_forecast_cli_prints_json_without_log_noise(synthetic_csv):
    result = CliRunner().invoke(main, ["models", "forecast", "--series", str(synthetic_csv), "--date-column", "day",
                                       "--value-column", "revenue", "--freq", "W", "--horizon", "8", "--holdout", "8"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"models", "chosen", "forecast", "total_predicted", "key_drivers"} <= set(out)
    for name, m in out["models"].items():
        assert {"mape", "mase", "coverage_80", "coverage_95"} <= set(m), name
    assert out["series"]["granularity"] == "weekly" and len(out["forecast"]) == 8
    assert "cmdstanpy" not in result.stderr and "INFO" not in result.stderr


@pytest.mark.parametrize(("content", "args", "message"), [
    (None, {}, "no such file"),
    ("day,revenue\n2024-01-01,5\n", {"--value-column": "amount"}, "column 'amount' not in"),
    ("day,revenue\n2024-01-01,5\n2024-01-02,lots\n", {}, "not numbers (first: 'lots')"),
    ("day,revenue\n2024-01-01,5\n2024-13-45,5\n", {}, "not dates (first: '2024-13-45')"),
    ("day,revenue\n" + "".join(f"2024-01-{d:02d},{d}\n" for d in range(1, 29)), {"--horizon": "30"}, "needs at least 41"),
    ("day,revenue\n", {}, "has no rows"),
])
def test_forecast_cli_bad_input(tmp_path, content, args, message):
    path = tmp_path / "s.csv"
    if content is not None:
        path.write_text(content)
    options = {"--series": str(path), "--date-column": "day", "--value-column": "revenue", "--horizon": "7", **args}
    result = CliRunner().invoke(main, ["models", "forecast", *[v for kv in options.items() for v in kv]])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_forecast_file_refuses_bad_arguments(synthetic_csv):
    with pytest.raises(ModelError, match="freq must be one of"):
        forecast_file(synthetic_csv, "day", "revenue", freq="Q", horizon=7)
    with pytest.raises(ModelError, match="horizon must be at least 1"):
        forecast_file(synthetic_csv, "day", "revenue", horizon=0)
    with pytest.raises(ModelError, match="date and value columns must differ"):
        forecast_file(synthetic_csv, "day", "day", horizon=7)
    result = CliRunner().invoke(main, ["models", "forecast", "--series", str(synthetic_csv), "--date-column", "day",
                                       "--value-column", "revenue", "--freq", "Q", "--horizon", "7"])
    assert result.exit_code == 2 and "Invalid value for '--freq'" in result.output


# =============================================================================================
# The warehouse model
# =============================================================================================


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("forecast_wh") / "warehouse")
    generate(wh, customers=1500, months=18, end=date(2026, 6, 30))
    return wh


def test_revenue_forecast_trains_scores_and_registers(small_warehouse, tmp_path):
    registry = Registry(tmp_path / "registry")
    model = RevenueForecastModel()
    result, version = model.fit_and_register(small_warehouse, registry)
    card = result.scorecard
    assert card.primary_metric == "mase" and card.baseline_name == "seasonal_naive"
    assert card.sizes["test_periods"] == 90
    assert card.beats_baseline, (card.metrics, card.baseline)
    table = pd.DataFrame(card.extra["backtest"])
    assert {"model", "mase", "mape", "coverage_80", "coverage_95"} <= set(table.columns)
    assert table["chosen"].sum() == 1 and table.loc[table["chosen"], "model"].item() == card.metrics["model"]
    folder = registry.location / "revenue_forecast" / version
    assert json.loads((folder / "scorecard.json").read_text())["beats_baseline"] is True
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["params"]["chosen"] == card.metrics["model"] and meta["feature_version"] == "revenue-daily-1"
    _, second = model.fit_and_register(small_warehouse, registry, granularity="weekly")
    assert model.load(registry).metadata.version == second
    assert model.load(registry, version).model.granularity == "daily"
    with small_warehouse.snapshot() as snap:
        [p] = model.predict(model.load(registry, version), snap)
        d = p.to_dict()
        assert d["entity_id"] == "revenue:USD:daily" and d["risk_level"] in ("low", "medium", "high")
        periods = d["details"]["forecast_periods"]
        # the day after the last complete local day (the day of the latest payment is incomplete:
        # 2026-06-30 or 2026-07-01 in Istanbul, depending on whether a payment fell after 21:00 UTC)
        last_complete_end = revenue_data_range(snap, get_settings().timezone)[1]
        assert last_complete_end in (date(2026, 6, 30), date(2026, 7, 1))
        assert len(periods) == 90 and periods[0]["date"] == last_complete_end.isoformat()
        assert all(r["lower_bound"] <= r["predicted_revenue"] <= r["upper_bound"] for r in periods)
        assert d["details"]["total_predicted_revenue"] == pytest.approx(sum(r["predicted_revenue"] for r in periods), rel=1e-6)
        assert {"trend", "weekly_seasonality"} <= {k["driver"] for k in d["details"]["key_drivers"]}
        [w] = model.predict(model.load(registry), snap)
        assert len(w.details["forecast_periods"]) == 13 and w.details["granularity"] == "weekly"
        with pytest.raises(ModelError, match="unknown series id"):
            model.predict(model.load(registry, version), snap, ids=["revenue:EUR:daily"])
        again = model.evaluate(model.load(registry, version), snap)
        assert again["metrics"]["mase"] == pytest.approx(card.metrics["mase"], rel=1e-6)


def test_revenue_forecast_refuses_an_incompatible_feature_set(small_warehouse, tmp_path, monkeypatch):
    registry = Registry(tmp_path / "registry")
    RevenueForecastModel().fit_and_register(small_warehouse, registry, models=["seasonal_naive", "ets"])
    monkeypatch.setattr(RevenueForecastModel, "feature_version", "revenue-daily-2")
    with pytest.raises(RegistryError, match="retrain"):
        RevenueForecastModel().load(registry)


def test_revenue_forecast_is_out_of_time(small_warehouse):
    model = RevenueForecastModel()
    with small_warehouse.snapshot() as snap:
        split = model.default_split(snap)
        result = model.train(snap, split, models=["seasonal_naive", "ets"])
    assert date.fromisoformat(result.model.trained_until) < split.cutoff
    assert all(date.fromisoformat(o) < split.cutoff for o in result.model.backtest["origins"])
    assert result.rows["test_periods"] == (split.evaluation_end - split.cutoff).days


# =============================================================================================
# Prophet's documentation example (Peyton Manning)
# =============================================================================================


def _peyton_manning() -> pd.DataFrame:
    for name in ("example_wp_log_peyton_manning.csv", "prophet_example_wp_log_peyton_manning.csv"):
        if (PEYTON_DIR / name).is_file():
            return pd.read_csv(PEYTON_DIR / name, parse_dates=["ds"])
    pytest.skip(f"the Peyton Manning example is absent from {PEYTON_DIR} (outside data, ../shared/data)")


@pytest.mark.shared_data
def test_peyton_manning_forecast_matches_prophet_docs():
    """Prophet's quick start: default Prophet(), 365 days ahead; the docs show yhat ~ 8.2126 for
    2017-01-15 (MAP fits differ slightly across Stan versions)."""
    df = _peyton_manning()
    y = pd.Series(df["y"].to_numpy(), index=pd.DatetimeIndex(df["ds"]))
    fc = ProphetForecaster(DAILY, defaults=True).fit(y).forecast(365)
    assert fc.loc["2017-01-15", "yhat"] == pytest.approx(8.2126, abs=0.02)
    assert fc.loc["2017-01-15", "lower_80"] < fc.loc["2017-01-15", "yhat"] < fc.loc["2017-01-15", "upper_80"]


@pytest.mark.shared_data
@pytest.mark.slow
def test_peyton_manning_cross_validation_matches_prophet_docs():
    """Prophet's diagnostics (initial 730 days, period 180, horizon 365) give MSE ~ 0.4934 and MAPE
    ~ 0.0584 at 37 days; our forecaster at the same cutoffs gives Prophet's own predictions."""
    from prophet.diagnostics import cross_validation, performance_metrics

    df = _peyton_manning()
    y = pd.Series(df["y"].to_numpy(), index=pd.DatetimeIndex(df["ds"]))
    ours = ProphetForecaster(DAILY, defaults=True).fit(y)
    cv = cross_validation(ours.model, initial="730 days", period="180 days", horizon="365 days", disable_tqdm=True)
    metrics = performance_metrics(cv)
    row = metrics[metrics["horizon"] == pd.Timedelta(days=37)].iloc[0]
    assert row["mse"] == pytest.approx(0.4934, abs=0.01)
    assert row["mape"] == pytest.approx(0.0584, abs=0.002)
    # the same cutoff through our forecaster: identical point forecasts
    cutoff = cv["cutoff"].iloc[-1]
    mine = ProphetForecaster(DAILY, defaults=True).fit(y[y.index <= cutoff]).forecast(365)
    theirs = cv[cv["cutoff"] == cutoff].set_index("ds")["yhat"]
    np.testing.assert_allclose(mine.loc[theirs.index, "yhat"].to_numpy(), theirs.to_numpy(), rtol=1e-6)


@pytest.mark.shared_data
@pytest.mark.slow
def test_peyton_manning_through_the_forecast_command():
    df = _peyton_manning()
    y = pd.Series(df["y"].to_numpy(), index=pd.DatetimeIndex(df["ds"]))
    prepared = prepare_series(y.index, y.to_numpy(), "D")
    assert prepared.info["filled"] == 2964 - 2905  # gaps in the page-view history are interpolated
    result = forecast_series(prepared, 90, holdout=90, models=["seasonal_naive", "ets", "prophet"])
    assert result.chosen == "prophet"
    assert result.backtest.summary["prophet"]["mase"] < result.backtest.summary["seasonal_naive"]["mase"]
