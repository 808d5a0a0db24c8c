"""Live-mode measurements for docs/live.md and docs/performance.md.

    python tests/benchmarks/live_suite.py detect --warehouse PATH [--runs 15]
    python tests/benchmarks/live_suite.py simulate --warehouse COPY --rate 50 --seconds 60

``detect`` only reads. ``simulate`` WRITES to the warehouse: give it a copy.
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
    parser.add_argument("what", choices=["detect", "simulate"])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch-seconds", type=float, default=2.0)
    args = parser.parse_args()
    started = os.getloadavg()[0]
    result = detect(args.warehouse, args.runs) if args.what == "detect" else simulate(
        args.warehouse, args.rate, args.seconds, args.batch_seconds)
    result["load_average"] = [round(started, 2), round(os.getloadavg()[0], 2)]
    result["machine"] = describe()
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
