"""What every report notebook starts from: its parameters turned into a period, filters, a
reporting currency, a fixed "now" and a metric session pinned to the warehouse versions the
runner recorded, and what it ends with: its data exports and a summary for the portal and e-mail.

A notebook opened by hand in JupyterLab gets the same context with live defaults (current
warehouse, the real clock)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from analytics_lib.config import Settings, get_settings
from analytics_lib.metrics import (
    ComprehensiveAnalytics,
    Filters,
    MetricOptions,
    MetricSession,
    Period,
)
from analytics_lib.metrics.api import _clean, comprehensive_analytics

SUMMARY_FILE = "summary.json"


class ReportParameterError(ValueError):
    """A report parameter the notebook cannot use."""


def parse_now(now: str | datetime | None) -> datetime:
    if now is None or now == "":
        return datetime.now(UTC)
    if isinstance(now, datetime):
        value = now
    else:
        try:
            value = datetime.fromisoformat(str(now))
        except ValueError as exc:
            raise ReportParameterError(f"now must be an ISO date-time, got {now!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def resolve_period(period: str | None, start: str | None, end: str | None, timezone: str,
                   now: datetime) -> Period:
    """The report's period: ``start``..``end`` (inclusive days) if given, else ``period`` read
    relative to ``now`` in the business time zone."""
    if start or end:
        if not (start and end):
            raise ReportParameterError("give both start and end, or neither")
        return Period.between(start, end, timezone)
    today = now.astimezone(ZoneInfo(timezone)).date()
    return Period.parse(period or "last-month", timezone, today=today)


@dataclass
class ReportContext:
    title: str
    period: Period
    filters: Filters
    currency: str
    timezone: str
    now: datetime
    session: MetricSession
    settings: Settings
    run_dir: Path | None = None
    exports: Sequence[str] = ()
    options: MetricOptions = field(default_factory=MetricOptions)
    written: list[Path] = field(default_factory=list)
    _analytics: ComprehensiveAnalytics | None = None

    @classmethod
    def open(cls, title: str, *, period: str | None = "last-month", start: str | None = None,
             end: str | None = None, timezone: str | None = None, currency: str | None = None,
             filters: Mapping[str, Any] | None = None, warehouse: str | None = None,
             as_of: Mapping[str, int] | None = None, now: str | None = None, run_dir: str | None = None,
             exports: Sequence[str] = (), options: MetricOptions | None = None) -> ReportContext:
        settings = get_settings()
        if warehouse:
            settings = settings.with_warehouse(warehouse)
        tz = timezone or settings.timezone
        try:
            ZoneInfo(tz)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable zone name
            raise ReportParameterError(f"unknown time zone {tz!r}") from exc
        moment = parse_now(now)
        resolved = resolve_period(period, start, end, tz, moment)
        pinned = {str(k): int(v) for k, v in (as_of or {}).items()} or None
        session = MetricSession.open(settings.warehouse, as_of=pinned, settings=settings)
        return cls(title=title, period=resolved, filters=Filters.of(filters or {}),
                   currency=(currency or settings.reporting_currency).upper(), timezone=tz, now=moment,
                   session=session, settings=settings, run_dir=Path(run_dir) if run_dir else None,
                   exports=tuple(exports or ()), options=options or MetricOptions())

    # -- numbers ----------------------------------------------------------------------------
    def analytics(self, period: Period | None = None) -> ComprehensiveAnalytics:
        """Every metric family for the report's period (cached) or another period."""
        if period is not None and period != self.period:
            return comprehensive_analytics(period, self.filters, self.currency, session=self.session, options=self.options)
        if self._analytics is None:
            self._analytics = comprehensive_analytics(self.period, self.filters, self.currency,
                                                      session=self.session, options=self.options)
        return self._analytics

    @property
    def versions(self) -> dict[str, int]:
        return dict(self.session.versions)

    def meta(self) -> dict[str, Any]:
        """The header line: period, currency, filters, data as of."""
        p = self.period
        return {"period": f"{p.label} ({p.start.isoformat()} to {p.last_day.isoformat()}, {self.timezone})",
                "currency": self.currency, "filters": self.filters.to_dict(),
                "generated": self.now.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M %Z")}

    # -- the end of a report ----------------------------------------------------------------
    def finish(self, data: Any = None, summary: Sequence[str] = (), kpis: Mapping[str, Any] | None = None,
               insights: Sequence[Any] = ()) -> None:
        """Write the report's data exports (the formats the runner asked for) and ``summary.json``
        (headline numbers, executive summary, top insights) into the run folder; outside a run
        this does nothing. Closes the session. The files written are in ``self.written``."""
        written: list[Path] = self.written
        try:
            if self.run_dir is None:
                return
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if data is not None and self.exports:
                from analytics_lib.reporting.exports import export

                written += export(data, self.run_dir, formats=tuple(self.exports), basename="data")
            doc = {
                "title": self.title,
                "period": self.period.to_dict(),
                "currency": self.currency,
                "filters": self.filters.to_dict(),
                "now": self.now.isoformat(),
                "warehouse_versions": self.versions,
                "kpis": _clean(dict(kpis or {})),
                "summary": [str(s) for s in summary],
                "insights": [_clean(i.to_dict() if hasattr(i, "to_dict") else dict(i)) for i in insights],
            }
            target = self.run_dir / SUMMARY_FILE
            tmp = target.with_suffix(".json.part")
            tmp.write_text(json.dumps(doc, indent=2, default=str, allow_nan=False), encoding="utf-8")
            os.replace(tmp, target)
            written.append(target)
        finally:
            self.close()

    def close(self) -> None:
        self.session.close()
