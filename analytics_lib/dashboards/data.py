"""What each dashboard shows, loaded from one warehouse snapshot: KPI cards, charts and tables
per widget id, plus the data behind them for the exports.

One loader per dashboard (:data:`LOADERS`), each a thin selection over the metric layer
(``analytics_lib.metrics``) and the models (``analytics_lib.models.forecast``): no metric is
defined here. A loader computes only the widgets the viewer's role may see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from analytics_lib import metrics
from analytics_lib.dashboards import charts
from analytics_lib.dashboards.alerts import AlertSource, empty_alerts
from analytics_lib.dashboards.regions import by_region
from analytics_lib.dashboards.state import FilterState
from analytics_lib.metrics import MetricSession
from analytics_lib.reporting import format as fmt
from analytics_lib.reporting.blocks import KPI
from analytics_lib.warehouse.countries import country_name

#: provider status on the live window: success rate at or above "ok" is ok, at or above
#: "degraded" is degraded, below is failing; fewer attempts than "min_attempts" is "low volume"
#: (too few to tell)
PROVIDER_STATUS = {"ok": 0.85, "degraded": 0.70, "min_attempts": 5}
FORECAST_HORIZON_DAYS = 30
FORECAST_MIN_DAYS = 56
#: fast candidates only: a dashboard cannot wait for Prophet's backtests (docs/dashboards.md)
FORECAST_MODELS = ["seasonal_naive", "ets"]


@dataclass
class Panel:
    """One widget's content: KPI cards (key, card), a figure, a table, a note."""

    title: str
    kpis: list[tuple[str, KPI]] = field(default_factory=list)
    figure: charts.Figure | None = None
    table: pd.DataFrame | None = None
    note: str = ""
    #: show the table under the chart too (by default a table is shown only without a chart)
    table_below: bool = False


@dataclass
class View:
    """Everything one refresh of a dashboard shows, and the data its exports contain."""

    dashboard: str
    title: str
    currency: str
    panels: dict[str, Panel]
    summary: dict[str, Any]
    data: dict[str, pd.DataFrame]
    meta: dict[str, Any]


@dataclass
class LoadContext:
    """What a loader needs besides the snapshot and the filters."""

    now: datetime
    timezone: str
    default_currency: str
    widgets: tuple[str, ...]
    alerts: AlertSource = field(default_factory=AlertSource)
    cache: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wants(self, *widget_ids: str) -> bool:
        return any(w in self.widgets for w in widget_ids)


Loader = Callable[[MetricSession, FilterState, LoadContext], View]


def short_error(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line for the screen (never a traceback)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kpi(key: str, label: str, value: Any, kind: str, **extra: Any) -> tuple[str, KPI]:
    return key, KPI(label, value, kind, **extra)


def _meta(session: MetricSession, state: FilterState, ctx: LoadContext, currency: str, **extra: Any) -> dict[str, Any]:
    return {"generated_at": ctx.now, "timezone": ctx.timezone, "currency": currency, "filters": state.describe(),
            "warehouse_versions": dict(session.versions), **extra}


# -- operations (live) ------------------------------------------------------------------------------


def provider_status(by_provider: pd.DataFrame, thresholds: dict[str, float] = PROVIDER_STATUS) -> pd.DataFrame:
    """The window's attempts per provider with a status from its success rate."""
    if by_provider.empty:
        return pd.DataFrame(columns=["provider", "status", "transactions", "failed", "success_rate"])

    def status(row: pd.Series) -> str:
        if row["transactions"] < thresholds["min_attempts"]:
            return "low volume"
        if row["success_rate"] >= thresholds["ok"]:
            return "ok"
        return "degraded" if row["success_rate"] >= thresholds["degraded"] else "failing"

    out = by_provider[["provider", "transactions", "failed", "success_rate"]].copy()
    out.insert(1, "status", out.apply(status, axis=1))
    return out


def load_operations(session: MetricSession, state: FilterState, ctx: LoadContext) -> View:
    currency = state.reporting_currency(ctx.default_currency)
    filters = state.metric_filters()
    live = metrics.realtime(session, now=ctx.now, hours=state.hours, filters=filters, currency=currency,
                            timezone=ctx.timezone, top_n=10)
    s = live.summary
    with session.lock:
        scope = session.current  # the live window realtime() scoped: the same payments
        session.scope(scope.period, scope.filters, scope.currency, scope.window, columns=scope.columns)
        providers = provider_status(session.query("transactions", "by_provider")) if ctx.wants("providers") else None
        fraud_alerts = session.query("fraud", "alerts") if ctx.wants("fraud_alerts") else None
    window = f"last {state.hours} h"
    panels: dict[str, Panel] = {}
    data: dict[str, pd.DataFrame] = {"hourly": live.tables["hourly"]}
    alerts, alerts_note = (None, "")
    if ctx.wants("anomalies"):
        try:
            alerts, alerts_note = ctx.alerts.load(session, ctx.now, state.hours, filters, currency)
        except Exception as exc:  # noqa: BLE001 - the detector is another team's code: the rest must still show
            alerts, alerts_note = empty_alerts(), f"anomaly alerts are unavailable right now ({short_error(exc)})"
    if ctx.wants("kpis"):
        cards = [
            _kpi("transactions", f"Transactions ({window})", s["transactions"], "count"),
            _kpi("transactions_per_hour", "Transactions per hour", s["transactions_per_hour"], "number"),
            _kpi("success_rate", "Success rate", s["success_rate"], "percent"),
            _kpi("failure_rate", "Failure rate", s["failure_rate"], "percent"),
            _kpi("revenue_per_hour", "Revenue per hour", s["revenue_per_hour"], "money"),
            _kpi("active_users", "Active users", s["active_users"], "count"),
        ]
        if ctx.wants("fraud_alerts"):
            cards.append(_kpi("open_fraud_alerts", "Open fraud alerts", s["open_fraud_alerts"], "count"))
        if alerts is not None:
            cards.append(_kpi("anomaly_alerts", "Anomaly alerts", len(alerts), "count"))
        panels["kpis"] = Panel(f"Live: {window}", kpis=cards)
    if ctx.wants("volume"):
        panels["volume"] = Panel("Transaction volume", figure=charts.volume(live.tables["hourly"], "Attempts per hour"))
    if ctx.wants("revenue"):
        panels["revenue"] = Panel("Revenue per hour", figure=charts.revenue_per_hour(
            live.tables["hourly"], f"Revenue per hour ({currency})", currency))
    if ctx.wants("failures"):
        reasons = live.tables["top_failure_reasons"]
        panels["failures"] = Panel("Failures by reason", figure=charts.bars(reasons, "failure_reason", "failures",
                                                                            "Failed payments by reason"), table=reasons)
        data["failure_reasons"] = reasons
    if providers is not None:
        panels["providers"] = Panel("Provider status", table=providers,
                                    note=f"ok: success rate at least {PROVIDER_STATUS['ok']:.0%}; degraded: at least "
                                         f"{PROVIDER_STATUS['degraded']:.0%}; failing: below")
        data["providers"] = providers
    if ctx.wants("geography"):
        countries = live.tables["countries"].rename(columns={"value": "country_code"})
        countries.insert(1, "country", [country_name(c) for c in countries["country_code"]])
        panels["geography"] = Panel("Countries", figure=charts.bars(countries, "country", "transactions",
                                                                    "Attempts by country"))
        data["countries"] = countries
    if ctx.wants("methods"):
        methods_frame = live.tables["payment_methods"].rename(columns={"value": "payment_method"})
        panels["methods"] = Panel("Payment methods", figure=charts.bars(methods_frame, "payment_method", "transactions",
                                                                        "Attempts by payment method"))
        data["payment_methods"] = methods_frame
    if fraud_alerts is not None:
        panels["fraud_alerts"] = Panel("Fraud alerts", table=fraud_alerts,
                                       note="Alerts raised in the window by type, severity and status.")
        data["fraud_alerts"] = fraud_alerts
    if alerts is not None:
        panels["anomalies"] = Panel("Anomaly alerts", table=alerts, note=alerts_note)
        data["anomaly_alerts"] = alerts
    summary = {k: v for k, v in s.items() if k not in ("window_start", "window_end")}
    return View("operations", "Operations (live)", currency, panels, summary, data,
                _meta(session, state, ctx, currency, window_start=s["window_start"], window_end=s["window_end"]))


# -- executive --------------------------------------------------------------------------------------


def load_executive(session: MetricSession, state: FilterState, ctx: LoadContext) -> View:
    currency = state.reporting_currency(ctx.default_currency)
    filters = state.metric_filters()
    period = state.period(ctx.timezone)
    rev = metrics.revenue_analytics(session, period, filters, currency)
    r = rev.summary
    panels: dict[str, Panel] = {}
    data: dict[str, pd.DataFrame] = {}
    summary: dict[str, Any] = {"gross_revenue": r["gross_revenue"], "net_revenue": r["net_revenue"],
                               "revenue_growth_vs_previous": r.get("revenue_growth_vs_previous")}
    mrr = None
    if ctx.wants("revenue_overview", "kpi_grid"):
        mrr = metrics.recurring_revenue(session, period, filters, currency)
        summary.update(mrr=mrr.summary.get("mrr"), arr=mrr.summary.get("arr"))
    if ctx.wants("revenue_overview"):
        mrr_note = ("not defined under a payment-method filter" if mrr and mrr.summary.get("not_applicable_filters")
                    else f"ARR {fmt.money(mrr.summary.get('arr'), currency, compact=True)}" if mrr else "")
        panels["revenue_overview"] = Panel("Revenue overview", kpis=[
            _kpi("gross_revenue", "Total revenue", r["gross_revenue"], "money",
                 change=r.get("revenue_growth_vs_previous"), good="up", note="vs the previous period"),
            _kpi("net_revenue", "Net revenue", r["net_revenue"], "money", note="after refunds, chargebacks and fees"),
            _kpi("mrr", "MRR", mrr.summary.get("mrr") if mrr else None, "money", note=mrr_note),
        ])
    if ctx.wants("kpi_grid"):
        cust = metrics.customer_analytics(session, period, filters, currency, recurring=mrr)
        trends = {t.metric: t for t in metrics.trend_analysis(session, period, filters, currency)}
        success, customers = trends["success_rate"], trends["total_customers"]
        c = cust.summary
        summary.update(success_rate=success.current_value, customers=c["total_customers"],
                       customer_growth=customers.change_percent, new_customers=c["new_customers"],
                       ltv=c.get("ltv"), cac=c.get("cac"), ltv_to_cac=c.get("ltv_to_cac"))
        panels["kpi_grid"] = Panel("Key performance indicators", kpis=[
            _kpi("success_rate", "Success rate", success.current_value, "percent", change=success.change,
                 change_kind="points", good="up", significance=success.significance),
            _kpi("customer_growth", "Customer growth", customers.change_percent, "percent",
                 note=f"{fmt.count(c['total_customers'])} paying customers, "
                      f"{fmt.count(c['new_customers'])} new", good="up"),
            _kpi("ltv_to_cac", "LTV / CAC", c.get("ltv_to_cac"), "multiple",
                 note=f"LTV {fmt.money(c.get('ltv'), currency, compact=True)} · "
                      f"CAC {fmt.money(c.get('cac'), currency, compact=True)}"),
        ])
    if ctx.wants("revenue_trend"):
        daily = rev.tables["daily"]
        panels["revenue_trend"] = Panel("Revenue trend", figure=charts.trend(
            daily, "day", ["revenue", "net_revenue"], f"Daily revenue, {state.start} to {state.end}", currency,
            labels={"revenue": "gross", "net_revenue": "net"}))
        data["daily_revenue"] = daily
    if ctx.wants("revenue_by_region"):
        geo = metrics.geography(session, period, filters, currency)
        regions = by_region(geo.tables["countries"], values=("volume", "transactions", "customers"))
        regions = regions.rename(columns={"volume": "revenue"})
        panels["revenue_by_region"] = Panel("Revenue by region", figure=charts.bars(
            regions, "region", "revenue", "Revenue by region", kind="money", currency=currency), table=regions)
        data["revenue_by_region"] = regions
        data["revenue_by_country"] = geo.tables["countries"]
    return View("executive", "Executive", currency, panels, summary, data,
                _meta(session, state, ctx, currency, period=period.to_dict()))


# -- finance ----------------------------------------------------------------------------------------


def _forecast(daily: pd.DataFrame, ctx: LoadContext, key: tuple) -> tuple[pd.DataFrame, pd.DataFrame, str] | str:
    """History and a 30-day forecast with 80 % intervals; cached per filters, currency and hour."""
    from analytics_lib.models.forecast import forecast_series

    with ctx.lock:
        cached = ctx.cache.get("forecast")
    if cached and cached[0] == key:
        return cached[1]
    today = ctx.now.astimezone(UTC).date()
    frame = daily.assign(day=pd.to_datetime(daily["day"]))
    frame = frame[frame["day"].dt.date < today]
    if len(frame) < FORECAST_MIN_DAYS:
        result: Any = f"The forecast needs at least {FORECAST_MIN_DAYS} days of history: choose a longer date range."
    elif not (frame["revenue"] > 0).any():
        result = "No revenue in this range to forecast from."
    else:
        series = pd.Series(frame["revenue"].to_numpy(float), index=pd.DatetimeIndex(frame["day"], name="ds")).asfreq("D", fill_value=0.0)
        fc = forecast_series(series, FORECAST_HORIZON_DAYS, "D", models=FORECAST_MODELS, components=False)
        history = pd.DataFrame({"ds": series.index, "y": series.to_numpy()})
        prediction = fc.forecast.reset_index().rename(columns={"index": "ds"})
        prediction = prediction.rename(columns={prediction.columns[0]: "ds"})
        result = (history, prediction, f"model: {fc.chosen} (chosen by backtest among {', '.join(FORECAST_MODELS)})")
    with ctx.lock:
        ctx.cache["forecast"] = (key, result)
    return result


def load_finance(session: MetricSession, state: FilterState, ctx: LoadContext) -> View:
    currency = state.reporting_currency(ctx.default_currency)
    filters = state.metric_filters()
    period = state.period(ctx.timezone)
    rev = metrics.revenue_analytics(session, period, filters, currency, with_growth=False)
    r = rev.summary
    panels: dict[str, Panel] = {}
    data: dict[str, pd.DataFrame] = {}
    summary = {k: r[k] for k in ("gross_revenue", "refunds", "chargebacks", "fees", "net_revenue")}
    if ctx.wants("net_revenue"):
        margin = r["net_revenue"] / r["gross_revenue"] if r["gross_revenue"] else None
        panels["net_revenue"] = Panel("Gross to net", kpis=[
            _kpi("gross_revenue", "Gross revenue", r["gross_revenue"], "money"),
            _kpi("refunds", "Refunds", r["refunds"], "money", note=f"{fmt.percent(r['refund_rate'])} of payments"),
            _kpi("chargebacks", "Chargebacks", r["chargebacks"], "money",
                 note=f"{fmt.percent(r['chargeback_rate'])} of payments"),
            _kpi("fees", "Fees", r["fees"], "money"),
            _kpi("net_revenue", "Net revenue", r["net_revenue"], "money", note=f"{fmt.percent(margin)} of gross"),
        ])
    if ctx.wants("gross_to_net"):
        panels["gross_to_net"] = Panel("Gross-to-net bridge", figure=charts.bridge(
            [("Gross revenue", r["gross_revenue"]), ("Refunds", -r["refunds"]), ("Chargebacks", -r["chargebacks"]),
             ("Fees", -r["fees"])], f"Gross to net, {state.start} to {state.end}", currency))
    if ctx.wants("fees_by_provider"):
        providers = metrics.performance(session, period, filters, currency).tables["providers"]
        fees = providers[["provider", "fees", "gross_revenue", "effective_fee_rate", "fee_per_net_revenue"]]
        panels["fees_by_provider"] = Panel("Fees by provider", figure=charts.bars(
            fees, "provider", "fees", "Fees by provider", kind="money", currency=currency), table=fees)
        data["fees_by_provider"] = fees
    if ctx.wants("currency_exposure"):
        exposure = rev.tables["by_currency"]
        panels["currency_exposure"] = Panel("Currency exposure", figure=charts.bars(
            exposure, "currency", "revenue", f"Revenue by charge currency (in {currency})", kind="money",
            currency=currency), table=exposure)
        data["currency_exposure"] = exposure
    if ctx.wants("mrr_movements"):
        mrr = metrics.recurring_revenue(session, period, filters, currency)
        moves = mrr.tables.get("movements", pd.DataFrame())
        note = ("MRR is not defined under a payment-method filter (subscriptions have no method)"
                if mrr.summary.get("not_applicable_filters") else "")
        panels["mrr_movements"] = Panel("MRR movements", figure=charts.movements(moves, "MRR movements", currency),
                                        note=note)
        data["mrr_movements"] = moves
        summary.update(mrr=mrr.summary.get("mrr"), net_new_mrr=mrr.summary.get("net_new_mrr"))
    if ctx.wants("forecast"):
        key = (state.metric_filters(), currency, state.start, state.end, ctx.now.strftime("%Y-%m-%dT%H"))
        try:
            result = _forecast(rev.tables["daily"], ctx, key)
        except Exception as exc:  # noqa: BLE001 - a model that cannot fit must not hide the other widgets
            result = f"The forecast is not available for these filters: {short_error(exc)}."
        if isinstance(result, str):
            panels["forecast"] = Panel("Revenue forecast", figure=charts.empty("Revenue forecast", "Not enough history"),
                                       note=result)
        else:
            history, prediction, note = result
            panels["forecast"] = Panel("Revenue forecast", figure=charts.forecast(
                history, prediction, f"Daily revenue, next {FORECAST_HORIZON_DAYS} days (80% interval)", currency),
                note=note)
            data["forecast"] = prediction
    data["daily_revenue"] = rev.tables["daily"]
    return View("finance", "Finance", currency, panels, summary, data,
                _meta(session, state, ctx, currency, period=period.to_dict()))


# -- developer --------------------------------------------------------------------------------------


def load_developer(session: MetricSession, state: FilterState, ctx: LoadContext) -> View:
    currency = state.reporting_currency(ctx.default_currency)
    filters = state.metric_filters()
    period = state.period(ctx.timezone)
    perf = metrics.performance(session, period, filters, currency)
    with session.lock:
        session.scope(period, filters, currency)
        totals = session.row("transactions", "summary")
    providers = perf.tables["providers"]
    panels: dict[str, Panel] = {}
    data: dict[str, pd.DataFrame] = {"providers": providers}
    attempts = providers["transactions"].sum() if not providers.empty else 0
    error_rate = ((providers["provider_error_rate"].fillna(0) * providers["transactions"]).sum() / attempts
                  if attempts else None)
    slowest = providers.dropna(subset=["latency_p95_ms"]).sort_values("latency_p95_ms", ascending=False).head(1)
    summary = {"transactions": totals["total_transactions"], "success_rate": totals["success_rate"],
               "authorization_rate": totals["authorization_rate"], "provider_error_rate": error_rate,
               "retries": int(providers["retries"].sum()) if not providers.empty else 0}
    if ctx.wants("api_kpis"):
        panels["api_kpis"] = Panel("API health", kpis=[
            _kpi("transactions", "Attempts", totals["total_transactions"], "count"),
            _kpi("success_rate", "Success rate", totals["success_rate"], "percent"),
            _kpi("authorization_rate", "Authorization rate", totals["authorization_rate"], "percent"),
            _kpi("provider_error_rate", "Provider errors", error_rate, "percent", note="of attempts"),
            _kpi("slowest_p95", "Slowest p95 latency",
                 charts.duration(None if slowest.empty else float(slowest.iloc[0]["latency_p95_ms"])), "text",
                 note="" if slowest.empty else f"{slowest.iloc[0]['provider']} (all methods)"),
            _kpi("retries", "Retries", summary["retries"], "count"),
        ])
    if ctx.wants("latency"):
        pm = perf.tables["provider_methods"].assign(
            route=lambda f: f["provider"] + " · " + f["payment_method"].str.replace("_", " "))
        shown = providers[["provider", "transactions", "latency_p50_ms", "latency_p95_ms"]].assign(
            latency_p50=lambda f: [charts.duration(v) for v in f["latency_p50_ms"]],
            latency_p95=lambda f: [charts.duration(v) for v in f["latency_p95_ms"]],
        )[["provider", "transactions", "latency_p50", "latency_p95"]]
        panels["latency"] = Panel("Latency percentiles", figure=charts.latency(
            pm, "route", ["latency_p50_ms", "latency_p95_ms"], "Latency of successful payments, by provider and method",
            names={"latency_p50_ms": "p50", "latency_p95_ms": "p95"}), table=shown, table_below=True,
            note="Processing latency of successful payments (created to completed): bank transfers settle in hours.")
    if ctx.wants("error_mix"):
        mix = perf.tables["error_mix"]
        panels["error_mix"] = Panel("Error mix", figure=charts.shares(
            mix, "provider", "failure_reason", "share_of_provider_failures", "Failures by reason, per provider"))
        data["error_mix"] = mix
    if ctx.wants("success_matrix"):
        pm = perf.tables["provider_methods"]
        panels["success_matrix"] = Panel("Success by provider and method", figure=charts.matrix(
            pm, "provider", "payment_method", "success_rate", "Success rate by provider and method"), table=pm)
        data["provider_methods"] = pm
    if ctx.wants("retries"):
        panels["retries"] = Panel("Retries", figure=charts.bars(providers, "provider", "retries", "Retry attempts by provider"),
                                  table=providers[["provider", "transactions", "retries", "success_rate",
                                                   "provider_error_rate"]])
    return View("developer", "Developer", currency, panels, summary, data,
                _meta(session, state, ctx, currency, period=period.to_dict()))


LOADERS: dict[str, Loader] = {
    "operations": load_operations,
    "executive": load_executive,
    "finance": load_finance,
    "developer": load_developer,
}


def load_view(dashboard: str, session: MetricSession, state: FilterState, ctx: LoadContext) -> View:
    """Run ``dashboard``'s loader on one snapshot."""
    return LOADERS[dashboard](session, state, ctx)

