"""``builtin: command``: run a program (argv list, no shell), e.g. a site-specific export.
It gets the workspace's environment plus ``PAYMENT_ANALYTICS_FIRE_TIME`` (ISO-8601, UTC)."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from analytics_lib.config import Settings
from analytics_lib.scheduling.jobs.base import JobKind, JobResult, Log

if TYPE_CHECKING:
    from analytics_lib.scheduling.config import Job


class CommandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class CommandJob(JobKind):
    name = "command"
    Options = CommandOptions

    def run(self, job: Job, fire_time: datetime, settings: Settings, log: Log) -> JobResult:
        opts = self.options(job)
        cwd = Path(opts.cwd) if opts.cwd else settings.project_root
        if not cwd.is_absolute():
            cwd = settings.project_root / cwd
        env = {**os.environ, **opts.env, "PAYMENT_ANALYTICS_FIRE_TIME": fire_time.isoformat(),
               "PAYMENT_ANALYTICS_WAREHOUSE": settings.warehouse, "PAYMENT_ANALYTICS_OUTPUTS": str(settings.outputs)}
        proc = subprocess.run(opts.argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        for line in (proc.stdout + proc.stderr).splitlines()[-200:]:
            log(line)
        if proc.returncode != 0:
            last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            tail = f": {last[-1][:300]}" if last else ""
            return JobResult("failed", f"{opts.argv[0]} exited with {proc.returncode}{tail}",
                             detail={"returncode": proc.returncode})
        return JobResult("succeeded", detail={"returncode": 0})
