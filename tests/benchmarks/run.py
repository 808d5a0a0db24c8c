"""Benchmarks: ``make bench`` (or ``python -m tests.benchmarks.run --rows N``).

Prints one table of timings from one run on this machine and writes the same numbers as JSON
to ``bench-results/``. Not a test: nothing here asserts a time; docs/performance.md records the
numbers with the machine description. Each stage runs in its own process so its peak memory
(max RSS) is its own.

Stages:
* generator  ``demo-data --transactions N`` into a fresh warehouse (all tables);
* metrics    ``comprehensive_analytics`` for the last full month: the first call of a session, then
             warm (median of 3 runs, each rebuilding every table of the period; the history tables
             stay cached), with wall-clock and process CPU time; the 24-hour real-time window; and
             the same suite in straightforward pandas
             (tables loaded into memory first; load and compute timed separately); the two must
             agree on the headline numbers;
* ingest     the generated payments exported as a platform-json file (at most --ingest-rows
             lines), ingested into an empty warehouse, then ingested again (all unchanged).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.benchmarks.machine import describe

RESULTS = Path(__file__).resolve().parents[2] / "bench-results"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process (all threads): what the work costs, whatever else the shared
    machine runs meanwhile (wall-clock time is not)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _metric_cache_on() -> bool:
    from analytics_lib.metrics import cache

    return cache.enabled()


# -- stages (each runs in a subprocess) ------------------------------------------------------


def stage_generate(root: Path, rows: int) -> dict:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    start = time.perf_counter()
    summary = generate(Warehouse(root / "generated"), transactions=rows, seed=11)
    seconds = time.perf_counter() - start
    n = summary.rows["transactions"]
    return {"rows": [{"stage": f"demo generator: {n:,} transactions (all tables)", "seconds": seconds,
                      "rate": f"{n / seconds:,.0f} tx/s", "peak_mb": _peak_mb()}],
            "transactions": n, "all_rows": sum(summary.rows.values())}


def _last_full_month(session) -> object:  # type: ignore[no-untyped-def]
    from analytics_lib.metrics import Period

    last = session.snapshot.scalar("SELECT max(created_at) FROM transactions")
    tz = session.settings.timezone
    first_of_month = last.astimezone(Period.month(2000, 1, tz).tz).date().replace(day=1)
    return Period.month(first_of_month.year, first_of_month.month, tz).previous(), last


def stage_metrics(root: Path) -> dict:
    from analytics_lib import metrics as m
    from analytics_lib.warehouse import Warehouse

    wh = Warehouse(root / "generated")
    rows = []
    with m.MetricSession.open(wh) as session:
        period, last = _last_full_month(session)
        # first call of a new session: builds the history tables (or reads them from the
        # persistent metric cache when PAYMENT_ANALYTICS_METRIC_CACHE is on and it has them)
        start, cpu = time.perf_counter(), _cpu_seconds()
        m.comprehensive_analytics(period, session=session)
        cache = "persistent cache on" if _metric_cache_on() else "persistent cache off"
        rows.append({"stage": f"comprehensive_analytics {period.label}, DuckDB, first call ({cache})",
                     "seconds": time.perf_counter() - start, "rate": f"CPU {_cpu_seconds() - cpu:.1f} s",
                     "peak_mb": _peak_mb()})
        times, cpus = [], []
        for _ in range(3):
            session.forget_scope()  # every table of a period is built again; history stays cached
            start, cpu = time.perf_counter(), _cpu_seconds()
            result = m.comprehensive_analytics(period, session=session)
            times.append(time.perf_counter() - start)
            cpus.append(_cpu_seconds() - cpu)
        rows.append({"stage": f"comprehensive_analytics {period.label}, DuckDB (warm, median of 3)",
                     "seconds": statistics.median(times), "rate": f"CPU {statistics.median(cpus):.1f} s",
                     "peak_mb": _peak_mb()})
        for label, step in (("the same window again", timedelta(0)), ("a new window each call", timedelta(minutes=1))):
            rt, rt_cpu = [], []
            for i in range(1, 6):  # a new "now" builds the window's payments again (a live dashboard)
                start, cpu = time.perf_counter(), _cpu_seconds()
                m.realtime(session, now=last + timedelta(minutes=1) + i * step)
                rt.append(time.perf_counter() - start)
                rt_cpu.append(_cpu_seconds() - cpu)
            rows.append({"stage": f"real-time 24h window, {label} (median of 5)", "seconds": statistics.median(rt),
                         "rate": f"CPU {statistics.median(rt_cpu):.2f} s", "peak_mb": _peak_mb()})
    s = result.sections
    numbers = {
        "total_transactions": s["transactions"].summary["total_transactions"],
        "total_volume": s["transactions"].summary["total_volume"],
        "net_revenue": s["revenue"].summary["net_revenue"],
        "new_customers": s["customers"].summary["new_customers"],
        "mrr": s["recurring_revenue"].summary["mrr"],
    }
    return {"rows": rows, "numbers": numbers, "period": period.label, "warm_cpu": statistics.median(cpus)}


def stage_pandas(root: Path, period_label: str) -> dict:
    from analytics_lib.config import get_settings
    from analytics_lib.metrics import Period
    from analytics_lib.warehouse import Warehouse
    from tests.benchmarks import pandas_suite

    period = Period.parse(period_label, get_settings().timezone)
    load_s, compute_s, numbers = pandas_suite.timed(Warehouse(root / "generated"), period)
    compute_cpu = numbers.pop("_compute_cpu_seconds")
    return {"rows": [
        {"stage": "pandas: load the tables into memory", "seconds": load_s, "rate": "", "peak_mb": _peak_mb()},
        {"stage": f"pandas: the same suite for {period_label} (data in memory)", "seconds": compute_s,
         "rate": f"CPU {compute_cpu:.1f} s", "peak_mb": _peak_mb()},
    ], "numbers": numbers, "compute_cpu": compute_cpu}


def stage_export(root: Path, limit: int) -> dict:
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.sources.platform_json import to_platform_json

    export = root / "payments.jsonl"
    start = time.perf_counter()
    n = 0
    with Warehouse(root / "generated").snapshot(tables=["transactions", "fees"]) as snap, open(export, "w") as out:
        fees: dict[str, list[dict]] = {}
        for fee in snap.arrow("SELECT * FROM fees").to_pylist():
            fees.setdefault(fee["transaction_id"], []).append(fee)
        reader = snap.con.sql(f"SELECT * FROM transactions ORDER BY created_at LIMIT {int(limit)}").to_arrow_reader(50_000)
        for batch in reader:
            for row in batch.to_pylist():
                out.write(json.dumps(to_platform_json(row, fees.get(row["transaction_id"]))) + "\n")
                n += 1
    return {"rows": [{"stage": f"export {n:,} payments as platform-json ({export.stat().st_size / 1e6:,.0f} MB, setup)",
                      "seconds": time.perf_counter() - start, "rate": "", "peak_mb": _peak_mb()}], "n": n}


def stage_ingest(root: Path, n: int) -> dict:
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.ingest import ingest

    export = root / "payments.jsonl"
    rows = []
    shutil.rmtree(root / "ingested", ignore_errors=True)
    wh = Warehouse(root / "ingested")
    for label in ("into an empty warehouse", "same file again, all unchanged"):
        start = time.perf_counter()
        res = ingest(export, "platform-json", wh)
        seconds = time.perf_counter() - start
        if not res.balanced or res.rejected:
            raise RuntimeError(res.summary())
        rows.append({"stage": f"ingest platform-json {n:,} rows {label}", "seconds": seconds,
                     "rate": f"{n / seconds:,.0f} rows/s", "peak_mb": _peak_mb()})
    return {"rows": rows}


STAGES = {"generate": stage_generate, "metrics": stage_metrics, "pandas": stage_pandas, "export": stage_export,
          "ingest": stage_ingest}


def _run_stage(name: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.benchmarks.run", "--stage", name, *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions to generate")
    parser.add_argument("--ingest-rows", type=int, default=1_000_000, help="payments to export and ingest")
    parser.add_argument("--skip", action="append", default=[], choices=list(STAGES), help="skip a stage")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.stage:  # inside a stage subprocess
        root = Path(ns.args[0])
        extra = ns.args[1:]
        if ns.stage == "generate":
            out = stage_generate(root, int(extra[0]))
        elif ns.stage in ("ingest", "export"):
            out = STAGES[ns.stage](root, int(extra[0]))
        elif ns.stage == "pandas":
            out = stage_pandas(root, extra[0])
        else:
            out = STAGES[ns.stage](root)
        print(json.dumps(out, default=str))
        return

    root = Path(ns.keep) if ns.keep else Path(tempfile.mkdtemp(prefix="pa-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    report: dict = {"machine": describe(), "started": datetime.now(UTC).isoformat(), "rows_requested": ns.rows}
    try:
        if not (root / "generated").exists() or "generate" not in ns.skip:
            shutil.rmtree(root / "generated", ignore_errors=True)
            gen = _run_stage("generate", str(root), str(ns.rows))
            rows += gen["rows"]
            report["transactions"] = gen["transactions"]
        if "metrics" not in ns.skip:
            met = _run_stage("metrics", str(root))
            rows += met["rows"]
            report["duckdb_numbers"] = met["numbers"]
            if "pandas" not in ns.skip:
                pan = _run_stage("pandas", str(root), met["period"])
                rows += pan["rows"]
                report["pandas_numbers"] = pan["numbers"]
                duck_s = met["rows"][1]["seconds"]  # warm
                pandas_s = pan["rows"][1]["seconds"]
                report["pandas_over_duckdb"] = pandas_s / duck_s
                report["duckdb_warm_cpu"] = met["warm_cpu"]
                report["pandas_cpu_over_duckdb_cpu"] = pan["compute_cpu"] / met["warm_cpu"]
                report["disagreements"] = {
                    key: [met["numbers"][key], pan["numbers"][key]] for key in met["numbers"]
                    if abs(met["numbers"][key] - pan["numbers"][key]) > 1e-6 * max(1.0, abs(met["numbers"][key])) + 1e-3
                }
        if "ingest" not in ns.skip:
            exported = _run_stage("export", str(root), str(ns.ingest_rows))
            rows += exported["rows"]
            rows += _run_stage("ingest", str(root), str(exported["n"]))["rows"]
    finally:
        if not ns.keep:
            shutil.rmtree(root, ignore_errors=True)
    report["rows"] = rows
    machine = report["machine"]
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    print(f"| {'stage':<74} | {'seconds':>8} | {'throughput / CPU':>16} | {'peak MB':>8} |")
    print(f"|{'-' * 76}|{'-' * 10}|{'-' * 18}|{'-' * 10}|")
    for row in rows:
        print(f"| {row['stage']:<74} | {row['seconds']:>8.3f} | {row['rate']:>16} | {row['peak_mb']:>8,.0f} |")
    if "pandas_over_duckdb" in report:
        agree = "numbers agree" if not report["disagreements"] else f"DISAGREE: {report['disagreements']}"
        print(f"pandas suite / DuckDB suite: {report['pandas_over_duckdb']:.1f}x wall-clock, "
              f"{report['pandas_cpu_over_duckdb_cpu']:.1f}x CPU time ({agree})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{ns.rows}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"results: {out}")
    if report.get("disagreements"):
        sys.exit(1)


if __name__ == "__main__":
    main()
