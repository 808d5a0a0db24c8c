"""Crontab lines for people who run schedules from the system cron (``schedule crontab``).

Each job gets a line with its own cron expression under ``CRON_TZ=<its time zone>`` (cronie and
most modern crons honour ``CRON_TZ``), running ``schedule run-due --job NAME``. That command
checks that the job really is due in its own time zone, takes the job's lock and records the
run, so a cron daemon that ignores ``CRON_TZ`` (Debian's classic cron does) or fires twice cannot
run a job at the wrong time twice: it runs it at the first call after the fire time. With
``--poll`` the output is a single every-minute ``run-due`` line instead, which needs no
``CRON_TZ`` at all.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

from analytics_lib.scheduling.config import SchedulingConfig


def command_prefix() -> str:
    """How cron should call the CLI: the console script beside this Python, if installed."""
    script = Path(sys.executable).with_name("payment-analytics")
    if script.is_file():
        return shlex.quote(str(script))
    found = shutil.which("payment-analytics")
    if found:
        return shlex.quote(found)
    return f"{shlex.quote(sys.executable)} -m analytics_lib.cli"


def render(config: SchedulingConfig, poll: bool = False, log_file: str | None = None,
           explicit_files: bool = False, warehouse: str | None = None) -> str:
    root = config.settings.project_root
    cli = command_prefix() + (f" --warehouse {shlex.quote(warehouse)}" if warehouse else "")
    files = ""
    if explicit_files:
        files = (f" --schedules {shlex.quote(str(config.schedules_path.resolve()))}"
                 f" --audiences {shlex.quote(str(config.audiences_path.resolve()))}")
    redirect = f" >> {shlex.quote(log_file)} 2>&1" if log_file else ""
    lines = [
        f"# payment-analytics schedules from {config.schedules_path}",
        f"# generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `payment-analytics schedule crontab"
        + (" --poll" if poll else "") + "`; install with `crontab -e` or into /etc/cron.d (add a user field there).",
        "# run-due prints nothing when nothing is due; failures go to stderr (cron mails them to MAILTO)",
        "# and to each job's failure contacts. Settings and SMTP secrets come from the environment or",
        f"# {root / '.env'} (git-ignored); never put the SMTP password in this file.",
        "# Each job line is for its CRON_TZ. A cron that ignores CRON_TZ fires in the system's zone: if",
        "# that differs from a job's zone, use `schedule crontab --poll` (one line, every minute) instead.",
        "SHELL=/bin/sh",
    ]
    if poll:
        lines += ["# every minute: run-due decides what is due, in each job's own time zone",
                  f"* * * * * cd {shlex.quote(str(root))} && {cli} schedule{files} run-due{redirect}"]
        return "\n".join(lines) + "\n"
    jobs = sorted((j for j in config.jobs.values() if j.enabled), key=lambda j: (str(j.timezone), j.name))
    for tz, group in groupby(jobs, key=lambda j: str(j.timezone)):
        lines += ["", f"CRON_TZ={tz}"]
        for job in group:
            lines.append(f"# {job.name}: {job.describe()}" + (f" -> {', '.join(job.audience)}" if job.audience else ""))
            lines.append(f"{job.schedule.expression} cd {shlex.quote(str(root))} && {cli} schedule{files} "
                         f"run-due --job {job.name}{redirect}")
    return "\n".join(lines) + "\n"
