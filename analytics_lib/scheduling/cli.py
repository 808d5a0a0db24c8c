"""``payment-analytics schedule``: list jobs, run what is due, serve, print a crontab, show history.

Every command reports bad input (a schedules.yaml problem, an unknown job, a bad ``--now``) as
one line on stderr with exit code 1; ``run-due`` exits 1 when a job failed, so cron and
orchestrators see it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from analytics_lib.config import Settings
    from analytics_lib.scheduling.config import SchedulingConfig
    from analytics_lib.scheduling.dispatch import Dispatcher


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that are bad input or a bad environment, not bugs (imported only when one occurs)."""
    from analytics_lib.config import ConfigError
    from analytics_lib.runner.runs import RunError

    # ScheduleConfigError and CronError are ValueErrors
    return (ConfigError, RunError, ValueError, KeyError, OSError)


def _one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - expected errors become one line, others propagate
            if not isinstance(exc, _expected_errors()):
                raise
            root = click.get_current_context().find_root().obj
            if root is not None and getattr(root, "debug", False):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise click.ClickException(str(message).splitlines()[0] if message else type(exc).__name__) from None

    return wrapper


def _settings(ctx: click.Context) -> Settings:
    from analytics_lib.config import get_settings

    settings = get_settings()
    root = ctx.find_root().obj
    location = getattr(root, "warehouse_location", None)
    return settings.with_warehouse(location) if location else settings


def _config(ctx: click.Context) -> SchedulingConfig:
    from analytics_lib.scheduling.config import load_config

    schedules, audiences = ctx.meta.get("schedule_files", (None, None))
    return load_config(schedules, audiences, _settings(ctx))


def _dispatcher(ctx: click.Context, config: SchedulingConfig, quiet: bool = False) -> Dispatcher:
    from analytics_lib.scheduling.dispatch import Dispatcher

    return Dispatcher(config, say=(lambda m: None) if quiet else click.echo,
                      warn=lambda m: click.echo(m, err=True))


def parse_now(text: str | None, timezone: str) -> datetime | None:
    """``--now``: ISO-8601; without an offset it is read in the business time zone."""
    if text is None:
        return None
    from zoneinfo import ZoneInfo

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 time, e.g. 2026-11-02T09:05 or "
                                 "2026-11-02T09:05+03:00", param_hint="--now") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)


@click.group("schedule")
@click.option("--schedules", "schedules", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Schedules file (default scheduling/schedules.yaml or $PAYMENT_ANALYTICS_SCHEDULES).")
@click.option("--audiences", "audiences", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Audiences file (default audiences.yaml beside the schedules file).")
@click.pass_context
def schedule(ctx: click.Context, schedules: Path | None, audiences: Path | None) -> None:
    """Scheduled reports and jobs: what runs when, who receives it, what happened (docs/scheduling.md)."""
    ctx.meta["schedule_files"] = (schedules, audiences)


@schedule.command("list")
@click.option("--now", "now_text", default=None, metavar="ISO", help="Compute next runs from this time.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
@_one_line_errors
def list_command(ctx: click.Context, now_text: str | None, fmt: str) -> None:
    """Jobs, their next fire time in their own time zone, and their last status."""
    from analytics_lib.scheduling.history import History
    from analytics_lib.scheduling.state import StateDir

    config = _config(ctx)
    now = parse_now(now_text, config.settings.timezone) or datetime.now(UTC)
    history = History(StateDir.for_settings(config.settings).history_path)
    items: list[dict[str, Any]] = []
    table: list[str] = []
    for job in config.jobs.values():
        nxt = job.schedule.next_after(now) if job.enabled else None
        last = history.last(job.name)
        items.append({"job": job.name, "what": job.describe(), "cron": job.schedule.expression,
                      "timezone": job.timezone, "enabled": job.enabled,
                      "next_run": None if nxt is None else job.schedule.local(nxt).isoformat(),
                      "audience": job.audience, "on_failure": job.on_failure,
                      "last": None if last is None else {"status": last.status, "started_at": last.started_at.isoformat(),
                                                         "duration_s": last.duration_s, "error": last.error}})
        next_text = "disabled" if nxt is None else job.schedule.local(nxt).strftime("%a %Y-%m-%d %H:%M %Z")
        last_text = "never" if last is None else f"{last.status} {last.started_at:%Y-%m-%d %H:%M}"
        table.append(f"{job.name:24} {job.describe():26} {job.schedule.expression:17} {next_text:27} {last_text:34} "
                     f"{', '.join(job.audience) or '-'}")
    if fmt == "json":
        click.echo(json.dumps(items, indent=2))
        return
    click.echo(f"{'JOB':24} {'WHAT':26} {'CRON':17} {'NEXT RUN':27} {'LAST (UTC)':34} AUDIENCE")
    for line in table:
        click.echo(line)


@schedule.command("run-due")
@click.option("--now", "now_text", default=None, metavar="ISO",
              help="Act as if it were this time (ISO-8601; no offset = business time zone). Default: now.")
@click.option("--job", "jobs", multiple=True, metavar="NAME", help="Only this job (repeatable).")
@click.option("--dry-run", is_flag=True, help="Say what is due; run nothing, record nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
@_one_line_errors
def run_due_command(ctx: click.Context, now_text: str | None, jobs: tuple[str, ...], dry_run: bool, fmt: str) -> None:
    """Run every job that is due (for system cron or a Kubernetes CronJob); silent when nothing is."""
    config = _config(ctx)
    now = parse_now(now_text, config.settings.timezone) or datetime.now(UTC)
    dispatcher = _dispatcher(ctx, config, quiet=fmt == "json")
    if dry_run:
        decisions = dispatcher.plan(now, jobs or None)
        if fmt == "json":
            click.echo(json.dumps([{**d.__dict__, "fire_time": d.fire_time and d.fire_time.isoformat()}
                                   for d in decisions], indent=2))
            return
        for d in decisions:
            job = config.jobs[d.job]
            when = "-" if d.fire_time is None else job.schedule.local(d.fire_time).strftime("%Y-%m-%d %H:%M %Z")
            click.echo(f"{d.job:24} {d.action:9} {when:22} {d.reason}")
        return
    outcomes = dispatcher.run_due(now, jobs or None)
    if fmt == "json":
        click.echo(json.dumps([{**o.__dict__, "fire_time": o.fire_time and o.fire_time.isoformat()}
                               for o in outcomes], indent=2, default=str))
    if any(o.failed for o in outcomes):
        sys.exit(1)


@schedule.command("serve")
@click.pass_context
@_one_line_errors
def serve_command(ctx: click.Context) -> None:
    """Run the resident scheduler (APScheduler) until SIGTERM or Ctrl-C."""
    import logging

    from analytics_lib.scheduling.serve import serve
    from analytics_lib.scheduling.state import StateDir

    debug = bool(getattr(ctx.find_root().obj, "debug", False))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("analytics_lib.scheduling")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    logging.getLogger("apscheduler").setLevel(logging.INFO if debug else logging.ERROR)
    config = _config(ctx)

    def ready(resident: Any) -> None:
        state = StateDir.for_settings(config.settings).root
        click.echo(f"scheduler started: {len(config.jobs)} job(s) from {config.schedules_path}; state in {state}",
                   err=True)

    from analytics_lib.scheduling.dispatch import Dispatcher

    serve(lambda: _config(ctx), lambda cfg: Dispatcher(cfg), ready=ready)
    click.echo("scheduler stopped", err=True)


@schedule.command("crontab")
@click.option("--poll", is_flag=True, help="One every-minute run-due line instead of a line per job.")
@click.option("--log", "log_file", default=None, metavar="FILE", help="Append the commands' output to FILE.")
@click.pass_context
@_one_line_errors
def crontab_command(ctx: click.Context, poll: bool, log_file: str | None) -> None:
    """Print crontab lines that run the schedules from the system cron."""
    from analytics_lib.scheduling.crontab import render

    config = _config(ctx)
    explicit = any(ctx.meta.get("schedule_files", (None, None)))
    location = getattr(ctx.find_root().obj, "warehouse_location", None)
    click.echo(render(config, poll=poll, log_file=log_file, explicit_files=explicit, warehouse=location), nl=False)


@schedule.command("history")
@click.option("--job", "job", default=None, metavar="NAME", help="Only this job.")
@click.option("--status", type=click.Choice(["running", "succeeded", "failed", "delivery_failed", "interrupted",
                                             "skipped"]), default=None, help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
@_one_line_errors
def history_command(ctx: click.Context, job: str | None, status: str | None, limit: int, fmt: str) -> None:
    """Run history, newest first: fire time, status, attempts, duration, error."""
    from analytics_lib.scheduling.history import History
    from analytics_lib.scheduling.state import StateDir

    settings = _settings(ctx)
    history = History(StateDir.for_settings(settings).history_path)
    rows = history.rows(job=job, status=status, limit=limit)
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
        return
    if not rows:
        click.echo("no runs recorded" + (f" for {job}" if job else ""))
        return
    click.echo(f"{'ID':>5} {'JOB':24} {'FIRE TIME (UTC)':17} {'STATUS':15} {'TRIES':>5} {'TOOK':>8}  DETAIL")
    for r in rows:
        fire = r.fire_time.strftime("%Y-%m-%d %H:%M") if r.fire_time else "-"
        took = "" if r.duration_s is None else f"{r.duration_s:7.1f}s"
        info = r.error or ""
        if not info and r.detail.get("run_id"):
            info = f"run {r.detail['run_id']} ({r.detail.get('period')})"
        click.echo(f"{r.id:>5} {r.job:24} {fire:17} {r.status:15} {r.attempts:>5} {took:>8}  {info}")
