"""``notebook: <report>`` jobs: run a report notebook for the period its fire time implies.

The fire time (not the moment the job process starts) is the run's ``now``, so a late or
caught-up run covers the same period an on-time run would: the weekly report fired on Monday
09:00 covers the previous Monday to Sunday even if it runs on Tuesday. Relative periods are read
in the report's ``timezone`` parameter if the parameters set one, otherwise in the job's time
zone (passed to the report as ``timezone``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analytics_lib.config import Settings
from analytics_lib.scheduling.jobs.base import JobKind, JobResult, Log, PermanentJobError, one_line

if TYPE_CHECKING:
    from analytics_lib.runner import Report
    from analytics_lib.scheduling.config import Job


def _resolve(settings: Settings, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else settings.project_root / p


def report_name(job: Job, settings: Settings) -> str:
    """The report a job's ``notebook`` names: ``weekly_business`` or
    ``notebooks/reports/weekly_business.ipynb``."""
    text = str(job.notebook)
    if "/" in text or text.endswith(".ipynb"):
        path = _resolve(settings, text)
        reports = (settings.notebooks_dir / "reports").resolve()
        if path.suffix != ".ipynb" or path.resolve().parent != reports:
            raise ValueError(f"{text!r} is not a notebook in notebooks/reports/")
        return path.stem
    return text


def parameters_file(job: Job, report: Report, settings: Settings) -> Path | None:
    if job.parameters:
        return _resolve(settings, job.parameters)
    default = report.default_parameters_file(settings)
    return default if default.is_file() else None


def effective_values(job: Job, report: Report, settings: Settings) -> dict[str, Any]:
    """The job's ``values``, plus its time zone when neither they nor the parameters file set one."""
    from analytics_lib.runner.parameters import load_parameters_file

    values = dict(job.values)
    if "timezone" in report.parameters and values.get("timezone") is None:
        path = parameters_file(job, report, settings)
        from_file = load_parameters_file(path) if path is not None else {}
        if from_file.get("timezone") is None:
            values["timezone"] = job.timezone
    return values


class ReportJob(JobKind):
    name = "report"

    def check(self, job: Job, settings: Settings, cache: dict[str, Any]) -> list[tuple[str, str]]:
        from analytics_lib.reporting.custom import load_definition
        from analytics_lib.runner import ParameterError, RunError, catalogue
        from analytics_lib.runner.reports import parse_formats, resolve_parameters

        if job.options:
            return [("options", "notebook jobs take 'parameters' and 'values', not 'options'")]
        if "catalogue" not in cache:
            cache["catalogue"] = catalogue(settings)
        reports = cache["catalogue"]
        try:
            name = report_name(job, settings)
        except ValueError as exc:
            return [("notebook", str(exc))]
        if name not in reports:
            return [("notebook", f"unknown notebook {job.notebook!r}; reports: {', '.join(reports)}")]
        report = reports[name]
        found: list[tuple[str, str]] = []
        try:
            job.formats = parse_formats(job.formats)
        except RunError as exc:
            found.append(("formats", str(exc)))
        path = parameters_file(job, report, settings)
        if job.parameters and (path is None or not path.is_file()):
            return [*found, ("parameters", f"parameters file not found: {job.parameters}")]
        try:
            resolve_parameters(report, settings, path)
        except ParameterError as exc:
            return [*found, ("parameters", str(exc))]
        try:
            params = resolve_parameters(report, settings, path, values=effective_values(job, report, settings))
            if "definition" in report.parameters:
                load_definition(params.get("definition"))
        except ParameterError as exc:
            found.append(("values", str(exc)))
        except ValueError as exc:  # a custom report's definition
            found.append(("parameters", one_line(exc)))
        return found

    def run(self, job: Job, fire_time: datetime, settings: Settings, log: Log) -> JobResult:
        from analytics_lib.runner import ParameterError, RunError, get_report, run_report
        from analytics_lib.runner.reports import DEFAULT_CELL_TIMEOUT

        try:
            report = get_report(report_name(job, settings), settings)
            record = run_report(report.name, parameters_file=parameters_file(job, report, settings),
                                values=effective_values(job, report, settings), formats=job.formats,
                                settings=settings, cell_timeout=int(min(DEFAULT_CELL_TIMEOUT, job.timeout)),
                                timeout=max(1, int(job.timeout)), progress=False, now=fire_time, log=log)
        except (ParameterError, RunError, ValueError) as exc:
            raise PermanentJobError(one_line(exc)) from exc
        detail = {"report": record.report, "run_id": record.run_id, "folder": record.folder,
                  "period": record.period_label, "run_status": record.status, "artefacts": record.artefacts}
        if record.status != "succeeded":
            return JobResult("failed", f"report run {record.run_id} failed: {record.error}", detail=detail)
        return JobResult("succeeded", detail=detail)
