"""The ``payment-analytics`` command line: one console script for schedulers and scripts.

Every command reports bad input as one line on stderr and a non-zero exit code; tracebacks
are shown only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from analytics_lib import __version__
from analytics_lib.config import ConfigError

EXIT_BAD_INPUT = 2


class _Context:
    def __init__(self, warehouse: str | None, debug: bool):
        self.warehouse_location = warehouse
        self.debug = debug

    def warehouse(self):  # type: ignore[no-untyped-def]
        from analytics_lib.warehouse import Warehouse

        return Warehouse(self.warehouse_location)


def _fail(message: str) -> None:
    raise click.ClickException(message)


#: the workspace's own error classes, by module: a class whose module was never imported cannot
#: have been raised, so checking them needs no import (importing them all cost ~2 s: sklearn)
_EXPECTED_ERRORS = (("analytics_lib.warehouse.sources", "IngestError"), ("analytics_lib.warehouse", "WarehouseError"),
                    ("analytics_lib.models.registry", "RegistryError"), ("analytics_lib.runner.runs", "RunError"))


def _expected(exc: BaseException) -> bool:
    """An error the workspace raises on purpose (bad input, missing data): shown as one line."""
    if isinstance(exc, (ConfigError, FileNotFoundError, ValueError, KeyError)):
        return True
    for module_name, class_name in _EXPECTED_ERRORS:
        error_class = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(error_class, type) and isinstance(exc, error_class):
            return True
    return False


def _friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the workspace's expected errors into one-line messages."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            # MetricError, PeriodError and MissingRateError are ValueErrors too
            if not _expected(exc) or (ctx.find_root().obj and ctx.find_root().obj.debug):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise click.ClickException(str(message).splitlines()[0] if message else type(exc).__name__) from None

    return wrapper


def _progress_bar(total: int | None, desc: str, unit: str = "B"):  # type: ignore[no-untyped-def]
    """A tqdm bar on a terminal, nothing when stderr is not one (cron, CI)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not sys.stderr.isatty(),
                leave=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="payment-analytics")
@click.option("--warehouse", envvar="PAYMENT_ANALYTICS_WAREHOUSE", metavar="PATH|URI",
              help="Warehouse location (default ./warehouse, or $PAYMENT_ANALYTICS_WAREHOUSE).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, warehouse: str | None, debug: bool) -> None:
    """Payment analytics workspace: warehouse, metrics, reports, models and dashboards."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = _Context(warehouse, debug)


@main.command("demo-data")
@click.option("--customers", type=click.IntRange(min=10), default=20000, show_default=True,
              help="Customers to simulate.")
@click.option("--months", type=click.IntRange(1, 120), default=24, show_default=True,
              help="Months of history ending at --end.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed (same seed, same data).")
@click.option("--end", "end", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day of the data (default: today, UTC).")
@click.option("--transactions", type=click.IntRange(min=1000), default=None,
              help="Benchmark mode: scale customers to produce about this many transactions.")
@click.option("--replace", is_flag=True, help="Delete an existing warehouse at the location first.")
@click.option("--bulk", is_flag=True,
              help="Append batches without key lookups (the warehouse is new): same rows, faster at scale.")
@click.option("--skip-table", "skip_tables", multiple=True, metavar="TABLE",
              help="Simulate but do not write this table (repeatable; e.g. user_activity at 100M rows).")
@click.pass_obj
@_friendly_errors
def demo_data(obj: _Context, customers: int, months: int, seed: int, end: Any,
              transactions: int | None, replace: bool, bulk: bool, skip_tables: tuple[str, ...]) -> None:
    """Build the demo warehouse: a realistic, deterministic education platform."""
    import shutil

    from analytics_lib.synth import generate

    wh = obj.warehouse()
    if wh.is_local and Path(wh.location).exists() and any(Path(wh.location).iterdir()):
        if not replace:
            _fail(f"warehouse {wh.location} is not empty; pass --replace to rebuild it")
        shutil.rmtree(wh.location)
    bar = _progress_bar(None, "demo data", unit="step")

    def progress(stage: str, done: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total)
        bar.set_description(stage)
        bar.n = done
        bar.refresh()

    summary = generate(wh, customers=customers, months=months, seed=seed,
                       end=end.date() if end else None, transactions=transactions, progress=progress,
                       bulk=bulk, skip_tables=skip_tables)
    bar.close()
    click.echo(f"demo warehouse at {wh.location} ({summary.seconds:.1f} s, seed {seed})")
    for table, rows in summary.rows.items():
        click.echo(f"  {table:<20} {rows:>12,}")


@main.command()
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--source", "source", metavar="NAME", default=None,
              help="Ingestion source: platform-json, stripe, csv, online-retail.")
@click.option("--mapping", type=click.Path(path_type=Path), default=None,
              help="Column mapping YAML for the csv source.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--watch", is_flag=True, help="PATH is a folder: keep loading files dropped into it (docs/live.md).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="With --watch: seconds between scans of the folder.")
@click.pass_obj
@_friendly_errors
def ingest(obj: _Context, path: Path | None, source: str | None, mapping: Path | None, fmt: str,
           watch: bool, interval: float) -> None:
    """Load PATH into the warehouse through a source; every row is accounted for."""
    if watch:  # live mode: analytics_lib.live.watch
        from analytics_lib.live.cli import watch_folder_command

        return watch_folder_command(obj, path, source, mapping, interval, fmt)
    from analytics_lib.warehouse.ingest import ingest as run_ingest
    from analytics_lib.warehouse.sources import source_names

    if path is None:
        _fail("missing PATH: the file to ingest")
    if source is None:
        _fail(f"missing --source; one of: {', '.join(source_names())}")
    options: dict[str, Any] = {}
    if mapping is not None:
        options["mapping"] = mapping
    size = path.stat().st_size if path.is_file() else None
    bar = _progress_bar(size, f"ingest {path.name}")
    last = [0]

    def progress(done: int) -> None:
        bar.update(done - last[0])
        last[0] = done

    result = run_ingest(path, source, obj.warehouse(), progress=progress, **options)
    bar.close()
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    click.echo(result.summary())
    for table, counts in result.tables.items():
        click.echo(f"  {table:<20} inserted {counts['inserted']:>9,}  updated {counts['updated']:>9,}  "
                   f"unchanged {counts['unchanged']:>9,}")
    if result.reject_reasons:
        click.echo("rejected rows by reason (details in the ingest_rejects table):")
        for reason, n in sorted(result.reject_reasons.items(), key=lambda kv: -kv[1]):
            click.echo(f"  {n:>9,}  {reason}")


@main.command()
@click.option("--retention-hours", type=click.IntRange(min=0), default=168, show_default=True,
              help="Keep replaced files this long so running readers never lose them.")
@click.option("--no-vacuum", is_flag=True, help="Compact only; delete nothing.")
@click.option("--no-warm", is_flag=True, help="Do not rebuild the metric layer's history cache afterwards.")
@click.pass_obj
@_friendly_errors
def maintain(obj: _Context, retention_hours: int, no_vacuum: bool, no_warm: bool) -> None:
    """Compact small files, checkpoint and vacuum every table, then warm the metric history cache
    (so the next report or dashboard does not rebuild history from all of the data)."""
    import time

    warehouse = obj.warehouse()
    report = warehouse.compact(retention_hours=retention_hours, vacuum=not no_vacuum)
    for table, info in report.items():
        click.echo(f"{table:<20} files {info['files_before']:>5} -> {info['files_after']:<5} "
                   f"vacuumed {info['files_removed_by_vacuum']:>4}  version {info['version']}")
    if no_warm or "://" in warehouse.location or warehouse.versions().get("transactions", -1) < 0:
        return
    from analytics_lib import metrics

    started = time.monotonic()
    period = metrics.Period.parse("yesterday", timezone=warehouse.settings.timezone)
    metrics.comprehensive_analytics(period, {}, warehouse=warehouse)
    click.echo(f"metric history cache warmed in {time.monotonic() - started:.1f} s")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
@_friendly_errors
def info(obj: _Context, fmt: str) -> None:
    """Show the warehouse: location, and each table's version, files and rows."""
    wh = obj.warehouse()
    rows = wh.describe()
    if fmt == "json":
        click.echo(json.dumps({"location": wh.location, "tables": rows}, indent=2))
        return
    click.echo(f"warehouse: {wh.location}")
    for row in rows:
        click.echo(f"  {row['table']:<20} version {row['version']:>4}  files {row['files']:>5}  rows {row['rows']:>12,}")


@main.command()
@click.option("--period", "period_text", metavar="P", default=None,
              help="2024-05, 2024-Q2, 2024-W18, 2024-05-03, 2024, last-month, last-30-days, ... (default last-month)")
@click.option("--start", metavar="YYYY-MM-DD", default=None, help="First day (instead of --period).")
@click.option("--end", metavar="YYYY-MM-DD", default=None, help="Last day, inclusive (with --start).")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE[,VALUE]",
              help="Filter: currency, country, payment_method, provider, plan_type, product, campaign, discount_code.")
@click.option("--currency", default=None, help="Reporting currency (default $PAYMENT_ANALYTICS_CURRENCY or USD).")
@click.option("--timezone", default=None, help="Business time zone (default $PAYMENT_ANALYTICS_TIMEZONE).")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="table", show_default=True)
@click.pass_obj
@_friendly_errors
def analytics(obj: _Context, period_text: str | None, start: str | None, end: str | None,
              filters: tuple[str, ...], currency: str | None, timezone: str | None, fmt: str) -> None:
    """Comprehensive analytics for a period and filters (JSON: money in major units)."""
    from analytics_lib import metrics
    from analytics_lib.config import get_settings

    settings = get_settings()
    tz = timezone or settings.timezone
    if period_text and (start or end):
        _fail("give either --period or --start/--end, not both")
    if start or end:
        if not (start and end):
            _fail("--start and --end go together")
        period = metrics.Period.between(start, end, tz)  # type: ignore[arg-type]
    else:
        period = metrics.Period.parse(period_text or "last-month", tz)
    parsed = metrics.Filters.parse(list(filters))
    with metrics.MetricSession.open(obj.warehouse()) as session:
        result = metrics.comprehensive_analytics(period, parsed, currency, session=session)
    if fmt == "json":
        click.echo(result.to_json())
        return
    click.echo(f"{period.label} ({period.start} to {period.last_day}, {tz}), {result.currency}"
               + (f", filters {parsed.to_dict()}" if parsed else ""))
    for key, value in result.summary.items():
        click.echo(f"  {key:<28} {_format_value(key, value)}")
    click.echo("trends vs previous period:")
    for t in result.trends:
        pct = "" if t.change_percent is None else f"{t.change_percent:+.1%}"
        click.echo(f"  {t.metric:<28} {t.trend:<6} {pct:>8}  significance {t.significance}")


def _format_value(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if key.endswith(("_rate", "_share", "growth_vs_previous", "growth_vs_last_year", "cost_ratio")):
            return f"{value:.2%}"
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@main.group()
def models() -> None:
    """Train, evaluate and use the predictive models (churn, clv, payment_failure, fraud,
    revenue_forecast, payment_flow)."""


def _model_name(name: str) -> str:
    from analytics_lib import models as registry_models

    if name not in registry_models.names():
        _fail(f"unknown model {name!r}; models: {', '.join(registry_models.names())}")
    return name


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--param {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


@models.command("list")
@click.pass_obj
@_friendly_errors
def models_list(obj: _Context) -> None:
    """Registered models and their versions, with the headline of each scorecard."""
    from analytics_lib import models as m

    registry = m.Registry()
    click.echo(f"registry: {registry.location}")
    for name in m.names():
        versions = registry.versions(name)
        click.echo(f"  {name:<18} {len(versions)} version(s)" + (f", latest {versions[-1]}" if versions else ""))


@models.command("train")
@click.argument("name")
@click.option("--cutoff", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Train before this day, evaluate after it (default: chosen from the data).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Model parameter (JSON value).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
@_friendly_errors
def models_train(obj: _Context, name: str, cutoff: Any, params: tuple[str, ...], fmt: str) -> None:
    """Train NAME on the warehouse, score it out of time against its baseline, register it."""
    from analytics_lib import models as m

    model = m.get(_model_name(name))
    result, version = model.fit_and_register(obj.warehouse(), cutoff=cutoff.date() if cutoff else None,
                                             **_parse_params(params))
    card = result.scorecard.to_dict()
    if fmt == "json":
        click.echo(json.dumps({"model": name, "version": version, "scorecard": card}, indent=2, default=str))
        return
    click.echo(f"{name} version {version} registered")
    _print_scorecard(card)


def _print_scorecard(card: dict[str, Any]) -> None:
    split = card.get("split", {})
    click.echo(f"  split: train {split.get('train_start')} .. {split.get('cutoff')}, "
               f"evaluate {split.get('cutoff')} .. {split.get('evaluation_end')}; sizes {card.get('sizes')}")
    metric = card.get("primary_metric")
    click.echo(f"  {'metric':<22} {'model':>12} {card.get('baseline_name', 'baseline'):>22}")
    for key, value in card.get("metrics", {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            base = card.get("baseline", {}).get(key)
            base_s = f"{base:>22.4f}" if isinstance(base, (int, float)) and not isinstance(base, bool) else f"{'':>22}"
            mark = " <- primary" if key == metric else ""
            click.echo(f"  {key:<22} {value:>12.4f} {base_s}{mark}")
    click.echo(f"  beats baseline on {metric}: {'yes' if card.get('beats_baseline') else 'NO'}")


@models.command("evaluate")
@click.argument("name")
@click.option("--version", "version_id", default=None, help="A registered version (default the latest).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
@_friendly_errors
def models_evaluate(obj: _Context, name: str, version_id: str | None, fmt: str) -> None:
    """Score a registered version again on the data after its cutoff."""
    from analytics_lib import models as m

    model = m.get(_model_name(name))
    loaded = model.load(version=version_id)
    with obj.warehouse().snapshot() as snap:
        card = model.evaluate(loaded, snap)
    if fmt == "json":
        click.echo(json.dumps({"model": name, "version": loaded.metadata.version, "scorecard": card},
                              indent=2, default=str))
        return
    click.echo(f"{name} version {loaded.metadata.version}")
    _print_scorecard(card)


@models.command("predict")
@click.argument("name")
@click.option("--version", "version_id", default=None, help="A registered version (default the latest).")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Predict as of this day.")
@click.option("--id", "ids", multiple=True, help="Entity id (customer, transaction, ...); repeatable.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Riskiest N.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="json", show_default=True)
@click.pass_obj
@_friendly_errors
def models_predict(obj: _Context, name: str, version_id: str | None, as_of: Any, ids: tuple[str, ...],
                   limit: int, fmt: str) -> None:
    """Predictions of a registered model (JSON in the platform's prediction shape)."""
    from analytics_lib import models as m

    predictions = m.predict(_model_name(name), obj.warehouse(), version=version_id,
                            as_of=as_of.date() if as_of else None, ids=list(ids) or None, limit=limit)
    if fmt == "json":
        click.echo(json.dumps([p.to_dict() for p in predictions], indent=2, default=str))
        return
    for p in predictions:
        prob = "-" if p.probability is None else f"{p.probability:.3f}"
        factors = ", ".join(f.factor for f in p.key_risk_factors[:3])
        click.echo(f"{p.entity_id:<28} {prob:>7} {p.risk_level:<9} {factors}")


@models.command("fit-clv")
@click.option("--transactions", "path", type=click.Path(path_type=Path), required=True, help="CSV of transactions.")
@click.option("--customer-column", required=True)
@click.option("--date-column", required=True)
@click.option("--amount-column", required=True)
@click.option("--calibration-end", required=True, metavar="YYYY-MM-DD")
@click.option("--observation-end", default=None, metavar="YYYY-MM-DD")
@click.option("--time-unit", type=click.Choice(["days", "weeks"]), default="days", show_default=True)
@_friendly_errors
def models_fit_clv(path: Path, customer_column: str, date_column: str, amount_column: str,
                   calibration_end: str, observation_end: str | None, time_unit: str) -> None:
    """Fit BG/NBD + Gamma-Gamma on any transactions CSV; print parameters and holdout as JSON."""
    from analytics_lib.models.clv import fit_clv_file

    result = fit_clv_file(path, customer_column=customer_column, date_column=date_column,
                          amount_column=amount_column, calibration_end=calibration_end,
                          observation_end=observation_end, time_unit=time_unit)
    click.echo(json.dumps(result, indent=2, default=str))


@models.command("forecast")
@click.option("--series", "path", type=click.Path(path_type=Path), required=True, help="CSV with a date and a value.")
@click.option("--date-column", required=True)
@click.option("--value-column", required=True)
@click.option("--freq", type=click.Choice(["D", "W", "M"]), default="D", show_default=True)
@click.option("--horizon", type=click.IntRange(min=1), required=True, help="Periods to forecast.")
@click.option("--holdout", type=click.IntRange(min=1), default=None, help="Periods held out to backtest.")
@_friendly_errors
def models_forecast(path: Path, date_column: str, value_column: str, freq: str, horizon: int,
                    holdout: int | None) -> None:
    """Backtest every candidate model on any series, choose one, forecast with intervals (JSON)."""
    from analytics_lib.models.forecast import forecast_file

    result = forecast_file(path, date_column=date_column, value_column=value_column, freq=freq,
                           horizon=horizon, holdout=holdout)
    click.echo(json.dumps(result, indent=2, default=str))


@main.command()
@click.option("--markdown", is_flag=True, help="Print the data model as Markdown (docs/data-model.md).")
def schema(markdown: bool) -> None:
    """Describe the warehouse tables: grain, keys and columns."""
    from analytics_lib.warehouse import schema as model

    if markdown:
        click.echo(model.markdown())
        return
    for spec in model.TABLES.values():
        click.echo(f"{spec.name}: {spec.grain} (key: {', '.join(spec.keys)})")


# -- reports ---------------------------------------------------------------------------------------


def _settings(obj: _Context):  # type: ignore[no-untyped-def]
    from analytics_lib.config import get_settings

    settings = get_settings()
    return settings.with_warehouse(obj.warehouse_location) if obj.warehouse_location else settings


def _echo_run(record: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({"run_id": record.run_id, "report": record.report, "status": record.status,
                               "period": record.period_label, "folder": record.folder, "error": record.error,
                               "duration_s": record.duration_s, "artefacts": record.artefacts}, indent=2))
    elif record.status == "succeeded":
        click.echo(f"{record.report} {record.period_label}: succeeded in {record.duration_s:.1f} s (run {record.run_id})")
        for kind, name in record.artefacts.items():
            click.echo(f"  {kind:6} {Path(record.folder) / name.split(',')[0]}")
    if record.status != "succeeded":
        click.echo(f"{record.report} {record.period_label}: failed (run {record.run_id}, kept in {record.folder}): "
                   f"{record.error}", err=True)
        sys.exit(1)


@main.command("run")
@click.argument("name")
@click.option("--parameters", "parameters_file", type=click.Path(path_type=Path), default=None,
              help="YAML file of parameters (default parameters/NAME/default.yaml).")
@click.option("-p", "--param", "assignments", multiple=True, metavar="KEY=VALUE",
              help="One parameter (repeatable); wins over the parameters file.")
@click.option("--format", "formats", default=None, metavar="html,pdf,xlsx,csv,json",
              help="Outputs to produce (default html,pdf,xlsx,json).")
@click.option("--cell-timeout", type=click.IntRange(min=1), default=600, show_default=True,
              help="Seconds one notebook cell may run.")
@click.option("--timeout", type=click.IntRange(min=1), default=1800, show_default=True,
              help="Seconds the whole run may take.")
@click.option("--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="How this command reports the run.")
@click.pass_obj
@_friendly_errors
def run_command(obj: _Context, name: str, parameters_file: Path | None, assignments: tuple[str, ...],
                formats: str | None, cell_timeout: int, timeout: int, fmt: str) -> None:
    """Run report NAME (a notebook in notebooks/reports) into outputs/NAME/PERIOD/RUN-ID/."""
    from analytics_lib.runner import run_report

    record = run_report(name, parameters_file=parameters_file, assignments=list(assignments), formats=formats,
                        settings=_settings(obj), cell_timeout=cell_timeout, timeout=timeout,
                        log=lambda m: click.echo(m, err=True) if sys.stderr.isatty() else None)
    _echo_run(record, fmt)


@main.command("rerun")
@click.argument("run_id")
@click.option("--format", "formats", default=None, metavar="html,pdf,...", help="Outputs (default: the run's).")
@click.option("--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
@_friendly_errors
def rerun_command(obj: _Context, run_id: str, formats: str | None, fmt: str) -> None:
    """Reproduce a past run on the same warehouse versions, parameters and clock."""
    from analytics_lib.runner import rerun

    _echo_run(rerun(run_id, settings=_settings(obj), formats=formats), fmt)


@main.command("reports")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
@_friendly_errors
def reports_command(obj: _Context, fmt: str) -> None:
    """List the reports, their parameters and their latest good run."""
    from analytics_lib.runner import catalogue, latest

    settings = _settings(obj)
    items = []
    for report in catalogue(settings).values():
        good = latest(settings.outputs, report.name)
        items.append({"name": report.name, "title": report.description,
                      "parameters": {p.name: {"type": p.type_name, "default": p.default, "help": p.help}
                                     for p in report.parameters.values()},
                      "latest": None if good is None else {"run_id": good.run_id, "period": good.period_label,
                                                            "folder": good.folder}})
    if fmt == "json":
        click.echo(json.dumps(items, indent=2, default=str))
        return
    for item in items:
        last = item["latest"]
        click.echo(f"{item['name']:26} {item['title']}" + (f"  (latest: {last['period']}, {last['run_id']})" if last else ""))


@main.command("runs")
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
@_friendly_errors
def runs_command(obj: _Context, name: str | None, limit: int, fmt: str) -> None:
    """Report run history (newest first), optionally for one report."""
    from analytics_lib.runner import all_runs

    records = all_runs(_settings(obj).outputs, name)[:limit]
    if fmt == "json":
        click.echo(json.dumps([{k: v for k, v in r.__dict__.items()} for r in records], indent=2, default=str))
        return
    for r in records:
        took = "" if r.duration_s is None else f"{r.duration_s:7.1f} s"
        click.echo(f"{r.run_id}  {r.report:24} {r.period_label:24} {r.status:9} {took}  {r.error or ''}")


from analytics_lib.scheduling.cli import schedule  # noqa: E402, I001 - `schedule` commands live in scheduling
main.add_command(schedule)
from analytics_lib.dashboards.cli import dashboards  # noqa: E402, I001 - registered last, like the other groups
main.add_command(dashboards)
from analytics_lib.live.cli import alerts_command, simulate_command  # noqa: E402, I001 - live mode (docs/live.md)
main.add_command(simulate_command)
main.add_command(alerts_command)
if __name__ == "__main__":  # pragma: no cover
    main()
