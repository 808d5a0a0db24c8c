"""The report catalogue and one report run: validate parameters, pin the warehouse, execute,
render, record, and refresh the portal."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from analytics_lib.config import Settings, get_settings
from analytics_lib.runner import parameters as prm
from analytics_lib.runner.execute import ExecutionError, execute
from analytics_lib.runner.runs import (
    SAFE_NAME,
    RunError,
    RunRecord,
    code_version,
    find_run,
    mark_latest,
    new_run_id,
    run_folder,
)

#: every report can be rendered to these; html is always produced (the PDF prints it)
RENDER_FORMATS = ("html", "pdf")
DATA_FORMATS = ("xlsx", "csv", "json")
FORMATS = RENDER_FORMATS + DATA_FORMATS
DEFAULT_FORMATS = ("html", "pdf", "xlsx", "json")
#: parameters the runner sets itself (a user cannot)
RUNNER_PARAMETERS = ("as_of", "now", "run_dir", "exports")
DEFAULT_CELL_TIMEOUT = 600
DEFAULT_TIMEOUT = 1800


@dataclass(frozen=True)
class Report:
    name: str
    notebook: Path
    parameters: dict[str, prm.Parameter]
    description: str = ""

    def default_parameters_file(self, settings: Settings) -> Path:
        return settings.parameters_dir / self.name / "default.yaml"


def reports_dir(settings: Settings) -> Path:
    return settings.notebooks_dir / "reports"


def _read_report(path: Path) -> Report:
    nb = prm.read_notebook(path)
    first_md = next((prm.cell_source(c) for c in nb["cells"] if c.get("cell_type") == "markdown"), "")
    title = first_md.strip().splitlines()[0].lstrip("# ").strip() if first_md.strip() else path.stem
    return Report(path.stem, path, prm.read_parameters(path, nb), title)


def catalogue(settings: Settings | None = None) -> dict[str, Report]:
    """Every report notebook under ``notebooks/reports``, by name."""
    settings = settings or get_settings()
    return {path.stem: _read_report(path) for path in sorted(reports_dir(settings).glob("*.ipynb"))}


def get_report(name: str, settings: Settings | None = None) -> Report:
    if not SAFE_NAME.match(name or ""):
        raise RunError(f"not a report name: {name!r} (lower-case letters, digits, _ and -)")
    settings = settings or get_settings()
    path = reports_dir(settings) / f"{name}.ipynb"
    if not path.is_file():
        names = sorted(p.stem for p in reports_dir(settings).glob("*.ipynb"))
        raise RunError(f"unknown report {name!r}; reports: {', '.join(names) or 'none'}")
    return _read_report(path)


def parse_formats(text: str | Sequence[str] | None) -> list[str]:
    items = [f.strip().lower() for f in (text.split(",") if isinstance(text, str) else (text or DEFAULT_FORMATS))]
    items = [f for f in items if f]
    unknown = [f for f in items if f not in FORMATS]
    if unknown:
        raise RunError(f"unknown output format {', '.join(map(repr, unknown))}; formats: {', '.join(FORMATS)}")
    if not items:
        raise RunError("no output format given")
    if "html" not in items:
        items.insert(0, "html")
    return list(dict.fromkeys(items))


def resolve_parameters(report: Report, settings: Settings, parameters_file: Path | None = None,
                       assignments: Sequence[str] = (), values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults from the notebook, then ``parameters/<name>/default.yaml`` (or ``parameters_file``),
    then ``values``, then ``-p`` assignments; validated against the parameters cell."""
    given: dict[str, Any] = {}
    default_file = report.default_parameters_file(settings)
    source = parameters_file or (default_file if default_file.is_file() else None)
    if source is not None:
        given.update(prm.load_parameters_file(Path(source)))
    given.update(values or {})
    given.update(prm.parse_assignments(report.parameters, list(assignments)))
    for name in RUNNER_PARAMETERS:
        if name in given:
            raise prm.ParameterError(f"parameter '{name}' is set by the runner, not by a user")
    return prm.validate(report.parameters, given, f"report {report.name}")


def _period_label(report: Report, params: Mapping[str, Any], settings: Settings, now: datetime) -> str:
    from analytics_lib.reporting.context import resolve_period

    if params.get("definition"):
        from analytics_lib.reporting.custom import load_definition

        spec = load_definition(params["definition"])
        params = {"period": spec.period, "start": spec.start and spec.start.isoformat(),
                  "end": spec.end and spec.end.isoformat(), "timezone": spec.timezone}
    elif "period" not in report.parameters and "start" not in report.parameters:
        return "custom"
    tz = params.get("timezone") or settings.timezone
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise prm.ParameterError(f"parameter 'timezone': unknown time zone {tz!r} (e.g. Europe/Istanbul, UTC)") from None
    try:
        period = resolve_period(params.get("period"), params.get("start"), params.get("end"), tz, now)
    except ValueError as exc:  # PeriodError, ReportParameterError
        raise prm.ParameterError(f"period: {exc}") from None
    return period.label.replace("..", "_to_")


def run_report(name: str, *, parameters_file: Path | None = None, assignments: Sequence[str] = (),
               values: Mapping[str, Any] | None = None, formats: Sequence[str] | str | None = None,
               settings: Settings | None = None, cell_timeout: int = DEFAULT_CELL_TIMEOUT,
               timeout: int = DEFAULT_TIMEOUT, progress: bool | None = None, now: datetime | None = None,
               as_of: Mapping[str, int] | None = None, rerun_of: str | None = None,
               log: Callable[[str], None] | None = None) -> RunRecord:
    """Run report ``name`` into a new run folder and return its record (status succeeded or
    failed). Bad parameters raise before anything is written."""
    from analytics_lib.runner.portal import write_portal
    from analytics_lib.warehouse import Warehouse

    settings = settings or get_settings()
    report = get_report(name, settings)
    fmts = parse_formats(formats)
    params = resolve_parameters(report, settings, parameters_file, assignments, values)
    if params.get("definition") is not None or "definition" in report.parameters:
        from analytics_lib.reporting.custom import load_definition

        load_definition(params.get("definition"))  # a bad definition is refused before a kernel starts
    now = (now or datetime.now(UTC)).astimezone(UTC)
    label = _period_label(report, params, settings, now)
    if params.get("filters"):
        from analytics_lib.metrics import Filters

        try:
            Filters.of(params["filters"])
        except ValueError as exc:
            raise prm.ParameterError(f"parameter 'filters': {exc}") from None
    if as_of is None:
        # every table's version, -1 for a table that does not exist yet: a rerun must not see it
        as_of = Warehouse(settings.warehouse, settings).versions()
    if not any(v >= 0 for v in as_of.values()):
        raise RunError(f"the warehouse at {settings.warehouse} is empty: build it first (payment-analytics demo-data "
                       "or payment-analytics ingest)")
    run_id = new_run_id(now if rerun_of is None else None)
    folder = run_folder(settings.outputs, report.name, label, run_id)
    injected = {**params, "as_of": dict(as_of), "now": now.isoformat(), "run_dir": str(folder),
                "exports": [f for f in fmts if f in DATA_FORMATS]}
    if "warehouse" in report.parameters and not params.get("warehouse"):
        injected["warehouse"] = settings.warehouse
    injected = {k: v for k, v in injected.items() if k in report.parameters}
    record = RunRecord(run_id=run_id, report=report.name, period_label=label,
                       notebook=str(report.notebook.relative_to(settings.project_root)), parameters=injected,
                       formats=fmts, warehouse=settings.warehouse, warehouse_versions=dict(as_of),
                       code=code_version(), started_at=datetime.now(UTC).isoformat(), rerun_of=rerun_of,
                       folder=str(folder))
    record.save()
    say = log or (lambda _msg: None)
    started = time.monotonic()
    executed = folder / f"{report.name}.ipynb"
    # while the notebook executes (in a child process), load the HTML renderer and start the
    # browser that prints the PDF: both used to start only after the notebook finished
    renderer = _Renderers("pdf" in fmts)
    try:
        say(f"running {report.name} for {label} (run {run_id})")
        record.timings["execute_s"] = round(execute(
            report.notebook, executed, injected, cell_timeout, timeout,
            progress=sys.stderr.isatty() if progress is None else progress,
            env={"PAYMENT_ANALYTICS_WAREHOUSE": settings.warehouse}), 2)
        record.artefacts["ipynb"] = executed.name
        for f in [f for f in fmts if f in DATA_FORMATS]:
            produced = sorted(p.name for p in folder.glob(f"data*.{f}" if f != "csv" else "data*.csv"))
            if produced:
                record.artefacts[f] = produced[0] if len(produced) == 1 else ",".join(produced)
        title = (record.summary() or {}).get("title") or report.description or report.name
        _render(report, record, executed, fmts, title, say, renderer)
        record.status = "succeeded"
    except Exception as exc:  # noqa: BLE001 - every failure is recorded in the run, then re-raised as one line
        record.status = "failed"
        record.error = _one_line(exc)
        if executed.is_file():
            record.artefacts.setdefault("ipynb", executed.name)
        if not isinstance(exc, (ExecutionError, RunError)):
            (folder / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    finally:
        renderer.close()
        record.finished_at = datetime.now(UTC).isoformat()
        record.duration_s = round(time.monotonic() - started, 2)
        record.save()
        if record.status == "succeeded":
            mark_latest(settings.outputs, record)
        try:
            write_portal(settings.outputs)
        except OSError as exc:  # the portal is derived; a run's own record is what matters
            say(f"warning: could not refresh the portal: {exc}")
    return record


class _Renderers:
    """Started before the notebook executes, in a thread so that the child process starts at once:
    loads the HTML renderer and (for a PDF) starts the browser that will print it."""

    def __init__(self, pdf: bool) -> None:
        self.printer: Any = None
        self._thread = threading.Thread(target=self._start, args=(pdf,), name="renderers", daemon=True)
        self._thread.start()

    def _start(self, pdf: bool) -> None:
        from analytics_lib.reporting.html import warm_up
        from analytics_lib.reporting.pdf import Printer

        if pdf:
            self.printer = Printer()
        with suppress(Exception):  # only a warm-up: rendering itself reports any error
            warm_up()

    def ready(self) -> _Renderers:
        self._thread.join()
        return self

    def close(self) -> None:
        self._thread.join()
        if self.printer is not None:
            self.printer.close()


def _render(report: Report, record: RunRecord, executed: Path, fmts: Sequence[str], title: str,
            say: Callable[[str], None], renderer: _Renderers) -> None:
    from analytics_lib.reporting.html import write_html

    html_path = record.path / f"{report.name}.html"
    renderer.ready()
    t = time.monotonic()
    write_html(executed, html_path, title=title)
    record.timings["html_s"] = round(time.monotonic() - t, 2)
    record.artefacts["html"] = html_path.name
    if "pdf" in fmts:
        say("printing the PDF")
        t = time.monotonic()
        pdf_path = record.path / f"{report.name}.pdf"
        if renderer.printer is None:  # the warm-up could not even import the printer
            from analytics_lib.reporting.pdf import render_pdf

            render_pdf(html_path, pdf_path)
        else:
            renderer.printer.print(html_path, pdf_path)
        record.timings["pdf_s"] = round(time.monotonic() - t, 2)
        record.artefacts["pdf"] = pdf_path.name


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:1000]


def rerun(run_id: str, settings: Settings | None = None, formats: Sequence[str] | str | None = None,
          **kwargs: Any) -> RunRecord:
    """Run a past run again on the same warehouse versions, parameters and clock."""
    settings = settings or get_settings()
    past = find_run(settings.outputs, run_id)
    if past.warehouse != settings.warehouse:
        settings = settings.with_warehouse(past.warehouse)
    values = {k: v for k, v in past.parameters.items() if k not in RUNNER_PARAMETERS and k != "warehouse"}
    now = datetime.fromisoformat(past.parameters["now"]) if past.parameters.get("now") else None
    return run_report(past.report, values=values, formats=formats or past.formats, settings=settings,
                      now=now, as_of=past.warehouse_versions, rerun_of=past.run_id, parameters_file=None,
                      **kwargs)
