"""Cron semantics: standard cron (croniter), in each job's own time zone, including the weekday
trap APScheduler's ``from_crontab`` falls into, day-of-month OR day-of-week, daylight-saving
gaps and repeats, and the report period a fire time implies."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from analytics_lib.scheduling.cron import CronError, CronSchedule, normalise
from analytics_lib.scheduling.serve import CroniterTrigger

IST = ZoneInfo("Europe/Istanbul")


def local_fires(expr: str, tz: str, start: datetime, n: int) -> list[datetime]:
    schedule, out, t = CronSchedule(expr, tz), [], start
    for _ in range(n):
        t = schedule.next_after(t)
        out.append(t.astimezone(ZoneInfo(tz)))
    return out


def test_weekday_range_1_to_5_is_monday_to_friday():
    fires = local_fires("0 9 * * 1-5", "Europe/Istanbul", datetime(2026, 10, 31, tzinfo=UTC), 10)
    assert [f.strftime("%a") for f in fires] == ["Mon", "Tue", "Wed", "Thu", "Fri"] * 2
    assert all(f.hour == 9 and f.minute == 0 for f in fires)
    assert fires[0].date() == date(2026, 11, 2)


def test_monday_only_in_every_spelling():
    for expr in ("0 9 * * 1", "0 9 * * MON", "0 9 * * mon"):
        fires = local_fires(expr, "Europe/Istanbul", datetime(2026, 10, 1, tzinfo=UTC), 6)
        assert {f.strftime("%a") for f in fires} == {"Mon"}, expr
        assert [f.day for f in fires] == [5, 12, 19, 26, 2, 9]


def test_sunday_is_0_and_7_and_saturday_is_6():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    assert local_fires("0 5 * * 0", "UTC", start, 2) == local_fires("0 5 * * 7", "UTC", start, 2)
    assert {f.strftime("%a") for f in local_fires("0 5 * * 0", "UTC", start, 3)} == {"Sun"}
    assert {f.strftime("%a") for f in local_fires("0 5 * * 6", "UTC", start, 3)} == {"Sat"}
    assert {f.strftime("%a") for f in local_fires("0 5 * * 6,0", "UTC", start, 4)} == {"Sat", "Sun"}


def test_apscheduler_from_crontab_would_shift_weekdays_and_our_trigger_does_not():
    """The measured trap: APScheduler counts Monday as 0, so `1-5` fires Tuesday to Saturday."""
    from apscheduler.triggers.cron import CronTrigger

    def five(trigger) -> list[str]:
        out, prev, now = [], None, datetime(2026, 11, 1, tzinfo=IST)
        for _ in range(5):
            nxt = trigger.get_next_fire_time(prev, now)
            out.append(nxt.astimezone(IST).strftime("%a"))
            prev = now = nxt
        return out

    assert five(CronTrigger.from_crontab("0 9 * * 1-5", timezone=IST)) == ["Tue", "Wed", "Thu", "Fri", "Sat"]
    assert five(CroniterTrigger(CronSchedule("0 9 * * 1-5", "Europe/Istanbul"))) == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert five(CroniterTrigger(CronSchedule("0 9 * * 1", "Europe/Istanbul"))) == ["Mon"] * 5


def test_day_of_month_or_day_of_week_like_cron():
    """Both restricted: a day matching either fires (cron), not both (APScheduler)."""
    fires = local_fires("0 10 1 * 1", "UTC", datetime(2026, 10, 31, tzinfo=UTC), 6)
    assert [f.date() for f in fires] == [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16),
                                         date(2026, 11, 23), date(2026, 11, 30)]


def test_the_platform_schedules_fire_when_the_issue_says():
    start = datetime(2026, 11, 26, tzinfo=UTC)
    daily = local_fires("0 8 * * *", "Europe/Istanbul", start, 2)
    assert [f.isoformat() for f in daily] == ["2026-11-26T08:00:00+03:00", "2026-11-27T08:00:00+03:00"]
    assert daily[0].astimezone(UTC).hour == 5
    monthly = local_fires("0 10 1 * *", "Europe/Istanbul", start, 2)
    assert [f.isoformat() for f in monthly] == ["2026-12-01T10:00:00+03:00", "2027-01-01T10:00:00+03:00"]
    board = local_fires("0 10 1 1,4,7,10 *", "Europe/Istanbul", start, 5)
    assert [f.date() for f in board] == [date(2027, 1, 1), date(2027, 4, 1), date(2027, 7, 1), date(2027, 10, 1),
                                         date(2028, 1, 1)]
    assert all(f.hour == 10 for f in board)


def test_next_fire_times_are_in_each_jobs_zone():
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ny = CronSchedule("0 8 * * *", "America/New_York")
    # 08:00 in New York is 13:00 UTC in winter and 12:00 UTC after the 8 March 2026 change
    assert ny.next_after(datetime(2026, 3, 6, 14, tzinfo=UTC)) == datetime(2026, 3, 7, 13, tzinfo=UTC)
    assert ny.next_after(datetime(2026, 3, 8, 0, tzinfo=UTC)) == datetime(2026, 3, 8, 12, tzinfo=UTC)
    assert CronSchedule("0 8 * * *", "UTC").next_after(start) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert CronSchedule("0 8 * * *", "Asia/Tokyo").next_after(start) == datetime(2026, 3, 1, 23, tzinfo=UTC)


def test_daylight_saving_gap_and_repeat_fire_once():
    london = CronSchedule("30 1 * * *", "Europe/London")
    # 29 March 2026: 01:00 -> 02:00; 01:30 does not exist and fires at 02:30 BST (01:30 UTC)
    spring = london.fire_times(datetime(2026, 3, 28, 2, tzinfo=UTC), datetime(2026, 3, 30, 2, tzinfo=UTC))
    assert spring == [datetime(2026, 3, 29, 1, 30, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
    # 25 October 2026: 02:00 -> 01:00; 01:30 happens twice and fires once, the first time
    autumn = london.fire_times(datetime(2026, 10, 24, 2, tzinfo=UTC), datetime(2026, 10, 26, 2, tzinfo=UTC))
    assert autumn == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]
    half_hourly = CronSchedule("*/30 * * * *", "Europe/London")
    fires = half_hourly.fire_times(datetime(2026, 10, 24, 23, 50, tzinfo=UTC), datetime(2026, 10, 25, 2, 40, tzinfo=UTC))
    assert len(fires) == len(set(fires)) and fires == sorted(fires)


def test_previous_fire_time_includes_now():
    weekly = CronSchedule("0 9 * * 1", "Europe/Istanbul")
    monday_9 = datetime(2026, 11, 2, 6, tzinfo=UTC)
    assert weekly.previous_at_or_before(monday_9) == monday_9
    assert weekly.previous_at_or_before(monday_9 + timedelta(minutes=5)) == monday_9
    assert weekly.previous_at_or_before(monday_9 - timedelta(seconds=1)) == monday_9 - timedelta(days=7)
    assert weekly.next_after(monday_9) == monday_9 + timedelta(days=7)


@pytest.mark.parametrize("expr, expected", [("@daily", "0 0 * * *"), ("@weekly", "0 0 * * 0"),
                                            ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
                                            ("  0   9 * *   1 ", "0 9 * * 1")])
def test_nicknames_and_spacing(expr, expected):
    assert normalise(expr) == expected


@pytest.mark.parametrize("expr, message", [
    ("0 9 * *", "has 4 field(s)"), ("0 9 * * 1 2026", "has 6 field(s)"), ("60 9 * * *", "not a valid cron line"),
    ("0 9 * * 8", "not a valid cron line"), ("0 9 0 * *", "not a valid cron line"), ("@reboot", "not a cron nickname"),
    ("0 9 30 2 *", "never fires"), ("", "has 0 field(s)"),
])
def test_bad_cron_lines(expr, message):
    with pytest.raises(CronError, match=re.escape(message)):
        CronSchedule(expr, "UTC")


def test_unknown_time_zone():
    with pytest.raises(CronError, match="'Mars/Olympus' is not an IANA time zone"):
        CronSchedule("0 9 * * 1", "Mars/Olympus")


@pytest.mark.parametrize("fire_local, period", [
    (datetime(2026, 11, 2, 9, 0), ("2026-10-26", "2026-11-01")),      # Monday 09:00: the previous Mon-Sun
    (datetime(2027, 1, 4, 9, 0), ("2026-12-28", "2027-01-03")),       # across a year end
])
def test_a_weekly_fire_time_implies_the_previous_monday_to_sunday(fire_local, period):
    """The report's period comes from the fire time in the job's zone (what run-due passes as now)."""
    from analytics_lib.reporting.context import resolve_period

    fire = fire_local.replace(tzinfo=IST).astimezone(UTC)
    resolved = resolve_period("last-week", None, None, "Europe/Istanbul", fire)
    assert (resolved.start.isoformat(), resolved.last_day.isoformat()) == period
    # 00:30 on Monday in Istanbul is still Sunday in UTC: the zone decides the week
    early = datetime(2026, 11, 2, 0, 30, tzinfo=IST).astimezone(UTC)
    assert resolve_period("last-week", None, None, "Europe/Istanbul", early).start.isoformat() == "2026-10-26"
