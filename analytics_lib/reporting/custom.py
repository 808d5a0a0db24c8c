"""Custom reports from a YAML definition: which metrics, broken down by which dimensions, with
which filters, over which dates, drawn how, exported how. A new report is a YAML file, not a
notebook; a definition with a bad field is refused with a message that names it.

Example (``parameters/custom_report/country_mix.yaml``)::

    title: Card payments by country
    period: last-month
    filters: {payment_method: [card]}
    metrics: [gross_revenue, success_rate, total_transactions]
    dimensions: [country, provider]
    visualisations:
      - {type: bar, dimension: country, metric: volume}
      - {type: table, dimension: provider}
    exports: [xlsx, csv]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.metrics import FILTER_COLUMNS
from analytics_lib.reporting import blocks as rp
from analytics_lib.reporting import charts
from analytics_lib.reporting import format as fmt

#: dimension -> (section, table, label column): the breakdowns a definition may ask for
DIMENSIONS: dict[str, tuple[str, str, str]] = {
    "country": ("geography", "countries", "country_name"),
    "payment_method": ("transactions", "by_payment_method", "payment_method"),
    "provider": ("performance", "providers", "provider"),
    "product": ("revenue", "by_product", "product_name"),
    "plan_type": ("revenue", "by_plan_type", "plan_type"),
    "plan": ("recurring_revenue", "by_plan", "plan_name"),
    "currency": ("revenue", "by_currency", "currency"),
    "failure_reason": ("transactions", "failure_reasons", "failure_reason"),
    "day": ("revenue", "daily", "day"),
    "time": ("transactions", "time_series", "bucket"),
    "rfm_segment": ("customers", "rfm_segments", "segment"),
    "acquisition_channel": ("customers", "spend_by_channel", "channel"),
    "risk_band": ("fraud", "risk_distribution", "band_start"),
    "fraud_indicator": ("fraud", "indicators", "indicator"),
}
SECTIONS = ("transactions", "revenue", "recurring_revenue", "customers", "geography", "performance", "fraud", "cohorts")
EXPORT_FORMATS = ("xlsx", "csv", "json")


class DefinitionError(ValueError):
    """A custom report definition that cannot be used (the message names the field)."""


def _only_known(values: Any, known: Any, what: str, hint: str) -> Any:
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; {what}s: {hint}")
    return values


class Visualisation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["bar", "line", "pie", "table", "kpi"]
    dimension: str | None = None
    metric: str | None = None
    title: str | None = None
    top: int = Field(12, ge=1, le=100)

    @model_validator(mode="after")
    def _needs(self) -> Visualisation:
        if self.type != "kpi" and self.dimension is None:
            raise ValueError(f"a {self.type} needs a dimension")
        if self.type in ("bar", "line", "pie") and self.metric is None:
            raise ValueError(f"a {self.type} chart needs a metric (a column of its dimension's table)")
        if self.dimension is not None and self.dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {self.dimension!r}; dimensions: {', '.join(DIMENSIONS)}")
        return self


class Definition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=120)
    description: str = ""
    period: str | None = "last-month"
    start: date | None = None
    end: date | None = None
    timezone: str | None = None
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$")
    filters: dict[str, list[str]] = {}
    metrics: list[str] = Field(default_factory=list, max_length=40)
    dimensions: list[str] = Field(default_factory=list, max_length=20)
    visualisations: list[Visualisation] = Field(default_factory=list, max_length=40)
    exports: list[str] = Field(default_factory=lambda: ["xlsx"])
    top: int = Field(25, ge=1, le=500)

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> Any:
        if isinstance(value, dict):
            _only_known(value, FILTER_COLUMNS, "filter", ", ".join(FILTER_COLUMNS))
            return {k: ([v] if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, value: list[str]) -> list[str]:
        return _only_known(value, DIMENSIONS, "dimension", ", ".join(DIMENSIONS))

    @field_validator("exports")
    @classmethod
    def _exports(cls, value: list[str]) -> list[str]:
        return _only_known(value, EXPORT_FORMATS, "export format", ", ".join(EXPORT_FORMATS))

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        known = known_metrics()
        return _only_known(value, known, "metric", f"see docs/metrics.md (e.g. {', '.join(sorted(known)[:8])}, ...)")

    @model_validator(mode="after")
    def _dates(self) -> Definition:
        if bool(self.start) != bool(self.end):
            raise ValueError("give both start and end, or neither")
        return self


def known_metrics() -> set[str]:
    """Every headline metric a definition may name: the summary keys of the metric families."""
    return set(_METRIC_SECTIONS)


#: metric name -> the section whose summary holds it
_METRIC_SECTIONS: dict[str, str] = {
    **{k: "transactions" for k in ("total_transactions", "successful_transactions", "failed_transactions",
                                   "total_volume", "average_transaction_value", "success_rate", "failure_rate",
                                   "decline_rate", "authorization_rate", "dunning_recovery_rate", "blocked_transactions")},
    **{k: "revenue" for k in ("gross_revenue", "refunds", "chargebacks", "fees", "net_revenue", "refund_rate",
                              "refund_rate_amount", "chargeback_rate", "chargeback_rate_amount", "paying_customers",
                              "revenue_per_customer", "subscription_revenue", "one_off_revenue",
                              "revenue_growth_vs_previous", "revenue_growth_vs_last_year", "refund_count", "dispute_count")},
    **{k: "recurring_revenue" for k in ("mrr", "arr", "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr",
                                        "reactivation_mrr", "net_new_mrr", "quick_ratio", "gross_mrr_churn_rate",
                                        "net_mrr_churn_rate", "net_revenue_retention", "gross_revenue_retention",
                                        "subscribers", "trialing")},
    **{k: "customers" for k in ("total_customers", "new_customers", "returning_customers", "arpu", "arpa",
                                "historical_clv", "customer_churn_rate", "ltv", "cac", "ltv_to_cac",
                                "marketing_spend", "median_days_between_purchases")},
    **{k: "geography" for k in ("international_share", "countries")},
    **{k: "fraud" for k in ("average_risk_score", "review_share", "block_share", "fraud_alerts", "confirmed_fraud_alerts")},
}


def load_definition(path: str | Path | None) -> Definition:
    """Read and check a definition file; errors name the file and the field."""
    if not path:
        raise DefinitionError("a custom report needs a definition: -p definition=parameters/custom_report/NAME.yaml")
    p = Path(path)
    if not p.is_absolute():
        p = PROJECT_ROOT / p
    if p.suffix.lower() not in (".yaml", ".yml"):
        raise DefinitionError(f"a report definition is a .yaml file: {path}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DefinitionError(f"report definition not found: {path}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path}: a report definition is a mapping (title, metrics, dimensions, ...)")
    try:
        return Definition.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "definition"
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise DefinitionError(f"{path}: field '{where}': {message}{more}") from None


@dataclass
class CustomReport:
    spec: Definition
    ctx: Any
    result: Any
    summary: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def finish(self) -> None:
        from analytics_lib.reporting.exports import ReportData

        data = ReportData(title=self.spec.title,
                          summary={m: self.value(m) for m in self.spec.metrics},
                          sections={"breakdowns": {"summary": {}, "tables": self.tables}},
                          meta={"period": self.result.period.to_dict(), "currency": self.ctx.currency,
                                "filters": self.ctx.filters.to_dict()})
        kpis = {m: self.value(m) for m in self.spec.metrics}
        self.ctx.finish(data, summary=self.summary, kpis=kpis)

    def value(self, metric: str) -> Any:
        return self.result.sections[_METRIC_SECTIONS[metric]].summary.get(metric)


def run(spec: Definition, warehouse: str | None = None, as_of: dict | None = None, now: str | None = None,
        run_dir: str | None = None, exports: list[str] | None = None) -> CustomReport:
    """Compute what the definition asks for."""
    from analytics_lib.reporting.context import ReportContext

    ctx = ReportContext.open(spec.title, period=spec.period, start=spec.start and spec.start.isoformat(),
                             end=spec.end and spec.end.isoformat(), timezone=spec.timezone,
                             currency=spec.currency, filters=spec.filters, warehouse=warehouse, as_of=as_of, now=now,
                             run_dir=run_dir, exports=list(exports or []) or spec.exports)
    result = ctx.analytics()
    tables = {}
    for dim in dict.fromkeys([*spec.dimensions, *(v.dimension for v in spec.visualisations if v.dimension)]):
        section, table, _ = DIMENSIONS[dim]
        tables[dim] = result.sections[section].tables[table]
    for v in spec.visualisations:
        if v.metric and v.dimension and v.metric not in tables[v.dimension].columns:
            ctx.close()
            raise DefinitionError(f"field 'visualisations': {v.dimension} has no column {v.metric!r}; columns: "
                                  f"{', '.join(map(str, tables[v.dimension].columns))}")
    sentences = [f"{spec.title} for {result.period.label} in {ctx.currency}."]
    for m in spec.metrics[:4]:
        value = result.sections[_METRIC_SECTIONS[m]].summary.get(m)
        if value is not None:
            sentences.append(f"{m.replace('_', ' ').capitalize()}: {fmt.value(value, fmt.kind_of(m), ctx.currency)}.")
    return CustomReport(spec, ctx, result, sentences, tables)


def show(report: CustomReport) -> None:
    """The definition's KPIs, charts and tables, in its order."""
    spec, cur = report.spec, report.ctx.currency
    if spec.metrics:
        rp.section("Metrics")
        rp.kpis([rp.KPI(m.replace("_", " ").capitalize(), report.value(m), fmt.kind_of(m)) for m in spec.metrics], cur)
    drawn = set()
    for v in spec.visualisations:
        if v.type == "kpi":
            continue
        frame = report.tables[v.dimension]
        label = DIMENSIONS[v.dimension][2]
        title = v.title or f"{(v.metric or v.dimension).replace('_', ' ').capitalize()} by {v.dimension.replace('_', ' ')}"
        rp.section(title)
        if frame.empty:
            rp.note("No rows for this period.")
        elif v.type == "bar":
            rp.chart(charts.breakdown(frame, label, v.metric, title, fmt.kind_of(v.metric), cur, top=v.top))
        elif v.type == "line":
            rp.chart(charts.time_series(frame.sort_values(label), label, [v.metric], title, fmt.kind_of(v.metric), cur))
        elif v.type == "pie":
            rp.chart(charts.donut(frame.nlargest(v.top, v.metric), label, v.metric, title))
        else:
            rp.table(frame, currency=cur, max_rows=spec.top)
        drawn.add(v.dimension)
    for dim in spec.dimensions:
        if dim not in drawn:
            rp.section(f"By {dim.replace('_', ' ')}")
            rp.table(report.tables[dim], currency=cur, max_rows=spec.top)
