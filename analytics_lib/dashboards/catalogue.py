"""The dashboards that exist: name, title, what each shows (its widget ids) and how often it
refreshes. Roles (``parameters/dashboards/roles.yaml``) choose among these; the notebooks in
``notebooks/dashboards/<name>.ipynb`` render them."""

from __future__ import annotations

from dataclasses import dataclass

EXPORT_FORMATS = ("csv", "xlsx", "json", "pdf")


@dataclass(frozen=True)
class DashboardSpec:
    """One dashboard: its notebook name, title, widget ids (in page order) and refresh default."""

    name: str
    title: str
    description: str
    widgets: tuple[str, ...]
    refresh_seconds: float
    #: "live" dashboards show a window of hours ending now; "period" ones a range of days
    window: str
    #: the warehouse tables a refresh reads (None: every table). A live dashboard's refresh opens
    #: a snapshot every few seconds, and each table costs its log update and its view.
    tables: tuple[str, ...] | None = None

    @property
    def notebook(self) -> str:
        return f"{self.name}.ipynb"


DASHBOARDS: dict[str, DashboardSpec] = {
    spec.name: spec
    for spec in (
        DashboardSpec(
            "operations", "Operations (live)",
            "The last 24 hours, refreshed every few seconds: volumes, success and failure, revenue per "
            "hour, active users, failure reasons, provider status, countries and methods, fraud and "
            "anomaly alerts.",
            ("kpis", "volume", "revenue", "failures", "providers", "geography", "methods",
             "fraud_alerts", "anomalies"),
            5.0, "live",
            # metrics.realtime (payments, FX, checkout events, fraud alerts) and anomaly alerts
            ("transactions", "fx_rates", "checkout_events", "fraud_alerts", "anomaly_alerts")),
        DashboardSpec(
            "executive", "Executive",
            "Revenue overview (total, growth, MRR), the KPI grid (success rate, customer growth, "
            "LTV/CAC), the revenue trend and revenue by region.",
            ("revenue_overview", "kpi_grid", "revenue_trend", "revenue_by_region"),
            300.0, "period"),
        DashboardSpec(
            "finance", "Finance",
            "Gross-to-net bridge (refunds, chargebacks, fees), fees by provider, currency exposure, "
            "MRR movements and the revenue forecast with its intervals.",
            ("net_revenue", "gross_to_net", "fees_by_provider", "currency_exposure", "mrr_movements",
             "forecast"),
            600.0, "period"),
        DashboardSpec(
            "developer", "Developer",
            "Provider and API performance: latency percentiles, error mix, success by provider and "
            "method, retries.",
            ("api_kpis", "latency", "error_mix", "success_matrix", "retries"),
            60.0, "period"),
    )
}


def get_dashboard(name: str) -> DashboardSpec:
    """The spec of a dashboard, or a ``KeyError`` naming the known ones."""
    try:
        return DASHBOARDS[name]
    except KeyError:
        raise KeyError(f"unknown dashboard {name!r}; dashboards: {', '.join(DASHBOARDS)}") from None
