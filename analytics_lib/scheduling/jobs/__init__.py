"""Job kinds, by name: ``report`` (a notebook job) and the built-in jobs ``ingest``, ``maintain``,
``retrain`` and ``command``. One module per kind; a new kind is one module plus one line in
:data:`KINDS`. Each kind checks its job at load time (``check``) and runs one attempt inside a job
process (``run``, called by :mod:`analytics_lib.scheduling.worker`)."""

from __future__ import annotations

import importlib

from analytics_lib.scheduling.jobs.base import JobKind, JobResult, PermanentJobError

#: name -> "module:Class" (imported on first use)
KINDS: dict[str, str] = {
    "report": "analytics_lib.scheduling.jobs.report:ReportJob",
    "ingest": "analytics_lib.scheduling.jobs.ingest:IngestJob",
    "maintain": "analytics_lib.scheduling.jobs.maintain:MaintainJob",
    "retrain": "analytics_lib.scheduling.jobs.retrain:RetrainJob",
    "command": "analytics_lib.scheduling.jobs.command:CommandJob",
}


def kind_names() -> list[str]:
    return list(KINDS)


def get_kind(name: str) -> JobKind:
    if name not in KINDS:
        raise KeyError(f"unknown job kind {name!r}; kinds: {', '.join(KINDS)}")
    module, cls = KINDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["KINDS", "JobKind", "JobResult", "PermanentJobError", "get_kind", "kind_names"]
