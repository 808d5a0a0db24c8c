"""What is due: the catch-up and misfire rules, as one pure function of a job, its cursor (the
latest fire time already dealt with) and the time now.

- **On time.** The latest fire time at or before now is after the cursor and at most
  ``misfire_grace`` old: run it.
- **Missed while down.** Several fire times passed since the cursor: run once, for the latest of
  them (a scheduler down for three days runs the daily report once, for the latest day, not three
  times). With ``catch_up: true`` (the default) this happens however late it is; with
  ``catch_up: false`` a fire time older than ``misfire_grace`` is recorded as skipped instead.
- **New job.** A job with no cursor (first seen, or new in schedules.yaml) runs its latest fire
  time only if that is within ``misfire_grace``; otherwise its cursor is set and it waits for its
  next fire time, so adding a job (or a scheduler) never replays last quarter's board report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from analytics_lib.scheduling.cron import CronError

if TYPE_CHECKING:
    from analytics_lib.scheduling.config import Job

#: counting missed fire times stops here (an every-minute job down for a month)
MAX_COUNTED = 1000


@dataclass(frozen=True)
class Decision:
    job: str
    action: str  # run | wait | skip | baseline
    fire_time: datetime | None
    trigger: str | None = None  # on-time | catch-up
    missed: int = 0  # earlier fire times folded into this run
    reason: str = ""


def count_between(job: Job, after: datetime, until: datetime, limit: int = MAX_COUNTED) -> int:
    """Fire times in ``(after, until)`` (both excluded), at most ``limit``."""
    schedule, n, current = job.schedule, 0, after
    while n < limit:
        nxt = schedule.next_after(current)
        if nxt >= until:
            break
        n += 1
        current = nxt
    return n


def decide(job: Job, cursor: datetime | None, now: datetime) -> Decision:
    try:
        latest = job.schedule.previous_at_or_before(now)
    except CronError:
        return Decision(job.name, "wait", None, reason="has not fired yet")
    if cursor is not None and latest <= cursor:
        return Decision(job.name, "wait", latest, reason="nothing due since its last run")
    late = now - latest
    grace = timedelta(seconds=job.misfire_grace)
    if cursor is None:
        if late <= grace:
            return Decision(job.name, "run", latest, "on-time", reason="first run of a new job")
        return Decision(job.name, "baseline", latest,
                        reason=f"new job; its latest fire time is {_ago(late)} old (grace {_ago(grace)}), "
                               "so it starts at its next one")
    missed = count_between(job, cursor, latest)
    if late <= grace:
        trigger = "on-time" if missed == 0 else "catch-up"
        return Decision(job.name, "run", latest, trigger, missed,
                        reason="due" if missed == 0 else f"due; {_n(missed)} earlier missed fire time(s) folded in")
    if job.catch_up:
        return Decision(job.name, "run", latest, "catch-up", missed,
                        reason=f"missed {_ago(late)} ago; running it once"
                               + (f" ({_n(missed)} earlier missed fire time(s) folded in)" if missed else ""))
    return Decision(job.name, "skip", latest, "catch-up", missed,
                    reason=f"missed by {_ago(late)} (more than misfire_grace {_ago(grace)}, catch_up is false)")


def _n(count: int) -> str:
    return f"{count}+" if count >= MAX_COUNTED else str(count)


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
