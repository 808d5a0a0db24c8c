"""The resident scheduler (``schedule serve``): APScheduler 3 wakes up at each job's fire times
and hands the job to the same :class:`~analytics_lib.scheduling.dispatch.Dispatcher` that
``run-due`` uses, so locks, catch-up rules, retries, history and notifications are identical.

APScheduler only decides *when to wake up*; what a cron line means is decided by
:mod:`analytics_lib.scheduling.cron` (croniter) through :class:`CroniterTrigger`. APScheduler's
own ``CronTrigger.from_crontab`` is not used: it counts Monday as day 0, so ``1-5`` would fire
Tuesday to Saturday, and it requires both day fields to match where cron accepts either.

At start (and every minute after, in case a wake-up was lost) the scheduler runs a ``run-due``
pass, which catches up what was missed while it was down. It re-reads schedules.yaml and
audiences.yaml when they change; a change that does not validate is reported and the running
configuration is kept. SIGTERM or SIGINT stop it: running jobs are stopped, recorded as
interrupted and run again by the next scheduler.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from analytics_lib.scheduling.config import ScheduleConfigError, SchedulingConfig
from analytics_lib.scheduling.cron import CronSchedule
from analytics_lib.scheduling.dispatch import Dispatcher

logger = logging.getLogger("analytics_lib.scheduling.serve")
SWEEP_JOB = "_sweep"
#: a fire time this close to now counts as now (APScheduler can wake a few ms early)
_EARLY = timedelta(seconds=1)


class CroniterTrigger(BaseTrigger):
    """An APScheduler trigger whose fire times are :class:`CronSchedule`'s (croniter semantics,
    wall-clock time in the job's zone)."""

    def __init__(self, schedule: CronSchedule):
        self.schedule = schedule

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            return self.schedule.next_after(previous_fire_time)
        return self.schedule.next_after(now - timedelta(microseconds=1))

    def __str__(self) -> str:
        return f"cron[{self.schedule.describe()}]"

    def __repr__(self) -> str:
        return f"<CroniterTrigger {self.schedule.expression!r} {self.schedule.timezone}>"


class ResidentScheduler:
    """Owns one APScheduler instance and the dispatcher it drives."""

    def __init__(self, load: Callable[[], SchedulingConfig], dispatcher_factory: Callable[[SchedulingConfig], Dispatcher],
                 sweep_seconds: float = 60):
        self._load = load
        self._factory = dispatcher_factory
        self.config = load()
        self.dispatcher = dispatcher_factory(self.config)
        self._mtimes = self._config_mtimes()
        self._lock = threading.Lock()
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self.sweep_seconds = sweep_seconds
        self._stopped = threading.Event()
        self._done = threading.Event()

    def _config_mtimes(self) -> tuple[float, float]:
        def mtime(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return 0.0

        return mtime(self.config.schedules_path), mtime(self.config.audiences_path)

    def _install(self) -> None:
        for job in list(self.scheduler.get_jobs()):
            if job.id != SWEEP_JOB:
                job.remove()
        for job in self.config.jobs.values():
            if job.enabled:
                self.scheduler.add_job(self._fire, CroniterTrigger(job.schedule), args=[job.name], id=job.name,
                                       name=job.name, replace_existing=True)

    def _fire(self, name: str) -> None:
        with self._lock:
            dispatcher = self.dispatcher
        dispatcher.run_due(datetime.now(UTC) + _EARLY, only=[name])

    def _sweep(self) -> None:
        """Reload changed configuration, then a run-due pass (catch-up, recovery)."""
        if self._config_mtimes() != self._mtimes:
            try:
                config = self._load()
            except ScheduleConfigError as exc:
                logger.error("schedules not reloaded, keeping the running ones: %s", exc)
                self._mtimes = self._config_mtimes()
            else:
                with self._lock:
                    self.config = config
                    self.dispatcher = self._factory(config)
                    self._mtimes = self._config_mtimes()
                    self._install()
                logger.warning("schedules reloaded: %s", ", ".join(config.jobs))
        with self._lock:
            dispatcher = self.dispatcher
        dispatcher.run_due(datetime.now(UTC))

    def next_fire_times(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self.scheduler.get_jobs() if job.id != SWEEP_JOB}

    def start(self) -> None:
        self._install()
        self.scheduler.add_job(self._sweep, IntervalTrigger(seconds=self.sweep_seconds), id=SWEEP_JOB,
                               name="catch-up and reload", next_run_time=datetime.now(UTC), replace_existing=True)
        self.scheduler.start()
        for name, when in sorted(self.next_fire_times().items()):
            job = self.config.jobs[name]
            logger.warning("%s: next run %s", name, "-" if when is None else job.schedule.local(when).isoformat())

    def stop(self, *_: Any) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        logger.warning("stopping: running jobs are stopped and will run again at the next start")
        try:
            self.dispatcher.stop()
            self.scheduler.shutdown(wait=True)
        finally:
            self._done.set()

    def wait(self) -> None:
        while not self._done.wait(1.0):
            pass


def serve(load: Callable[[], SchedulingConfig], dispatcher_factory: Callable[[SchedulingConfig], Dispatcher],
          ready: Callable[[ResidentScheduler], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    resident = ResidentScheduler(load, dispatcher_factory)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=resident.stop, name="stop").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    resident.start()
    if ready is not None:
        ready(resident)
    resident.wait()
