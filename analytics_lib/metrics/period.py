"""Reporting periods in the business time zone: parse, previous, same period last year.

A period is a half-open range of local calendar days ``[start, end)`` in a time zone. Its
UTC bounds are the instants of local midnight, so a day in Istanbul is 21:00-21:00 UTC and a
month in a DST zone has the right number of hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KINDS = ("day", "week", "month", "quarter", "year", "custom")
MAX_DAYS = 366 * 20
#: periods live inside these years (payment data does; it also keeps the previous period and the
#: same period last year away from the calendar's edge, where date arithmetic overflows)
FIRST_YEAR, LAST_YEAR = 1900, 2199


class PeriodError(ValueError):
    """A period that cannot be parsed or makes no sense."""


def _year_in_range(year: int) -> int:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise PeriodError(f"year {year} is outside {FIRST_YEAR}-{LAST_YEAR}")
    return year


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    """Local calendar days ``[start, end)`` in ``timezone``; ``kind`` tells how to step it."""

    start: date
    end: date
    kind: str = "custom"
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PeriodError(f"period kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.end <= self.start:
            raise PeriodError(f"period end {self.end} must be after its start {self.start}")
        if (self.end - self.start).days > MAX_DAYS:
            raise PeriodError(f"period of {(self.end - self.start).days} days is longer than {MAX_DAYS}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise PeriodError(f"unknown time zone {self.timezone[:60]!r}") from None

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def day(cls, d: date, timezone: str = "UTC") -> Period:
        _year_in_range(d.year)
        return cls(d, d + timedelta(days=1), "day", timezone)

    @classmethod
    def week(cls, d: date, timezone: str = "UTC") -> Period:
        _year_in_range(d.year)
        monday = d - timedelta(days=d.weekday())
        return cls(monday, monday + timedelta(days=7), "week", timezone)

    @classmethod
    def month(cls, year: int, month: int, timezone: str = "UTC") -> Period:
        start = date(_year_in_range(year), month, 1)
        return cls(start, _add_months(start, 1), "month", timezone)

    @classmethod
    def quarter(cls, year: int, quarter: int, timezone: str = "UTC") -> Period:
        start = date(_year_in_range(year), 3 * (quarter - 1) + 1, 1)
        return cls(start, _add_months(start, 3), "quarter", timezone)

    @classmethod
    def year(cls, year: int, timezone: str = "UTC") -> Period:
        return cls(date(_year_in_range(year), 1, 1), date(year + 1, 1, 1), "year", timezone)

    @classmethod
    def between(cls, start: date | str, end: date | str, timezone: str = "UTC") -> Period:
        """Explicit dates; ``end`` is inclusive (the last day reported), as people say it."""
        s = _as_date(start, "start")
        e = _as_date(end, "end")
        _year_in_range(s.year), _year_in_range(e.year)
        if e < s:
            raise PeriodError(f"end {e} is before start {s}")
        return cls(s, e + timedelta(days=1), "custom", timezone)

    @classmethod
    def parse(cls, text: str, timezone: str = "UTC", today: date | None = None) -> Period:
        """``2024-05-01``, ``2024-W18``, ``2024-05``, ``2024-Q2``, ``2024``, or a relative name:
        today, yesterday, this-week, last-week, this-month (mtd), last-month, this-quarter,
        last-quarter, this-year (ytd), last-year, last-7-days, last-30-days, last-90-days."""
        if not isinstance(text, str) or not text.strip():
            raise PeriodError("period is empty")
        raw = text.strip().lower().replace("_", "-")
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise PeriodError(f"unknown time zone {timezone[:60]!r}") from None
        today = today or datetime.now(zone).date()
        if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", raw):
            return cls.day(_as_date(raw, "period"), timezone)
        if m := re.fullmatch(r"(\d{4})-w(\d{1,2})", raw):
            try:
                return cls.week(date.fromisocalendar(int(m[1]), int(m[2]), 1), timezone)
            except ValueError:
                raise PeriodError(f"no ISO week {m[2]} in {m[1]}") from None
        if m := re.fullmatch(r"(\d{4})-(\d{1,2})", raw):
            if not 1 <= int(m[2]) <= 12:
                raise PeriodError(f"no month {m[2]}")
            return cls.month(int(m[1]), int(m[2]), timezone)
        if m := re.fullmatch(r"(\d{4})-q([1-4])", raw):
            return cls.quarter(int(m[1]), int(m[2]), timezone)
        if m := re.fullmatch(r"(\d{4})", raw):
            return cls.year(int(m[1]), timezone)
        if m := re.fullmatch(r"last-(\d{1,4})-days", raw):
            n = int(m[1])
            if n < 1:
                raise PeriodError("last-N-days needs N >= 1")
            return cls(today - timedelta(days=n), today, "custom", timezone)
        relative = {
            "today": lambda: cls.day(today, timezone),
            "yesterday": lambda: cls.day(today - timedelta(days=1), timezone),
            "this-week": lambda: cls.week(today, timezone),
            "last-week": lambda: cls.week(today - timedelta(days=7), timezone),
            "this-month": lambda: cls.month(today.year, today.month, timezone),
            "mtd": lambda: cls(today.replace(day=1), today + timedelta(days=1), "custom", timezone),
            "last-month": lambda: cls.month(today.year, today.month, timezone).previous(),
            "this-quarter": lambda: cls.quarter(today.year, (today.month - 1) // 3 + 1, timezone),
            "last-quarter": lambda: cls.quarter(today.year, (today.month - 1) // 3 + 1, timezone).previous(),
            "this-year": lambda: cls.year(today.year, timezone),
            "ytd": lambda: cls(date(today.year, 1, 1), today + timedelta(days=1), "custom", timezone),
            "last-year": lambda: cls.year(today.year - 1, timezone),
        }
        if raw in relative:
            return relative[raw]()
        raise PeriodError(
            f"cannot read period {text!r}: use YYYY-MM-DD, YYYY-Www, YYYY-MM, YYYY-Qn, YYYY, "
            "or one of " + ", ".join([*relative, "last-N-days"])
        )

    # -- stepping ---------------------------------------------------------------------------
    def previous(self) -> Period:
        """The period just before: the previous calendar unit, or the same number of days."""
        if self.kind in ("month", "quarter", "year"):
            months = {"month": 1, "quarter": 3, "year": 12}[self.kind]
            return replace(self, start=_add_months(self.start, -months), end=self.start)
        length = self.end - self.start
        return replace(self, start=self.start - length, end=self.start)

    def same_period_last_year(self) -> Period:
        if self.kind == "week":  # the same ISO week number, so weekdays line up
            iso = self.start.isocalendar()
            try:
                monday = date.fromisocalendar(iso.year - 1, iso.week, 1)
            except ValueError:
                monday = date.fromisocalendar(iso.year - 1, 52, 1)
            return replace(self, start=monday, end=monday + timedelta(days=7))
        return replace(self, start=_shift_year(self.start), end=_shift_year(self.end))

    # -- bounds -----------------------------------------------------------------------------
    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def start_utc(self) -> datetime:
        return datetime.combine(self.start, time(0), self.tz).astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        return datetime.combine(self.end, time(0), self.tz).astimezone(UTC)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def label(self) -> str:
        if self.kind == "day":
            return self.start.isoformat()
        if self.kind == "week":
            iso = self.start.isocalendar()
            return f"{iso.year}-W{iso.week:02d}"
        if self.kind == "month":
            return f"{self.start:%Y-%m}"
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        if self.kind == "year":
            return f"{self.start.year}"
        return f"{self.start.isoformat()}..{self.last_day.isoformat()}"

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.last_day.isoformat(), "kind": self.kind,
                "timezone": self.timezone, "label": self.label}

    def months(self) -> list[date]:
        """First days of the calendar months the period touches."""
        out, current = [], self.start.replace(day=1)
        while current < self.end:
            out.append(current)
            current = _add_months(current, 1)
        return out


def _shift_year(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year - 1, day=28)


def _as_date(value: date | str, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise PeriodError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from None
