"""Running what is due: per job, take its lock, recover runs a dead scheduler left behind, decide
(:mod:`~analytics_lib.scheduling.due`), run attempts in job processes with a timeout and retries
with backoff, distribute the report, record everything in the history and tell the failure
contacts when it did not work.

The same :class:`Dispatcher` serves ``schedule run-due`` (one pass, for cron or an orchestrator)
and ``schedule serve`` (APScheduler calls it at each job's fire times), so the rules are the same
however schedules are run.

A job's cursor moves to a fire time only when the run for it has ended (succeeded, failed after
its retries, or skipped). A run cut short because the scheduler itself stopped is marked
``interrupted`` when the next scheduler finds it and is run again, at most ``retries + 1`` times.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics_lib.config import PROJECT_ROOT, ConfigError
from analytics_lib.scheduling.config import Job, SchedulingConfig
from analytics_lib.scheduling.distribution import (
    DeliveryError,
    FailureNotice,
    ReportDelivery,
    get_target,
)
from analytics_lib.scheduling.due import Decision, decide
from analytics_lib.scheduling.history import FAILED_STATUSES, History
from analytics_lib.scheduling.jobs import JobResult
from analytics_lib.scheduling.jobs.base import one_line
from analytics_lib.scheduling.locks import JobLock
from analytics_lib.scheduling.process import terminate_tree
from analytics_lib.scheduling.state import StateDir
from analytics_lib.scheduling.worker import settings_to_dict

logger = logging.getLogger("analytics_lib.scheduling")

#: the longest wait between two attempts, whatever the backoff doubles to
MAX_BACKOFF_S = 3600
_RUN_LINE = re.compile(r"\(run (\d{8}T\d{6}Z-[0-9a-f]{6})\)")


def backoff_delay(base: float, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): base, 2 x base, 4 x ..."""
    return float(min(MAX_BACKOFF_S, base * 2 ** (attempt - 1)))


@dataclass
class Outcome:
    """What one job did in one pass."""

    job: str
    status: str  # succeeded | failed | delivery_failed | interrupted | skipped | locked
    fire_time: datetime | None = None
    trigger: str | None = None
    history_id: int | None = None
    attempts: int = 0
    duration_s: float = 0.0
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


class Dispatcher:
    def __init__(self, config: SchedulingConfig, state: StateDir | None = None,
                 say: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None):
        self.config = config
        self.settings = config.settings
        self.state = state or StateDir.for_settings(self.settings)
        self.history = History(self.state.history_path)
        self.say = say or logger.info
        self.warn = warn or logger.warning
        self._stopping = threading.Event()
        self._active: dict[str, subprocess.Popen[bytes]] = {}
        self._active_guard = threading.Lock()

    # -- one pass -------------------------------------------------------------------------------
    def plan(self, now: datetime, only: Iterable[str] | None = None) -> list[Decision]:
        """What a pass at ``now`` would do (no locks taken, nothing run or recorded)."""
        return [decide(job, self.history.cursor(job.name), now) for job in self._jobs(only)]

    def run_due(self, now: datetime | None = None, only: Iterable[str] | None = None) -> list[Outcome]:
        """Run every due job once (oldest fire time first); return what happened."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        jobs = self._jobs(only)
        order = []
        for job in jobs:
            try:
                latest = job.schedule.previous_at_or_before(now)
            except Exception:  # noqa: BLE001 - a job that never fired sorts last
                latest = datetime.max.replace(tzinfo=UTC)
            order.append((latest, job.name, job))
        outcomes = []
        for _, _, job in sorted(order, key=lambda t: (t[0], t[1])):
            if self._stopping.is_set():
                break
            outcome = self.run_if_due(job, now)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def run_if_due(self, job: Job, now: datetime) -> Outcome | None:
        if not job.enabled:
            self.say(f"{job.name}: disabled in {self.config.schedules_path.name}; not run")
            return None
        lock = JobLock(self.state.locks, job.name)
        if not lock.acquire():
            self.say(f"{job.name}: already running ({lock.holder()}); not started again")
            return Outcome(job.name, "locked", error=f"already running ({lock.holder()})")
        try:
            self._recover(job)
            decision = decide(job, self.history.cursor(job.name), now)
            if decision.action == "wait":
                return None
            assert decision.fire_time is not None
            if decision.action == "baseline":
                self.history.set_cursor(job.name, decision.fire_time)
                self.say(f"{job.name}: {decision.reason}")
                return None
            if decision.action == "skip":
                row = self.history.record_skip(job.name, job.kind, decision.fire_time, decision.reason)
                self.history.set_cursor(job.name, decision.fire_time)
                self.say(f"{job.name}: skipped {self._local(job, decision.fire_time)}: {decision.reason}")
                return Outcome(job.name, "skipped", decision.fire_time, decision.trigger, row, error=decision.reason)
            interrupted = self.history.interrupted_count(job.name, decision.fire_time)
            if interrupted >= job.retries + 1:
                reason = f"gave up after {interrupted} interrupted run(s) for this fire time"
                row = self.history.record_skip(job.name, job.kind, decision.fire_time, reason)
                self.history.set_cursor(job.name, decision.fire_time)
                self.warn(f"{job.name}: {reason}")
                return Outcome(job.name, "skipped", decision.fire_time, decision.trigger, row, error=reason)
            outcome = self._run(job, decision)
            if outcome.status != "interrupted":
                self.history.set_cursor(job.name, decision.fire_time)
            return outcome
        finally:
            lock.release()

    def stop(self) -> None:
        """Stop running attempts (their runs are recorded as interrupted and run again later)."""
        self._stopping.set()
        with self._active_guard:
            procs = list(self._active.values())
        for proc in procs:
            terminate_tree(proc.pid, grace=5.0)

    # -- internals ------------------------------------------------------------------------------
    def _jobs(self, only: Iterable[str] | None) -> list[Job]:
        if only:
            wanted = list(only)
            return [self.config.job(name) for name in wanted]
        return [j for j in self.config.jobs.values() if j.enabled]

    @staticmethod
    def _local(job: Job, moment: datetime | None) -> str:
        return "-" if moment is None else job.schedule.local(moment).strftime("%Y-%m-%d %H:%M %Z")

    def _recover(self, job: Job) -> None:
        """Rows left 'running' by a scheduler that died (we hold the lock, so nobody runs them)."""
        for row in self.history.running(job.name):
            error = f"the scheduler (pid {row.pid} on {row.host}) stopped during the run"
            self.history.update(row.id, status="interrupted", error=error,
                                finished_at=datetime.now(UTC).isoformat(timespec="seconds"))
            self._close_abandoned_run(row.detail.get("log"), error)
            self.warn(f"{job.name}: run {row.id} for {self._local(job, row.fire_time)} was interrupted: {error}")
            self._notify(job, "interrupted", error, row.id, row.fire_time, row.attempts, row.detail)

    def _run(self, job: Job, decision: Decision) -> Outcome:
        fire = decision.fire_time
        assert fire is not None
        row = self.history.start(job.name, job.kind, fire, str(decision.trigger),
                                 detail={"missed": decision.missed} if decision.missed else {})
        self.say(f"{job.name}: running {job.describe()} for {self._local(job, fire)} ({decision.trigger}"
                 + (f", {decision.missed} earlier fire time(s) folded in" if decision.missed else "") + ")")
        started = time.monotonic()
        try:
            result, attempts = self._attempts(job, fire, row)
        except Exception as exc:  # noqa: BLE001 - the scheduler's own trouble (disk full, ...) is recorded too
            logger.exception("%s: could not run", job.name)
            result, attempts = JobResult("failed", f"the scheduler could not run the job: {one_line(exc)}"), 1
        status = "succeeded" if result.ok else ("interrupted" if self._stopping.is_set() else "failed")
        error = result.error
        detail: dict[str, Any] = dict(result.detail)
        if result.ok and job.kind == "report" and job.audience:
            try:
                deliveries, delivery_error = self._deliver(job, result)
            except Exception as exc:  # noqa: BLE001 - e.g. the run folder vanished; recorded, not raised
                logger.exception("%s: distribution failed", job.name)
                deliveries, delivery_error = [], f"distribution failed: {one_line(exc)}"
            detail["deliveries"] = deliveries
            if delivery_error:
                status, error = "delivery_failed", delivery_error
        duration = time.monotonic() - started
        self.history.finish(row, status, attempts=attempts, duration_s=duration, error=error, detail=detail)
        if status in FAILED_STATUSES:
            self.warn(f"{job.name}: report not delivered: {error}" if status == "delivery_failed"
                      else f"{job.name}: {status} after {attempts} attempt(s): {error}")
            self._notify(job, status, error or status, row, fire, attempts, {**self.history.get(row).detail})
        else:
            self.say(f"{job.name}: succeeded in {duration:.1f} s" + self._summary(detail))
        return Outcome(job.name, status, fire, decision.trigger, row, attempts, round(duration, 2), error,
                       self.history.get(row).detail)

    @staticmethod
    def _summary(detail: dict[str, Any]) -> str:
        parts = []
        if detail.get("run_id"):
            parts.append(f"run {detail['run_id']}, {detail.get('period')}")
        for d in detail.get("deliveries", []):
            parts.append(f"{d['target']} to {d['audience']}: {d['status']}")
        return f" ({'; '.join(parts)})" if parts else ""

    def _attempts(self, job: Job, fire: datetime, row: int) -> tuple[JobResult, int]:
        result = JobResult("failed", "not started")
        attempt = 0
        for attempt in range(1, job.retries + 2):
            if self._stopping.is_set():
                return JobResult("failed", "the scheduler is stopping"), max(attempt - 1, 1)
            self.history.update(row, attempts=attempt)
            result = self._attempt(job, fire, row, attempt)
            if result.ok or result.permanent or attempt == job.retries + 1:
                break
            delay = backoff_delay(job.retry_backoff, attempt)
            self.warn(f"{job.name}: attempt {attempt} failed ({result.error}); retrying in {delay:g} s")
            self.history.update(row, error=f"attempt {attempt}: {result.error}")
            if self._stopping.wait(delay):
                break
        return result, attempt

    def _attempt(self, job: Job, fire: datetime, row: int, attempt: int) -> JobResult:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        base = self.state.work / f"{job.name}-{row}-{attempt}"
        request, result_path = base.with_suffix(".request.json"), base.with_suffix(".result.json")
        request.write_text(json.dumps({"job": job.model_dump(mode="json"), "fire_time": fire.isoformat(),
                                       "settings": settings_to_dict(self.settings), "parent_pid": os.getpid()}),
                           encoding="utf-8")
        log_path = self.state.log_path(job.name, stamp, attempt)
        env = {**os.environ, "PAYMENT_ANALYTICS_WAREHOUSE": self.settings.warehouse,
               "PAYMENT_ANALYTICS_OUTPUTS": str(self.settings.outputs)}
        timed_out = False
        try:
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen([sys.executable, "-m", "analytics_lib.scheduling.worker", str(request),
                                         str(result_path)], cwd=PROJECT_ROOT, env=env, stdout=log_file,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
                with self._active_guard:
                    self._active[job.name] = proc
                self.history.update(row, detail={"log": str(log_path), "worker_pid": proc.pid})
                try:
                    returncode = proc.wait(timeout=job.hard_timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    terminate_tree(proc.pid, grace=5.0)
                    returncode = proc.wait()
                finally:
                    with self._active_guard:
                        self._active.pop(job.name, None)
            if timed_out:
                result = JobResult("failed", f"timed out after {job.hard_timeout:g} s (timeout {job.timeout:g} s); "
                                             "the job's processes were stopped")
            elif result_path.is_file():
                result = JobResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
            else:
                result = JobResult("failed", self._died(returncode, log_path))
        finally:
            request.unlink(missing_ok=True)
            result_path.unlink(missing_ok=True)
        result.detail = {**result.detail, "log": str(log_path)}
        if job.kind == "report" and not result.ok and result.detail.get("run_status") is None:
            result.detail.update(self._close_abandoned_run(str(log_path), result.error or "stopped"))
        return result

    def _died(self, returncode: int, log_path: Path) -> str:
        import signal

        if self._stopping.is_set():
            return "the scheduler stopped the job (shutting down)"
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            how = f"was killed by {name}"
        else:
            how = f"exited with {returncode}"
        tail = ""
        try:
            lines = [ln for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            tail = f"; last output: {lines[-1][:300]}" if lines else ""
        except OSError:
            pass
        return f"the job process {how} before reporting a result{tail}"

    def _close_abandoned_run(self, log_path: str | None, reason: str) -> dict[str, Any]:
        """Mark the report run an attempt left 'running' (its process was stopped) as failed, so
        the portal shows it failed; latest.json never pointed at it."""
        from analytics_lib.runner.portal import write_portal
        from analytics_lib.runner.runs import RunError, find_run

        if not log_path:
            return {}
        try:
            text = Path(log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return {}
        found = _RUN_LINE.findall(text)
        if not found:
            return {}
        try:
            record = find_run(self.settings.outputs, found[-1])
        except RunError:
            return {}
        if record.status == "running":
            record.status = "failed"
            record.error = f"stopped by the scheduler: {reason}"[:1000]
            record.finished_at = datetime.now(UTC).isoformat()
            try:
                record.save()
            except OSError as exc:  # e.g. the outputs disk is full: the attempt's own error says more
                logger.warning("could not mark report run %s failed: %s", record.run_id, one_line(exc))
                record.status = "running"
            with contextlib.suppress(OSError):
                write_portal(self.settings.outputs)
        return {"run_id": record.run_id, "folder": record.folder, "period": record.period_label,
                "run_status": record.status}

    def _retrying(self, job: Job, what: str, action: Callable[[], dict[str, Any]],
                  attempts: int | None = None, backoff: float | None = None) -> tuple[bool, dict[str, Any], int]:
        """Call ``action`` until it succeeds, a permanent error, or ``attempts`` tries."""
        attempts = attempts or job.retries + 1
        backoff = job.retry_backoff if backoff is None else backoff
        error = ""
        for n in range(1, attempts + 1):
            try:
                return True, action(), n
            except DeliveryError as exc:
                error = str(exc)
                if not exc.retryable:
                    return False, {"error": error}, n
            except ConfigError as exc:
                return False, {"error": str(exc)}, n
            except Exception as exc:  # noqa: BLE001 - a target's bug must not lose the run's record
                logger.exception("%s failed", what)
                return False, {"error": f"{type(exc).__name__}: {one_line(exc)}"}, n
            if n < attempts:
                delay = backoff_delay(backoff, n)
                self.warn(f"{job.name}: {what} failed ({error}); retrying in {delay:g} s")
                if self._stopping.wait(delay):
                    break
        return False, {"error": error}, attempts

    def _deliver(self, job: Job, result: JobResult) -> tuple[list[dict[str, Any]], str | None]:
        from analytics_lib.runner.runs import RunRecord

        record = RunRecord.load(Path(result.detail["folder"]))
        deliveries, errors = [], []
        for name in job.audience:
            audience = self.config.audiences[name]
            for target_name, options in audience.targets.items():
                target = get_target(target_name)(options)
                delivery = ReportDelivery.from_run(job.name, name, record, self.settings.outputs)
                ok, info, tries = self._retrying(job, f"{target_name} to {name}",
                                                 functools.partial(target.deliver, delivery))
                deliveries.append({"audience": name, "target": target_name, "status": "sent" if ok else "failed",
                                   "attempts": tries, **info})
                if not ok:
                    errors.append(f"{target_name} to {name} failed after {tries} attempt(s): {info.get('error')}")
        return deliveries, "; ".join(errors) or None

    def _notify(self, job: Job, status: str, error: str, row: int, fire: datetime | None, attempts: int,
                detail: dict[str, Any]) -> None:
        from analytics_lib.runner.runs import latest

        last_good = None
        if job.kind == "report":
            try:
                last_good = latest(self.settings.outputs, job.report)
            except (OSError, ValueError, KeyError):
                last_good = None
        notice = FailureNotice(job=job.name, kind=job.kind, status=status, error=error, fire_time=fire,
                               timezone=str(job.timezone), attempts=attempts, history_id=row,
                               outputs=self.settings.outputs, run_folder=detail.get("folder"),
                               last_good=last_good,
                               log_path=detail.get("log"))
        results = []
        if not job.on_failure:
            self.warn(f"{job.name}: no failure contacts (on_failure) to notify")
        for name in job.on_failure:
            for target_name, options in self.config.audiences[name].targets.items():
                target = get_target(target_name)(options)
                ok, info, tries = self._retrying(job, f"failure notice by {target_name} to {name}",
                                                 functools.partial(target.notify, notice),
                                                 attempts=min(job.retries, 2) + 1, backoff=min(job.retry_backoff, 30))
                results.append({"audience": name, "target": target_name, "status": "sent" if ok else "failed",
                                "attempts": tries, **info})
                if not ok:
                    self.warn(f"{job.name}: could not notify {name} by {target_name}: {info.get('error')}")
        self.history.update(row, detail={"notifications": results})
