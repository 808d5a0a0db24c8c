"""Cron lines with standard cron semantics, evaluated in a job's own time zone (croniter).

What "standard" means here, and where other libraries differ:

- Five fields, ``minute hour day-of-month month day-of-week``, or a nickname (``@hourly``,
  ``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``). Day of week
  counts Sunday as 0 (and 7), Monday as 1: ``1-5`` is Monday to Friday. APScheduler's
  ``CronTrigger.from_crontab`` counts Monday as 0 and fires ``1-5`` on Tuesday to Saturday, so it
  is never used to read a cron line (``analytics_lib.scheduling.serve`` wraps this module instead).
- When both day-of-month and day-of-week are restricted, a day matching *either* fires (vixie
  cron); APScheduler would require both.
- Fire times are wall-clock times in the job's time zone. A wall time skipped by a daylight-saving
  change (02:30 on a spring-forward night) fires once, just after the change; a wall time that
  occurs twice (fall-back) fires once, at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: wall-clock margin around a search: larger than any daylight-saving shift
_MARGIN = timedelta(hours=3)
#: a cron line that does not fire within this span is refused (e.g. ``0 9 31 2 *``)
_HORIZON_YEARS = 5


class CronError(ValueError):
    """A cron line or time zone that cannot be used."""


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CronError(f"{name!r} is not an IANA time zone (e.g. Europe/Istanbul)") from exc


def normalise(expression: str) -> str:
    """The five-field form of a cron line, or :class:`CronError` saying what is wrong."""
    text = " ".join(str(expression).split())
    if text.startswith("@"):
        if text.lower() not in NICKNAMES:
            raise CronError(f"{text!r} is not a cron nickname; use one of {', '.join(NICKNAMES)} "
                            "or five fields (minute hour day-of-month month day-of-week)")
        return NICKNAMES[text.lower()]
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise CronError(f"{text!r} has {len(fields)} field(s); a cron line has five: "
                        "minute hour day-of-month month day-of-week")
    if not croniter.is_valid(text):
        raise CronError(f"{text!r} is not a valid cron line (minute 0-59, hour 0-23, day 1-31, "
                        "month 1-12 or jan-dec, day of week 0-7 or sun-sat)")
    return text


@dataclass(frozen=True)
class CronSchedule:
    """A cron line in a time zone. All datetimes in and out are timezone-aware."""

    expression: str
    timezone: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "expression", normalise(self.expression))
        parse_timezone(self.timezone)
        try:
            start = datetime(2001, 1, 1, tzinfo=UTC)
            self.next_after(start, limit=start + timedelta(days=366 * _HORIZON_YEARS))
        except CronError as exc:
            raise CronError(f"{self.expression!r} never fires") from exc

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _resolve(self, wall: datetime) -> datetime:
        """The instant a wall-clock fire time means: the first occurrence of an ambiguous time;
        for a time skipped by a DST change, the same distance after the change."""
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def _walls(self, start_wall: datetime, forward: bool) -> Iterator[datetime]:
        it = croniter(self.expression, start_wall, day_or=True)
        while True:
            try:
                yield it.get_next(datetime) if forward else it.get_prev(datetime)
            except CroniterBadDateError as exc:
                raise CronError(f"{self.expression!r} has no fire time near {start_wall:%Y-%m-%d}") from exc

    def _wall(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("a timezone-aware datetime is needed")
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def next_after(self, moment: datetime, limit: datetime | None = None) -> datetime:
        """The first fire time strictly after ``moment`` (UTC)."""
        moment = moment.astimezone(UTC)
        for wall in self._walls(self._wall(moment) - _MARGIN, forward=True):
            instant = self._resolve(wall)
            if instant > moment:
                return instant
            if limit is not None and instant > limit:
                break
        raise CronError(f"{self.expression!r} does not fire after {moment:%Y-%m-%d}")

    def previous_at_or_before(self, moment: datetime) -> datetime:
        """The latest fire time at or before ``moment`` (UTC)."""
        moment = moment.astimezone(UTC)
        best: datetime | None = None
        for wall in self._walls(self._wall(moment) + _MARGIN, forward=False):
            instant = self._resolve(wall)
            if instant <= moment and (best is None or instant > best):
                best = instant
            if best is not None and instant < best - 2 * _MARGIN:
                return best
            if instant < moment - timedelta(days=366 * _HORIZON_YEARS):
                break
        if best is None:
            raise CronError(f"{self.expression!r} never fired before {moment:%Y-%m-%d}")
        return best

    def fire_times(self, after: datetime, until: datetime) -> list[datetime]:
        """Fire times in ``(after, until]``, oldest first."""
        out: list[datetime] = []
        current = after
        while True:
            nxt = self.next_after(current)
            if nxt > until:
                return out
            out.append(nxt)
            current = nxt

    def local(self, moment: datetime) -> datetime:
        """``moment`` as a wall-clock time in this schedule's zone."""
        return moment.astimezone(self.zone)

    def describe(self) -> str:
        return f"{self.expression} ({self.timezone})"
