"""``builtin: maintain``: compact small files, checkpoint and vacuum every warehouse table
(what ``payment-analytics maintain`` does)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from analytics_lib.config import Settings
from analytics_lib.scheduling.jobs.base import JobKind, JobResult, Log

if TYPE_CHECKING:
    from analytics_lib.scheduling.config import Job


class MaintainOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: keep replaced files this long, so running reports and reruns never lose them
    retention_hours: int = Field(default=168, ge=0)
    vacuum: bool = True


class MaintainJob(JobKind):
    name = "maintain"
    Options = MaintainOptions

    def run(self, job: Job, fire_time: datetime, settings: Settings, log: Log) -> JobResult:
        from analytics_lib.warehouse import Warehouse

        opts = self.options(job)
        report = Warehouse(settings.warehouse, settings).compact(retention_hours=opts.retention_hours,
                                                                  vacuum=opts.vacuum)
        for table, info in report.items():
            log(f"{table}: files {info['files_before']} -> {info['files_after']}, "
                f"vacuumed {info['files_removed_by_vacuum']}")
        return JobResult("succeeded", detail={"tables": report})
