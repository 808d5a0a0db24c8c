"""What a dashboard is showing: its filters (date range or live window, currency, country,
payment method), the choices each filter offers, and their validation.

A browser can set any trait of any widget it is shown (a date outside the range, an option that
is not in the list, a window of a million hours), so every value a widget reports goes through
:func:`validate` before it reaches a query; an invalid value is refused with a short message
and the previous state stays in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from analytics_lib.metrics import Filters, MetricSession, Period
from analytics_lib.warehouse.schema import PAYMENT_METHODS

#: live windows the operations dashboard offers (hours ending now)
HOURS_CHOICES = (1, 6, 12, 24, 48, 72, 168)
#: the longest date range a period dashboard accepts
MAX_DAYS = 731
#: default range of each period dashboard, in days ending today
DEFAULT_DAYS = {"executive": 30, "finance": 182, "developer": 7}


class FilterError(ValueError):
    """A filter value a dashboard cannot use (a short message for the screen)."""


@dataclass(frozen=True)
class FilterOptions:
    """The values each filter may take (from the warehouse, once per dashboard)."""

    currencies: tuple[str, ...]
    countries: tuple[str, ...]
    methods: tuple[str, ...]
    default_currency: str
    timezone: str
    today: date
    earliest: date
    hours_choices: tuple[int, ...] = HOURS_CHOICES
    max_days: int = MAX_DAYS

    @classmethod
    def from_session(cls, session: MetricSession, today: date) -> FilterOptions:
        """Currencies with FX rates (plus the reporting currency), countries and methods seen in
        the payments, and the first day with payments."""
        settings = session.settings
        con = session.snapshot.con
        currencies = {r[0] for r in con.execute("SELECT DISTINCT currency FROM fx_rates").fetchall() if r[0]}
        currencies |= {"USD", settings.reporting_currency}
        row = con.execute(
            "SELECT list(DISTINCT country_code), list(DISTINCT payment_method), min(created_at) FROM transactions"
        ).fetchone()
        countries, methods, first = row if row else (None, None, None)
        seen_methods = {m for m in (methods or []) if m}
        ordered_methods = [m for m in PAYMENT_METHODS if m in seen_methods] or [m for m in PAYMENT_METHODS if m != "unknown"]
        earliest = first.date() if isinstance(first, datetime) else today - timedelta(days=MAX_DAYS)
        return cls(
            currencies=tuple(sorted(currencies)),
            countries=tuple(sorted(c for c in (countries or []) if c)),
            methods=tuple(ordered_methods),
            default_currency=settings.reporting_currency,
            timezone=settings.timezone,
            today=today,
            earliest=min(earliest, today),
        )

    def with_today(self, today: date) -> FilterOptions:
        return replace(self, today=today)


@dataclass(frozen=True)
class FilterState:
    """Validated filters. ``start``/``end`` are inclusive local days (period dashboards);
    ``hours`` is the live window (operations). ``currency`` None means every currency, shown in
    the reporting currency; a currency both restricts payments to it and shows amounts in it."""

    start: date
    end: date
    hours: int = 24
    currency: str | None = None
    country: str | None = None
    method: str | None = None

    def metric_filters(self) -> Filters:
        return Filters.of({"currency": self.currency, "country": self.country, "payment_method": self.method})

    def reporting_currency(self, default: str) -> str:
        return self.currency or default

    def period(self, timezone: str) -> Period:
        return Period(self.start, self.end + timedelta(days=1), "custom", timezone)

    def describe(self) -> dict[str, Any]:
        """For export metadata and the status line."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "hours": self.hours,
                "currency": self.currency or "all", "country": self.country or "all",
                "payment_method": self.method or "all"}


def default_state(dashboard: str, options: FilterOptions, hours: int = 24) -> FilterState:
    days = DEFAULT_DAYS.get(dashboard, 30)
    start = max(options.today - timedelta(days=days - 1), options.earliest)
    return validate({"start": start, "end": options.today, "hours": hours}, options)


def _as_day(value: Any, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise FilterError(f"{name} date is missing or not a date")


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> str | None:
    if value in (None, "", "all"):
        return None
    if not isinstance(value, str) or value not in allowed:
        raise FilterError(f"{name} {str(value)[:40]!r} is not one of the choices")
    return value


def validate(raw: Mapping[str, Any], options: FilterOptions) -> FilterState:
    """A :class:`FilterState` from widget values, or :class:`FilterError` saying what is wrong."""
    start = _as_day(raw.get("start"), "start")
    end = _as_day(raw.get("end"), "end")
    if end < start:
        raise FilterError("the end date is before the start date")
    if end > options.today:
        raise FilterError(f"the end date is after today ({options.today})")
    if (end - start).days + 1 > options.max_days:
        raise FilterError(f"a date range is at most {options.max_days} days")
    if start < options.today - timedelta(days=options.max_days * 5):
        raise FilterError("the start date is too far in the past")
    hours = raw.get("hours", 24)
    if isinstance(hours, bool) or not isinstance(hours, int) or hours not in options.hours_choices:
        raise FilterError(f"the live window must be one of {', '.join(map(str, options.hours_choices))} hours")
    return FilterState(
        start=start,
        end=end,
        hours=hours,
        currency=_choice(raw.get("currency"), options.currencies, "currency"),
        country=_choice(raw.get("country"), options.countries, "country"),
        method=_choice(raw.get("method"), options.methods, "payment method"),
    )
