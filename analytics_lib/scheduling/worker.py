"""One attempt of one job, in its own process (``python -m analytics_lib.scheduling.worker
REQUEST.json RESULT.json``), so that the scheduler can stop it at the job's timeout, a crash or
leak in a job cannot take the scheduler down, and memory is returned when it ends.

The request carries the job, its fire time and the settings; the result is a
:class:`~analytics_lib.scheduling.jobs.JobResult` as JSON. Log lines go to stdout (the scheduler
keeps them in ``<state>/logs/``). On SIGTERM the attempt stops its own children (the notebook
process and kernel) before exiting."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from analytics_lib.config import Settings


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: (str(v) if isinstance(v, Path) else v)
            for f in fields(settings) for v in [getattr(settings, f.name)]}


def settings_from_dict(doc: dict[str, Any]) -> Settings:
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {k: (Path(v) if k in ("project_root", "outputs") else v)
                              for k, v in doc.items() if k in known}
    return Settings(**values)


def _write_result(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(doc, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    from analytics_lib.scheduling.process import terminate_tree

    terminate_tree(os.getpid(), grace=3.0, include_root=False)
    os._exit(128 + signum)


def main(argv: list[str]) -> int:
    from analytics_lib.scheduling.config import Job
    from analytics_lib.scheduling.jobs import JobResult, PermanentJobError, get_kind
    from analytics_lib.scheduling.jobs.base import one_line
    from analytics_lib.scheduling.process import die_with_parent

    signal.signal(signal.SIGTERM, _on_sigterm)
    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = json.loads(request_path.read_text(encoding="utf-8"))
    die_with_parent()  # a scheduler killed outright takes its job processes with it
    if request.get("parent_pid") and os.getppid() != request["parent_pid"]:
        return 3  # the scheduler is already gone
    job = Job.model_validate(request["job"])
    settings = settings_from_dict(request["settings"])
    fire_time = datetime.fromisoformat(request["fire_time"])

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        result = get_kind(job.kind).run(job, fire_time, settings, log)
    except PermanentJobError as exc:
        result = JobResult("failed", str(exc), permanent=True)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the scheduler as one line
        traceback.print_exc(file=sys.stdout)
        result = JobResult("failed", f"{type(exc).__name__}: {one_line(exc)}")
    _write_result(result_path, result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
