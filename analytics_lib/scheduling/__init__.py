"""Scheduling and distribution: which jobs run when (schedules.yaml, cron semantics by croniter),
running what is due with locks, timeouts, retries and catch-up rules, a history that survives
restarts, the resident scheduler (APScheduler 3), and distribution of reports to audiences
(audiences.yaml; targets ``email`` and ``folder``) with failure notices to each job's contacts.

Modules, one concern each: ``config`` (loading and validating the YAML), ``cron`` (what a cron
line means), ``due`` (catch-up and misfire rules), ``dispatch`` (running due jobs), ``worker``
(one attempt in its own process), ``jobs`` (job kinds: report, ingest, maintain, retrain,
command), ``history``, ``locks``, ``state``, ``process``, ``serve`` (APScheduler), ``crontab``,
``distribution`` (targets, messages, SMTP) and ``cli`` (``payment-analytics schedule``).
See docs/scheduling.md.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public names -> their module (imported on first use, so `payment-analytics` starts fast)
_EXPORTS = {
    "CronError": "cron", "CronSchedule": "cron", "Dispatcher": "dispatch", "History": "history", "Job": "config",
    "Outcome": "dispatch", "ScheduleConfigError": "config", "SchedulingConfig": "config", "StateDir": "state",
    "load_config": "config",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"analytics_lib.scheduling.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'analytics_lib.scheduling' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
