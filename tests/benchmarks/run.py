"""Benchmarks: ``make bench`` (or ``python -m tests.benchmarks.run --scale 1M,10M``).

Prints ONE table of timings from one run on this machine (each row: wall seconds, process CPU
seconds, peak memory and the 1-minute load average before/after it; the header: the machine and
its load) and writes the same numbers as JSON to ``bench-results/``. Not a test: nothing here
asserts a time; docs/performance.md records the numbers. Each stage runs in its own process so its
peak memory (max RSS) is its own. The run fails (exit 1) when pandas, polars or Spark disagree with
DuckDB on the headline numbers (transactions, volume, net revenue, new customers, MRR).

Per scale (``--scale 1M,10M,100M``; ``--rows N`` is one scale of N):

* generator   ``demo-data --transactions N`` into a fresh warehouse (all tables), unless reused;
* metrics     ``comprehensive_analytics`` for the last full month on DuckDB: a new session's first
              call, then warm (median of 3, each rebuilding every table of the period; the history
              tables stay cached); the 24-hour real-time window;
* floor       one DuckDB statement reading every column the suite reads (``pandas_suite.COLUMNS``,
              a hash per value so nothing is skipped): of the period's and the previous period's
              rows (what a warm suite must read) and of all rows up to the period end (what a
              suite without its history tables must read);
* pandas      the straightforward pandas suite (tables loaded first; load and compute timed apart);
* polars      the same suite the natural polars way (the same way);
* spark       the workspace's Spark engine (``PAYMENT_ANALYTICS_ENGINE=spark``, local[*]) at scales up
              to 10M: session start, first call, warm (median of ``--spark-runs``); CPU and memory of
              the Python process and the JVM together;
* ingest      (first scale only) the generated payments exported as platform-json (at most
              ``--ingest-rows`` lines, 200k by default) and ingested into an empty warehouse, then
              again (all unchanged);
* report      ``payment-analytics run daily_operations`` for the last full day, end to end
              (``tests/benchmarks/report_suite.py``'s ``run(warehouse, period)`` when it exists);
* dashboard   the operations dashboard: start, then one refresh (median of 5);
* models      ``tests.benchmarks.models_suite.stage_models``: training on the demo warehouse and
              scoring the most recent ``--score-rows`` attempts of the warehouse under test.

Pandas and polars hold the tables in memory: above the memory of the machine (estimated from the
largest scale measured in this run or in earlier results in ``bench-results/``) the row says so
instead of running. Warehouses: ``--keep DIR`` keeps them (``DIR/generated`` for one scale,
``DIR/<scale>/generated`` for several); ``--warehouse 10M=PATH`` uses an existing warehouse for a
scale and never writes into its folder except the metric layer's own persistent cache; scratch files
(export, ingested copy, report outputs, model registry) go to ``--scratch`` (default: temporary).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.benchmarks.machine import describe

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results"
HEADLINE = ("total_transactions", "total_volume", "net_revenue", "new_customers", "mrr")
SPARK_MAX_ROWS = 10_000_000
SPARK_SKIP_REASON = ("not run above 10M: local Spark on this machine is the 1M/10M comparison; "
                     "beyond one machine it runs on a cluster (docs/scaling.md)")
ALL_STAGES = ("generate", "metrics", "floor", "pandas", "polars", "spark", "ingest", "report", "dashboard",
              "models")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process (all threads): what the work costs, whatever else the shared
    machine runs meanwhile (wall-clock time is not)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _row(stage: str, seconds: float, cpu: float | None, peak_mb: float | None, note: str = "",
         kind: str = "") -> dict:
    """One line of the table; ``kind`` marks the rows the ratios are taken of."""
    return {"stage": stage, "seconds": seconds, "cpu": cpu, "peak_mb": peak_mb, "note": note, "kind": kind}


def _metric_cache_on() -> bool:
    from analytics_lib.metrics import cache

    return cache.enabled()


def _last_full_month(session) -> tuple[Any, datetime]:  # type: ignore[no-untyped-def]
    from analytics_lib.metrics import Period

    last = session.snapshot.scalar("SELECT max(created_at) FROM transactions")
    tz = session.settings.timezone
    first_of_month = last.astimezone(Period.month(2000, 1, tz).tz).date().replace(day=1)
    return Period.month(first_of_month.year, first_of_month.month, tz).previous(), last


def _period(label: str) -> Any:
    from analytics_lib.config import get_settings
    from analytics_lib.metrics import Period

    return Period.parse(label, get_settings().timezone)


def _headline(result: Any) -> dict[str, float]:
    s = result.sections
    return {
        "total_transactions": s["transactions"].summary["total_transactions"],
        "total_volume": s["transactions"].summary["total_volume"],
        "net_revenue": s["revenue"].summary["net_revenue"],
        "new_customers": s["customers"].summary["new_customers"],
        "mrr": s["recurring_revenue"].summary["mrr"],
    }


def _disagreements(reference: dict[str, float], other: dict[str, float]) -> dict[str, list[float]]:
    return {key: [reference[key], other.get(key)] for key in HEADLINE
            if other.get(key) is None
            or abs(reference[key] - other[key]) > 1e-6 * max(1.0, abs(reference[key])) + 1e-3}


# -- stages (each runs in a subprocess; arguments and results are JSON) -----------------------


def stage_generate(a: dict) -> dict:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    start, cpu = time.perf_counter(), _cpu_seconds()
    summary = generate(Warehouse(a["warehouse"]), transactions=a["rows"], seed=11)
    seconds = time.perf_counter() - start
    n = summary.rows["transactions"]
    return {"rows": [_row(f"demo generator: {n:,} transactions ({sum(summary.rows.values()):,} rows, all tables)",
                          seconds, _cpu_seconds() - cpu, _peak_mb(), f"{n / seconds:,.0f} tx/s")]}


def stage_metrics(a: dict) -> dict:
    from analytics_lib import metrics as m
    from analytics_lib.warehouse import Warehouse

    rows = []
    with m.MetricSession.open(Warehouse(a["warehouse"])) as session:
        transactions = session.snapshot.scalar("SELECT count(*) FROM transactions")
        period, last = _last_full_month(session)
        # first call of a new session: builds the history tables (or reads them from the
        # persistent metric cache when PAYMENT_ANALYTICS_METRIC_CACHE is on and it has them)
        start, cpu = time.perf_counter(), _cpu_seconds()
        m.comprehensive_analytics(period, session=session)
        cache = "persistent cache on" if _metric_cache_on() else "persistent cache off"
        rows.append(_row(f"DuckDB suite {period.label}: first call of a session ({cache})",
                         time.perf_counter() - start, _cpu_seconds() - cpu, _peak_mb(), kind="suite_first"))
        times, cpus = [], []
        for _ in range(a.get("runs", 3)):
            session.forget_scope()  # every table of a period is built again; history stays cached
            start, cpu = time.perf_counter(), _cpu_seconds()
            result = m.comprehensive_analytics(period, session=session)
            times.append(time.perf_counter() - start)
            cpus.append(_cpu_seconds() - cpu)
        rows.append(_row(f"DuckDB suite {period.label}: warm (median of {len(times)})", statistics.median(times),
                         statistics.median(cpus), _peak_mb(), "this workspace", kind="suite"))
        for label, step in (("the same window again", timedelta(0)), ("a new window each call", timedelta(minutes=1))):
            rt, rt_cpu = [], []
            for i in range(1, 6):  # a new "now" builds the window's payments again (a live dashboard)
                start, cpu = time.perf_counter(), _cpu_seconds()
                m.realtime(session, now=last + timedelta(minutes=1) + i * step)
                rt.append(time.perf_counter() - start)
                rt_cpu.append(_cpu_seconds() - cpu)
            rows.append(_row(f"real-time 24h window, {label} (median of 5)", statistics.median(rt),
                             statistics.median(rt_cpu), _peak_mb()))
    return {"rows": rows, "numbers": _headline(result), "period": period.label, "last": last.isoformat(),
            "transactions": transactions}


# what the floor reads of each table: (time column, whole history up to the period end?)
FLOOR_TABLES = {"transactions": ("created_at", True), "refunds": ("created_at", False),
                "disputes": ("created_at", False), "fees": ("created_at", False), "fx_rates": (None, True),
                "subscription_events": ("occurred_at", True), "marketing_spend": ("spend_date", False)}


def floor_sql(start: datetime, end: datetime, history: bool) -> str:
    """One statement reading every column the suite reads (``pandas_suite.COLUMNS``) of the rows in
    [start, end), or for the tables the numbers need all history of (``history``), of every row
    before ``end``. ``max(hash(col))`` makes DuckDB decode each value (``count(col)`` of a NOT NULL
    column becomes ``count(*)`` and reads nothing)."""
    from tests.benchmarks.pandas_suite import COLUMNS

    parts = []
    for table, cols in COLUMNS.items():
        column, whole = FLOOR_TABLES[table]
        if column is None:
            where = ""
        elif history and whole:
            where = f"WHERE {column} < TIMESTAMPTZ '{end.isoformat()}'"
        else:
            where = (f"WHERE {column} >= TIMESTAMPTZ '{start.isoformat()}' "
                     f"AND {column} < TIMESTAMPTZ '{end.isoformat()}'")
        hashes = ", ".join(f"max(hash({c})) AS {table}_{c}" for c in cols)
        parts.append(f"(SELECT count(*) AS {table}_rows, {hashes} FROM {table} {where})")
    return "SELECT * FROM " + ", ".join(parts)


def stage_floor(a: dict) -> dict:
    from analytics_lib.warehouse import Warehouse
    from tests.benchmarks.pandas_suite import COLUMNS

    period = _period(a["period"])
    rows = []
    with Warehouse(a["warehouse"]).snapshot(tables=list(COLUMNS)) as snap:
        for label, start, history, kind in (
                (f"scan floor: the suite's columns, {period.previous().label} + {period.label} rows",
                 period.previous().start_utc, False, "floor_period"),
                (f"scan floor: the suite's columns, all rows before the end of {period.label}",
                 period.previous().start_utc, True, "floor_history")):
            sql = floor_sql(start, period.end_utc, history)
            snap.con.execute(sql).fetchall()  # the files in the OS cache, as for the warm suite
            times, cpus = [], []
            for _ in range(3):
                t, cpu = time.perf_counter(), _cpu_seconds()
                counts = snap.con.execute(sql).fetchall()[0]
                times.append(time.perf_counter() - t)
                cpus.append(_cpu_seconds() - cpu)
            n = counts[0]  # transactions read
            rows.append(_row(label + " (median of 3)", statistics.median(times), statistics.median(cpus), _peak_mb(),
                             f"{n:,} payments", kind=kind))
    return {"rows": rows}


def _frame_stage(module: str, a: dict) -> dict:
    from analytics_lib.warehouse import Warehouse

    suite = importlib.import_module(f"tests.benchmarks.{module}_suite")
    load_s, compute_s, numbers = suite.timed(Warehouse(a["warehouse"]), _period(a["period"]))
    compute_cpu = numbers.pop("_compute_cpu_seconds")
    return {"rows": [
        _row(f"{module}: load the tables into memory", load_s, None, None),
        _row(f"{module} suite {a['period']} (data in memory)", compute_s, compute_cpu, _peak_mb(), kind=module),
    ], "numbers": numbers}


def stage_pandas(a: dict) -> dict:
    return _frame_stage("pandas", a)


def stage_polars(a: dict) -> dict:
    return _frame_stage("polars", a)


class _ProcessTree:
    """CPU seconds and peak resident memory of this process and its children (Spark's JVM)."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _procs(self) -> list:
        return [self._me, *self._me.children(recursive=True)]

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            for proc in self._procs():
                with contextlib.suppress(Exception):  # a child that just ended
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total / 2**20)

    def cpu(self) -> float:
        total = 0.0
        for proc in self._procs():
            with contextlib.suppress(Exception):  # a child that just ended
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        self._stop.set()


def stage_spark(a: dict) -> dict:
    from analytics_lib import metrics as m
    from analytics_lib.warehouse import Warehouse

    tree = _ProcessTree()
    period = _period(a["period"])
    rows = []
    try:
        start, cpu = time.perf_counter(), tree.cpu()
        session = m.MetricSession.open(Warehouse(a["warehouse"]))
        rows.append(_row(f"Spark local[*]: start a session ({type(session).__name__})", time.perf_counter() - start,
                         tree.cpu() - cpu, tree.peak))
        try:
            start, cpu = time.perf_counter(), tree.cpu()
            result = m.comprehensive_analytics(period, session=session)
            rows.append(_row(f"Spark suite {period.label}: first call (builds the history tables)",
                             time.perf_counter() - start, tree.cpu() - cpu, tree.peak))
            times, cpus = [], []
            for _ in range(a["runs"]):
                session.forget_scope()
                start, cpu = time.perf_counter(), tree.cpu()
                result = m.comprehensive_analytics(period, session=session)
                times.append(time.perf_counter() - start)
                cpus.append(tree.cpu() - cpu)
            if times:
                rows.append(_row(f"Spark suite {period.label}: warm (median of {len(times)})", statistics.median(times),
                                 statistics.median(cpus), tree.peak, "Python + JVM", kind="spark"))
        finally:
            session.close()
    finally:
        tree.stop()
    return {"rows": rows, "numbers": _headline(result)}


def stage_export(a: dict) -> dict:
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.sources.platform_json import to_platform_json

    export = Path(a["scratch"]) / "payments.jsonl"
    start, cpu = time.perf_counter(), _cpu_seconds()
    n = 0
    with Warehouse(a["warehouse"]).snapshot(tables=["transactions", "fees"]) as snap, open(export, "w") as out:
        # the first payments, then only their fees (all fees of a 10M warehouse, 24M rows as
        # Python dicts, do not fit in memory)
        snap.con.execute("CREATE TEMP TABLE export_payments AS "
                         f"SELECT * FROM transactions ORDER BY created_at, transaction_id LIMIT {int(a['limit'])}")
        fees: dict[str, list[dict]] = {}
        for fee in snap.arrow("SELECT f.* FROM fees f SEMI JOIN export_payments p USING (transaction_id)").to_pylist():
            fees.setdefault(fee["transaction_id"], []).append(fee)
        reader = snap.con.sql("SELECT * FROM export_payments ORDER BY created_at, transaction_id").to_arrow_reader(50_000)
        for batch in reader:
            for row in batch.to_pylist():
                out.write(json.dumps(to_platform_json(row, fees.get(row["transaction_id"]))) + "\n")
                n += 1
    return {"rows": [_row(f"export {n:,} payments as platform-json ({export.stat().st_size / 1e6:,.0f} MB, setup)",
                          time.perf_counter() - start, _cpu_seconds() - cpu, _peak_mb())], "n": n}


def stage_ingest(a: dict) -> dict:
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.ingest import ingest

    scratch = Path(a["scratch"])
    export, n = scratch / "payments.jsonl", a["n"]
    rows = []
    shutil.rmtree(scratch / "ingested", ignore_errors=True)
    wh = Warehouse(scratch / "ingested")
    for label in ("into an empty warehouse", "same file again, all unchanged"):
        start, cpu = time.perf_counter(), _cpu_seconds()
        res = ingest(export, "platform-json", wh)
        seconds = time.perf_counter() - start
        if not res.balanced or res.rejected:
            raise RuntimeError(res.summary())
        rows.append(_row(f"ingest platform-json {n:,} rows {label}", seconds, _cpu_seconds() - cpu, _peak_mb(),
                         f"{n / seconds:,.0f} rows/s"))
    export.unlink()
    return {"rows": rows}


def _children_usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def report_day(last: datetime) -> str:
    """The last full local day of data before ``last`` (the newest payment)."""
    from analytics_lib.config import get_settings
    from analytics_lib.metrics import Period

    tz = Period.month(2000, 1, get_settings().timezone).tz
    return (last.astimezone(tz).date() - timedelta(days=1)).isoformat()


def stage_report(a: dict) -> dict:
    day = report_day(datetime.fromisoformat(a["last"]))
    formats = a.get("formats", "html,pdf")
    if importlib.util.find_spec("tests.benchmarks.report_suite") is not None:
        from tests.benchmarks import report_suite

        start, cpu = time.perf_counter(), _cpu_seconds()
        out = report_suite.run(a["warehouse"], day)
        rows = out.get("rows") if isinstance(out, dict) else None
        if rows:
            return {"rows": [_row(f"report (report_suite): {r['stage']}", r["seconds"], r.get("cpu", r.get("cpu_seconds")),
                                  r.get("peak_mb"), r.get("note", r.get("rate", ""))) for r in rows], "detail": out}
        return {"rows": [_row(f"daily_operations {day} end to end (report_suite)", time.perf_counter() - start,
                              _cpu_seconds() - cpu, _peak_mb())], "detail": out}
    env = {**os.environ, "PAYMENT_ANALYTICS_OUTPUTS": str(Path(a["scratch"]) / "outputs")}
    # this checkout's code (PYTHONPATH, set by _run_stage) in the CLI, the runner and the kernel
    command = [sys.executable, "-m", "analytics_lib.cli", "--warehouse", a["warehouse"], "run",
               "daily_operations", "-p", f"period={day}", "--format", formats, "--output", "json"]
    cpu0, _ = _children_usage()
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    cpu1, peak = _children_usage()
    if proc.returncode != 0:
        raise RuntimeError(f"daily_operations failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"rows": [_row(f"report: `payment-analytics run daily_operations` {day} ({formats}), end to end",
                          seconds, cpu1 - cpu0, peak, "CPU: CLI, kernel, browser; peak: largest process")]}


def stage_dashboard(a: dict) -> dict:
    from analytics_lib.dashboards import open_dashboard

    last = datetime.fromisoformat(a["last"])
    now = min(last, datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)  # a full live window
    start, cpu = time.perf_counter(), _cpu_seconds()
    board = open_dashboard("operations", warehouse=a["warehouse"], clock=lambda: now)
    rows = [_row("operations dashboard: start (first snapshot and data)", time.perf_counter() - start,
                 _cpu_seconds() - cpu, _peak_mb())]
    if getattr(board, "error", None):
        raise RuntimeError(f"operations dashboard: {board.error}")
    times, cpus = [], []
    for _ in range(5):
        start, cpu = time.perf_counter(), _cpu_seconds()
        board.refresh()
        times.append(time.perf_counter() - start)
        cpus.append(_cpu_seconds() - cpu)
        if board.error is not None:
            raise RuntimeError(f"operations dashboard refresh: {board.error}")
    rows.append(_row("operations dashboard: one refresh (fresh snapshot + every widget, median of 5)",
                     statistics.median(times), statistics.median(cpus), _peak_mb()))
    return {"rows": rows}


def stage_models(a: dict) -> dict:
    from tests.benchmarks.models_suite import stage_models as models

    out = models(Path(a["scratch"]), a["score_rows"], Path(a["warehouse"]))
    rows = [_row(f"models: {r['stage']}", r["seconds"], r.get("cpu_seconds"), r.get("peak_mb"), r.get("rate", ""))
            for r in out["rows"] if not r["stage"].startswith(" ")]  # step-by-step rows stay in the JSON
    return {"rows": rows, "detail": out}


STAGES = {"generate": stage_generate, "metrics": stage_metrics, "floor": stage_floor, "pandas": stage_pandas,
          "polars": stage_polars, "spark": stage_spark, "export": stage_export, "ingest": stage_ingest,
          "report": stage_report, "dashboard": stage_dashboard, "models": stage_models}


def _load1() -> float:
    return os.getloadavg()[0]


class StageFailed(RuntimeError):
    pass


def _run_stage(name: str, args: dict, env: dict[str, str] | None = None, timeout: float | None = None) -> dict:
    before = _load1()
    # its own process group, so a stage that runs out of time is ended with its children (a JVM)
    proc = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.run", "--stage", name, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                                str(ROOT), os.environ.get("PYTHONPATH")])), **(env or {})})
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise StageFailed(f"did not finish in {timeout:.0f} s") from exc
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if proc.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        # the error, not the last line of a Java stack trace
        last = [line for line in lines if not line[:1].isspace()][-1:] or lines[-1:] or [f"exit code {proc.returncode}"]
        print(f"stage {name} failed:\n{stderr[-3000:]}", file=sys.stderr)
        raise StageFailed(f"failed: {last[0][:200]}")
    out = json.loads(stdout.strip().splitlines()[-1])
    load = f"{before:.1f}-{_load1():.1f}"
    for row in out["rows"]:
        row["load"] = load
    return out


# -- scales, memory estimates --------------------------------------------------------------


def parse_scale(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a scale: {text!r} (e.g. 20k, 1M, 10M, 100M)")
    return int(float(match[1]) * {"": 1, "k": 1_000, "m": 1_000_000}[match[2].lower()])


def scale_label(rows: int) -> str:
    if rows >= 1_000_000 and rows % 100_000 == 0:
        return f"{rows / 1_000_000:g}M"
    if rows >= 1_000 and rows % 100 == 0:
        return f"{rows / 1_000:g}k"
    return str(rows)


def _memory_mb() -> float:
    with open("/proc/meminfo") as handle:
        return int(handle.readline().split()[1]) / 1024


def _known_peaks(engine: str, measured: list[tuple[int, float]]) -> list[tuple[int, float, str]]:
    """(transactions, peak MB, where) of earlier in-memory runs: this run's first, then bench-results."""
    found = [(n, peak, "this run") for n, peak in measured]
    if not found and RESULTS.is_dir():
        for path in sorted(RESULTS.glob("bench-*.json"), reverse=True):
            if path.name == "bench-partial.json":
                continue
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for scale in (doc.get("scales") or {}).values():
                peak = (scale.get("peaks") or {}).get(engine)
                if peak and scale.get("transactions"):
                    found.append((scale["transactions"], peak, path.name))
    return found


def estimate_peak_mb(engine: str, transactions: int, measured: list[tuple[int, float]]) -> tuple[float, str] | None:
    """Peak memory of the in-memory suite at ``transactions``, scaled linearly from the largest
    earlier measurement (None if there is none)."""
    known = _known_peaks(engine, measured)
    if not known:
        return None
    n, peak, where = max(known)
    return peak * transactions / n, f"{peak / 1024:.1f} GB at {n:,} transactions, {where}"


# -- the run ---------------------------------------------------------------------------------


def _warehouse_for(rows: int, ns: argparse.Namespace, base: Path, several: bool) -> tuple[Path, bool]:
    """(warehouse folder, whether the bench generates it)."""
    label = scale_label(rows)
    if label in ns.given:
        return Path(ns.given[label]), False
    folder = (base / label if several else base) / "generated"
    reuse = "generate" in ns.skip and (folder / "transactions").is_dir()
    return folder, not reuse


def run_scale(rows: int, ns: argparse.Namespace, base: Path, scratch_root: Path, several: bool,
              measured: dict[str, list[tuple[int, float]]], first: bool = True) -> dict:
    """Every stage at one scale (ingestion only at the run's first scale: it loads an export of
    ``--ingest-rows`` payments into an empty warehouse, which does not depend on the scale)."""
    label = scale_label(rows)
    scratch = scratch_root / label
    scratch.mkdir(parents=True, exist_ok=True)
    warehouse, generate = _warehouse_for(rows, ns, base, several)
    out: dict[str, Any] = {"rows": [], "warehouse": str(warehouse), "peaks": {}, "disagreements": {}, "skipped": {}}

    def add(result: dict) -> dict:
        for row in result["rows"]:
            row["scale"] = label
        out["rows"] += result["rows"]
        return result

    def skip(stage: str, reason: str, note: str = "not run") -> None:
        out["skipped"][stage] = reason
        out["rows"].append({"scale": label, "stage": f"{stage}: {reason}", "seconds": None, "cpu": None,
                            "peak_mb": None, "note": note, "load": "", "kind": ""})

    def attempt(stage: str, args: dict, **kwargs: Any) -> dict | None:
        """A stage's result; a failure (or timeout) becomes a row of the table, not the end of the run."""
        try:
            return add(_run_stage(stage, args, **kwargs))
        except StageFailed as exc:
            skip(stage, str(exc), note="FAILED")
            out.setdefault("failed", {})[stage] = str(exc)
            return None

    if generate:
        shutil.rmtree(warehouse, ignore_errors=True)
        add(_run_stage("generate", {"warehouse": str(warehouse), "rows": rows}))
    elif not (warehouse / "transactions").is_dir():
        raise SystemExit(f"no warehouse at {warehouse} for {label}")
    base_args = {"warehouse": str(warehouse), "scratch": str(scratch)}
    met = add(_run_stage("metrics", base_args))
    out.update(period=met["period"], transactions=met["transactions"], numbers=met["numbers"])
    args = {**base_args, "period": met["period"], "last": met["last"]}
    if "floor" not in ns.skip:
        attempt("floor", args)
    for engine in ("pandas", "polars"):
        if engine in ns.skip:
            continue
        estimate = estimate_peak_mb(engine, met["transactions"], measured[engine])
        if estimate and estimate[0] > ns.memory_gb * 1024:
            skip(engine, f"needs about {estimate[0] / 1024:.0f} GB (from {estimate[1]}), more than the "
                         f"{ns.memory_gb:.0f} GB memory limit")
            continue
        if estimate is None and met["transactions"] > 20_000_000:
            skip(engine, "no smaller measurement to estimate its memory from: run 10M first")
            continue
        res = attempt(engine, args)
        if res is None:
            continue
        out["peaks"][engine] = res["rows"][-1]["peak_mb"]
        measured[engine].append((met["transactions"], res["rows"][-1]["peak_mb"]))
        out[f"{engine}_numbers"] = res["numbers"]
        if bad := _disagreements(met["numbers"], res["numbers"]):
            out["disagreements"][engine] = bad
    if "spark" not in ns.skip:
        if met["transactions"] > SPARK_MAX_ROWS * 1.05:
            skip("Spark", SPARK_SKIP_REASON)
        elif importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
            skip("Spark", "pyspark (the `spark` extra) or java is not installed")
        else:
            res = attempt("spark", {**args, "runs": ns.spark_runs}, timeout=ns.spark_timeout,
                          env={"PAYMENT_ANALYTICS_ENGINE": "spark", "SPARK_LOCAL_IP": "127.0.0.1"})
            if res is not None:
                out["spark_numbers"] = res["numbers"]
            if res is not None and (bad := _disagreements(met["numbers"], res["numbers"])):
                out["disagreements"]["spark"] = bad
    if "ingest" not in ns.skip and first and (exported := attempt("export", {**args, "limit": ns.ingest_rows})):
        attempt("ingest", {**args, "n": exported["n"]})
    if "report" not in ns.skip and (res := attempt("report", {**args, "formats": ns.report_formats})):
        out["report"] = res.get("detail")
    if "dashboard" not in ns.skip:
        attempt("dashboard", args)
    if "models" not in ns.skip and (res := attempt("models", {**args, "score_rows": ns.score_rows})):
        out["models"] = res.get("detail")
    out["ratios"] = ratios(out["rows"])
    return out


def ratios(rows: list[dict]) -> dict[str, float]:
    """Wall-clock and CPU ratios of one scale's rows (other / this workspace's warm suite)."""
    kinds = {r["kind"]: r for r in rows if r.get("kind") and r["seconds"] is not None}
    warm, first = kinds.get("suite"), kinds.get("suite_first")
    if warm is None:
        return {}
    out: dict[str, float] = {}
    if floor := kinds.get("floor_period"):
        out["suite_over_period_floor"] = warm["seconds"] / floor["seconds"]
        out["suite_cpu_over_period_floor_cpu"] = warm["cpu"] / max(floor["cpu"], 1e-9)
    if (floor := kinds.get("floor_history")) and first:
        out["first_call_over_history_floor"] = first["seconds"] / floor["seconds"]
        out["suite_over_history_floor"] = warm["seconds"] / floor["seconds"]
    for engine in ("pandas", "polars", "spark"):
        if other := kinds.get(engine):
            out[f"{engine}_over_suite"] = other["seconds"] / warm["seconds"]
            if other["cpu"] and warm["cpu"]:
                out[f"{engine}_cpu_over_suite_cpu"] = other["cpu"] / warm["cpu"]
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(report: dict) -> None:
    machine = report["machine"]
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    print(f"load average (1/5/15 min): {' '.join(report['load_start'])} at start, "
          f"{' '.join(report['load_end'])} at end; {report['wall_seconds']:.0f} s in all")
    print(f"| {'scale':>5} | {'measurement':<96} | {'wall s':>8} | {'CPU s':>8} | {'peak MB':>8} | {'load':>9} | "
          f"{'notes':<34} |")
    print(f"|{'-' * 7}|{'-' * 98}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 11}|{'-' * 36}|")
    for row in report["rows"]:
        print(f"| {row['scale']:>5} | {row['stage']:<96} | {_fmt(row['seconds'], '8.3f'):>8} | "
              f"{_fmt(row['cpu'], '8.2f'):>8} | {_fmt(row['peak_mb'], '8,.0f'):>8} | {row.get('load', ''):>9} | "
              f"{row.get('note', ''):<34} |")
    for label, scale in report["scales"].items():
        r = scale["ratios"]
        parts = []
        if "suite_over_period_floor" in r:
            parts.append(f"warm suite = {r['suite_over_period_floor']:.1f}x the period scan floor "
                         f"({r['suite_cpu_over_period_floor_cpu']:.1f}x by CPU)")
        if "first_call_over_history_floor" in r:
            parts.append(f"first call = {r['first_call_over_history_floor']:.1f}x the history scan floor "
                         f"(warm suite {r['suite_over_history_floor']:.1f}x)")
        for engine in ("pandas", "polars", "spark"):
            if f"{engine}_over_suite" in r:
                cpu = r.get(f"{engine}_cpu_over_suite_cpu")
                parts.append(f"{engine} / suite {r[f'{engine}_over_suite']:.1f}x wall"
                             + (f", {cpu:.1f}x CPU" if cpu else ""))
        compared = [e for e in ("pandas", "polars", "spark") if f"{e}_numbers" in scale]
        if scale["disagreements"]:
            parts.append(f"DISAGREE: {scale['disagreements']}")
        elif compared:
            parts.append(f"headline numbers agree ({', '.join(compared)} vs DuckDB)")
        print(f"{label} ({scale.get('transactions', 0):,} transactions, {scale.get('period')}): " + "; ".join(parts))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", help="comma-separated scales in transactions, e.g. 1M,10M,100M")
    parser.add_argument("--rows", type=int, help="one scale of ROWS transactions (default 1M)")
    parser.add_argument("--ingest-rows", type=int, default=200_000,
                        help="payments to export and ingest (at the first scale)")
    parser.add_argument("--score-rows", type=int, default=1_000_000, help="attempts the models score per model")
    parser.add_argument("--spark-runs", type=int, default=3, help="warm Spark suites to take the median of")
    parser.add_argument("--spark-timeout", type=float, default=3600, help="seconds the Spark stage may take")
    parser.add_argument("--report-formats", default="html,pdf", help="formats of the timed report run")
    parser.add_argument("--memory-gb", type=float, default=_memory_mb() / 1024,
                        help="memory pandas/polars may need (default: the machine's)")
    parser.add_argument("--skip", action="append", default=[], choices=ALL_STAGES, help="skip a stage (repeatable)")
    parser.add_argument("--keep", metavar="DIR", help="keep the generated warehouses in DIR (default: temporary)")
    parser.add_argument("--warehouse", action="append", default=[], metavar="SCALE=PATH",
                        help="use the existing warehouse PATH for SCALE (read; nothing generated)")
    parser.add_argument("--scratch", metavar="DIR", help="scratch files (default: temporary, removed)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("stage_args", nargs="?", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.stage:  # inside a stage subprocess
        print(json.dumps(STAGES[ns.stage](json.loads(ns.stage_args)), default=str))
        return {}

    scales = [parse_scale(s) for s in ns.scale.split(",")] if ns.scale else [ns.rows or 1_000_000]
    if ns.scale and ns.rows:
        parser.error("give --scale or --rows, not both")
    ns.given = {}
    for item in ns.warehouse:
        key, _, path = item.partition("=")
        if not path:
            parser.error(f"--warehouse {item!r}: expected SCALE=PATH")
        ns.given[scale_label(parse_scale(key))] = path
    base = Path(ns.keep) if ns.keep else Path(tempfile.mkdtemp(prefix="pa-bench-"))
    scratch = Path(ns.scratch) if ns.scratch else Path(tempfile.mkdtemp(prefix="pa-bench-scratch-"))
    base.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    with open("/proc/loadavg") as handle:
        load_start = handle.read().split()[:3]
    versions = {}
    for name in ("polars", "pyspark"):
        try:
            versions[name] = importlib.metadata.version(name)
        except Exception:  # noqa: BLE001 - not installed
            versions[name] = "not installed"
    report: dict = {"machine": {**describe(), **versions}, "started": datetime.now(UTC).isoformat(),
                    "scales": {}, "load_start": load_start}
    started = time.perf_counter()
    measured: dict[str, list[tuple[int, float]]] = {"pandas": [], "polars": []}
    try:
        for i, rows in enumerate(sorted(scales)):
            report["scales"][scale_label(rows)] = run_scale(rows, ns, base, scratch, len(scales) > 1, measured,
                                                            first=i == 0)
            RESULTS.mkdir(exist_ok=True)  # what is done so far, should a later scale not finish
            (RESULTS / "bench-partial.json").write_text(json.dumps(report, indent=2, default=str))
    finally:
        if not ns.keep:
            shutil.rmtree(base, ignore_errors=True)
        if not ns.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    with open("/proc/loadavg") as handle:
        report["load_end"] = handle.read().split()[:3]
    report["wall_seconds"] = time.perf_counter() - started
    report["rows"] = [row for scale in report["scales"].values() for row in scale["rows"]]
    print_table(report)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{'_'.join(report['scales'])}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"results: {out}")
    report["results_file"] = str(out)
    failed = {label: scale["failed"] for label, scale in report["scales"].items() if scale.get("failed")}
    if failed:
        print(f"FAILED stages: {failed}")
    if any(scale["disagreements"] for scale in report["scales"].values()) or failed:
        if argv is None:
            sys.exit(1)
        raise AssertionError(f"engines disagree or stages failed: "
                             f"{[s['disagreements'] for s in report['scales'].values()]} {failed}")
    return report


if __name__ == "__main__":
    main()
