"""Live-mode measurements for docs/live.md and docs/performance.md.

    python tests/benchmarks/live_suite.py detect --warehouse PATH [--runs 15]
    python tests/benchmarks/live_suite.py realtime --warehouse PATH [--runs 15] [--hours 3,6]
    python tests/benchmarks/live_suite.py simulate --warehouse COPY --rate 50 --seconds 60

``detect`` and ``realtime`` only read. ``simulate`` WRITES to the warehouse: give it a copy.

``realtime`` times the live read path with wall-clock and process CPU time (the machine is shared:
CPU time does not depend on what else runs): ``metrics.realtime`` for the same 24-hour window
again and for a new window on each call (a live dashboard's clock moves), a fresh snapshot with
the ``Warehouse`` kept (as a dashboard keeps it) and with a new one, and one whole operations
dashboard refresh (fresh snapshot of its tables + every widget). Each sample records the load
average it ran under.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from analytics_lib.live.anomalies import ALERT_TYPES, AnomalyOptions, detect_anomalies  # noqa: E402
from analytics_lib.live.simulate import LiveSimulator, SimulationOptions  # noqa: E402
from analytics_lib.metrics import MetricSession  # noqa: E402
from analytics_lib.warehouse import Warehouse  # noqa: E402
from tests.benchmarks.machine import describe  # noqa: E402


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    p90 = statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]
    return {"median_ms": round(1000 * statistics.median(values), 1), "p90_ms": round(1000 * p90, 1),
            "max_ms": round(1000 * values[-1], 1), "runs": len(values)}


def detect(location: str, runs: int) -> dict:
    wh = Warehouse(location)
    with wh.snapshot(tables=["transactions"]) as snap:
        rows, latest = snap.con.execute("SELECT count(*), max(created_at) FROM transactions").fetchall()[0]
    # instants spread over the last two weeks of data, at various hours
    base = min(latest, datetime.now(UTC)) - timedelta(days=14)
    instants = [base + timedelta(hours=7 + 13 * i, minutes=(17 * i) % 60) for i in range(runs)]
    cheap = AnomalyOptions(rules=tuple(r for r in ALERT_TYPES if r != "unusual_country"))
    out: dict[str, list[float]] = {"open_session": [], "first_detection": [], "warm_all_rules": [],
                                   "warm_without_country": [], "country_rule_only": []}
    alerts = 0
    for now in instants:
        t = time.perf_counter()
        with MetricSession.open(wh) as session:
            out["open_session"].append(time.perf_counter() - t)
            t = time.perf_counter()
            frame = detect_anomalies(session, now)
            out["first_detection"].append(time.perf_counter() - t)
            alerts += len(frame)
            for key, options in (("warm_all_rules", AnomalyOptions()), ("warm_without_country", cheap),
                                 ("country_rule_only", AnomalyOptions(rules=("unusual_country",)))):
                t = time.perf_counter()
                detect_anomalies(session, now, options=options)
                out[key].append(time.perf_counter() - t)
    return {"warehouse": location, "transactions": rows, "alerts_found": alerts,
            **{k: _ms(v) for k, v in out.items()}}


def _timed(samples: dict[str, list[tuple[float, float, float]]], key: str, work) -> None:  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    samples.setdefault(key, []).append((time.perf_counter() - wall, time.process_time() - cpu, os.getloadavg()[0]))


def _summary(values: list[tuple[float, float, float]]) -> dict[str, float]:
    walls, cpus, loads = zip(*values, strict=True)
    return {**_ms(list(walls)), "cpu_median_ms": round(1000 * statistics.median(cpus), 1),
            "load_min": round(min(loads), 1), "load_max": round(max(loads), 1)}


def realtime(location: str, runs: int, shorter: tuple[int, ...] = ()) -> dict:
    from analytics_lib import metrics
    from analytics_lib.dashboards import open_dashboard

    wh = Warehouse(location)
    with wh.snapshot(tables=["transactions"]) as snap:
        rows, latest = snap.con.execute("SELECT count(*), max(created_at) FROM transactions").fetchall()[0]
    now = min(latest, datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)  # a full window
    samples: dict[str, list[tuple[float, float, float]]] = {}
    with MetricSession.open(wh) as session:
        metrics.realtime(session, now=now)  # the session's one-off set-up (FX factors) is not timed
        for _ in range(runs):
            _timed(samples, "realtime_same_window", lambda: metrics.realtime(session, now=now))
        for i in range(runs):
            moved = now - timedelta(minutes=7 * (i + 1))  # as a live clock moves between refreshes
            _timed(samples, "realtime_new_window", lambda moved=moved: metrics.realtime(session, now=moved))
        # the window's size, and shorter windows (--hours): the cost follows the window's rows,
        # whatever the history holds (a 100M warehouse's 3-hour window ~ a 10M one's 24 hours)
        window_rows = {24: metrics.realtime(session, now=now).summary["transactions"]}
        for hours in shorter:
            window_rows[hours] = metrics.realtime(session, now=now, hours=hours).summary["transactions"]
            for i in range(runs):
                moved = now - timedelta(minutes=7 * (i + 1))
                _timed(samples, f"realtime_new_window_{hours}h",
                       lambda moved=moved, hours=hours: metrics.realtime(session, now=moved, hours=hours))
    for _ in range(runs):
        _timed(samples, "snapshot_kept_warehouse", lambda: MetricSession.open(wh).close())
        _timed(samples, "snapshot_new_warehouse", lambda: MetricSession.open(location).close())

    def snapshot_and_realtime(at: datetime) -> None:
        with MetricSession.open(wh) as fresh:
            metrics.realtime(fresh, now=at)

    for i in range(runs):
        _timed(samples, "snapshot_and_realtime", lambda i=i: snapshot_and_realtime(now - timedelta(minutes=3 * i)))
    clock = {"now": now}
    board = open_dashboard("operations", warehouse=location, clock=lambda: clock["now"])
    board.refresh()  # anomaly detection runs at most once a minute: this refresh pays for it
    for i in range(runs):
        clock["now"] = now - timedelta(seconds=5 * (i + 1))
        _timed(samples, "operations_refresh", board.refresh)
        assert board.error is None, board.error
    board.refresher.stop()
    return {"warehouse": location, "transactions": rows, "now": now.isoformat(), "window_payments": window_rows,
            **{k: _summary(v) for k, v in samples.items()}}


def simulate(location: str, rate: float, seconds: float, batch_seconds: float) -> dict:
    wh = Warehouse(location)
    sim = LiveSimulator(wh, SimulationOptions(rate=rate, batch_seconds=batch_seconds, duration=seconds, seed=1))
    t = time.perf_counter()
    sim.prepare()
    prepare = time.perf_counter() - t
    batches: list[float] = []
    summary = sim.run(on_batch=lambda result, total: batches.append(result.seconds))
    return {"warehouse": location, "rate": rate, "batch_seconds": batch_seconds, "prepare_s": round(prepare, 2),
            "batches": len(batches), "payments": summary.payments,
            "payments_per_s": round(summary.payments / summary.seconds, 1),
            "batch_write": _ms(batches), "rows": summary.rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["detect", "realtime", "simulate"])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch-seconds", type=float, default=2.0)
    parser.add_argument("--hours", default="", help="realtime: shorter windows to time too, e.g. 3,6")
    args = parser.parse_args()
    started = os.getloadavg()[0]
    if args.what == "detect":
        result = detect(args.warehouse, args.runs)
    elif args.what == "realtime":
        try:
            shorter = tuple(int(h) for h in args.hours.split(",") if h.strip())
        except ValueError:
            parser.error(f"--hours takes whole hours separated by commas, not {args.hours!r}")
        result = realtime(args.warehouse, args.runs, shorter)
    else:
        result = simulate(args.warehouse, args.rate, args.seconds, args.batch_seconds)
    result["load_average"] = [round(started, 2), round(os.getloadavg()[0], 2)]
    result["machine"] = describe()
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
