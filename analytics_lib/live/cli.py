"""Command-line commands of live mode: ``simulate --live``, ``alerts`` and ``ingest --watch``.

Registered on the ``payment-analytics`` group by :mod:`analytics_lib.cli`. Each command stops
cleanly on Ctrl-C or SIGTERM (the batch or file in progress finishes first), shows a progress
line when stderr is a terminal, and reports bad input as one line with exit code 1.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click


def _one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from analytics_lib.config import ConfigError
        from analytics_lib.warehouse import WarehouseError
        from analytics_lib.warehouse.sources import IngestError

        try:
            return func(*args, **kwargs)
        except (ValueError, ConfigError, WarehouseError, IngestError, FileNotFoundError) as exc:
            root = click.get_current_context().find_root().obj
            if getattr(root, "debug", False):
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise click.ClickException(message) from None

    return wrapper


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM (handlers restored afterwards)."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread (e.g. a test runner's thread)
            previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _status(text: str) -> None:
    """A progress line that rewrites itself on a terminal, silent otherwise (cron, CI)."""
    if sys.stderr.isatty():
        width = 118
        click.echo("\r" + text[:width].ljust(width), err=True, nl=False)


@click.command("simulate")
@click.option("--live", is_flag=True, help="Append new payments to the warehouse as they happen (required).")
@click.option("--rate", default="2", show_default=True, metavar="N[/s|/min|/h]",
              help="Payment attempts per second (e.g. 5, 5/s, 300/min).")
@click.option("--duration", type=float, default=None, metavar="S", help="Stop after S seconds (default: run until Ctrl-C).")
@click.option("--batch-seconds", type=float, default=2.0, show_default=True, metavar="S",
              help="Seconds between writes (one commit per table per batch).")
@click.option("--seed", type=int, default=None, help="Seed of the template sample and the arrivals.")
@click.option("--compact-every", type=float, default=None, metavar="S",
              help="Compact the warehouse every S seconds while running (default: leave it to `maintain`).")
@click.option("--lifecycle-speedup", type=float, default=1440.0, show_default=True,
              help="Compression of refunds, disputes and reviews (1440: a day of lifecycle in a minute).")
@click.pass_obj
@_one_line_errors
def simulate_command(obj: Any, live: bool, rate: str, duration: float | None, batch_seconds: float,
                     seed: int | None, compact_every: float | None, lifecycle_speedup: float) -> None:
    """Replay realistic new payments into the warehouse in small batches (see docs/live.md)."""
    from analytics_lib.live.simulate import LiveSimulator, SimulationOptions, parse_rate

    if not live:
        raise click.ClickException("simulate needs --live (for a demo warehouse use `payment-analytics demo-data`)")
    options = SimulationOptions(rate=parse_rate(rate), batch_seconds=batch_seconds, duration=duration, seed=seed,
                                compact_every=compact_every, lifecycle_speedup=lifecycle_speedup)
    warehouse = obj.warehouse()
    simulator = LiveSimulator(warehouse, options)
    _status("loading templates ...")
    templates = simulator.prepare()
    first, last = templates.window
    click.echo(f"\rlive simulator on {warehouse.location}: {options.rate:g} payments/s, a batch every "
               f"{options.batch_seconds:g} s, replaying {len(templates.groups):,} sessions from "
               f"{first:%Y-%m-%d} to {last:%Y-%m-%d} (Ctrl-C stops)", err=True)
    with _stop_on_signals() as stop:
        summary = simulator.run(stop=stop, on_batch=lambda result, total: _status(total.line()))
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(f"stopped: {summary.line()}; batch {summary.batch_id}")


@click.command("alerts")
@click.option("--record", is_flag=True, help="Write the alerts to the anomaly_alerts table.")
@click.option("--every", type=click.FloatRange(min=1), default=None, metavar="S",
              help="Detect again every S seconds until Ctrl-C (with --record: a detection job).")
@click.option("--now", "now_text", default=None, metavar="ISO-TIME",
              help="Detect as of this instant (default now), e.g. 2026-11-20T11:45:00Z.")
@click.option("--currency", default=None, help="Reporting currency of the high-value rule.")
@click.option("--high-value", type=click.FloatRange(min=0, min_open=True), default=None,
              help="High-value threshold in the reporting currency (default 10000).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
@_one_line_errors
def alerts_command(obj: Any, record: bool, every: float | None, now_text: str | None, currency: str | None,
                   high_value: float | None, fmt: str) -> None:
    """Detect anomalies in the last hour against the same hours of earlier weeks (docs/live.md)."""
    from analytics_lib.live.anomalies import AnomalyOptions, detect_anomalies, record_alerts
    from analytics_lib.metrics import MetricSession

    now = _parse_now(now_text)
    if every is not None and now is not None:
        raise click.ClickException("--every and --now do not go together")
    options = AnomalyOptions() if high_value is None else AnomalyOptions(high_value_threshold=high_value)
    warehouse = obj.warehouse()
    with _stop_on_signals() as stop:
        while True:
            started = time.perf_counter()
            with MetricSession.open(warehouse) as session:
                frame = detect_anomalies(session, now, options=options, currency=currency)
            took = time.perf_counter() - started
            written = record_alerts(warehouse, frame) if record and not frame.empty else None
            _print_alerts(frame, fmt, took, written)
            if every is None or stop.wait(max(0.0, every - (time.perf_counter() - started))):
                break


def _parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.ClickException(f"--now {text!r} is not an ISO time such as 2026-11-20T11:45:00Z") from None
    if value.tzinfo is None:
        raise click.ClickException("--now needs a time zone (e.g. a trailing Z for UTC)")
    return value.astimezone(UTC)


def _print_alerts(frame: Any, fmt: str, seconds: float, written: Any) -> None:
    if fmt == "json":
        records = json.loads(frame.to_json(orient="records", date_format="iso"))
        click.echo(json.dumps({"alerts": records, "seconds": round(seconds, 3),
                               "recorded": None if written is None else {"inserted": written.inserted,
                                                                         "updated": written.updated,
                                                                         "unchanged": written.unchanged}}))
        return
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    note = "" if written is None else f"; recorded {written.inserted} new, {written.updated} updated"
    click.echo(f"{stamp} {len(frame)} alert(s) in {seconds:.2f} s{note}")
    for row in frame.itertuples(index=False):
        click.echo(f"  {row.severity:<8} {row.alert_type:<19} {row.confidence:7.2%}  {row.message}")


def watch_folder_command(obj: Any, folder: Path | None, source: str | None, mapping: Path | None,
                         interval: float, fmt: str) -> None:
    """``payment-analytics ingest --watch DIR``: called by the ``ingest`` command."""
    from analytics_lib.live.watch import FolderWatcher, WatchOptions

    @_one_line_errors
    def run() -> None:
        if folder is None:
            raise click.ClickException("missing PATH: the folder to watch")
        options: dict[str, Any] = {}
        if mapping is not None:
            options["mapping"] = mapping
        watcher = FolderWatcher(folder, obj.warehouse(), WatchOptions(
            source=source or "platform-json", interval=interval, source_options=options))
        click.echo(f"watching {folder} for {watcher.options.source} files every {interval:g} s; "
                   f"loaded files go to {watcher.done.name}/, bad ones to {watcher.failed.name}/ (Ctrl-C stops)",
                   err=True)

        def report(outcome: Any) -> None:
            if fmt == "json":
                click.echo(json.dumps({"file": outcome.file, "status": outcome.status, "moved_to": outcome.moved_to,
                                       "message": outcome.message,
                                       "result": outcome.result.to_dict() if outcome.result else None},
                                      default=str))
            else:
                click.echo(outcome.line())

        with _stop_on_signals() as stop:
            handled = watcher.run(stop=stop, on_outcome=report)
        click.echo(f"stopped after {handled} file(s)", err=True)

    run()
