"""Benchmarks: ``make bench`` (or ``python -m tests.benchmarks.run --rows N``).

Prints one table of timings from one run on this machine. Not a test: nothing here asserts a
time; docs/performance.md records the numbers with the machine description.

Sections:
* demo generator: ``demo-data --transactions N`` into a fresh warehouse;
* ingestion: the generated payments exported as a platform-json file of N lines, ingested into
  an empty warehouse, then ingested again (every row unchanged).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from tests.benchmarks.machine import describe


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_generator(root: Path, rows: int) -> tuple[dict, Path]:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    wh = Warehouse(root / "generated")
    start = time.perf_counter()
    summary = generate(wh, transactions=rows, seed=11)
    seconds = time.perf_counter() - start
    n = summary.rows["transactions"]
    return {"stage": f"demo generator ({n:,} transactions, all tables)", "seconds": seconds,
            "rate": f"{n / seconds:,.0f} transactions/s"}, root / "generated"


def export_platform_json(warehouse_dir: Path, out: Path, limit: int) -> int:
    """Write the generated transactions (with fees) as the platform's JSON-lines export."""
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.sources.platform_json import to_platform_json

    wh = Warehouse(warehouse_dir)
    n = 0
    with wh.snapshot(tables=["transactions", "fees"]) as snap, open(out, "w") as handle:
        fees_by_tx: dict[str, list[dict]] = {}
        for fee in snap.arrow("SELECT * FROM fees").to_pylist():
            fees_by_tx.setdefault(fee["transaction_id"], []).append(fee)
        reader = snap.con.sql(
            f"SELECT * FROM transactions ORDER BY created_at LIMIT {int(limit)}"
        ).to_arrow_reader(batch_size=50_000)
        for batch in reader:
            for row in batch.to_pylist():
                handle.write(json.dumps(to_platform_json(row, fees_by_tx.get(row["transaction_id"]))) + "\n")
                n += 1
    return n


def bench_ingest(root: Path, path: Path, n: int) -> list[dict]:
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.ingest import ingest

    wh = Warehouse(root / "ingested")
    results = []
    for label in ("first load into an empty warehouse", "same file again (all unchanged)"):
        start = time.perf_counter()
        res = ingest(path, "platform-json", wh)
        seconds = time.perf_counter() - start
        assert res.balanced and res.rejected == 0, res.summary()
        results.append({"stage": f"ingest platform-json {n:,} rows: {label}", "seconds": seconds,
                        "rate": f"{n / seconds:,.0f} rows/s"})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions to generate and ingest")
    parser.add_argument("--keep", action="store_true", help="keep the temporary warehouses")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pa-bench-"))
    rows: list[dict] = []
    try:
        gen, generated = bench_generator(root, args.rows)
        rows.append(gen)
        export = root / "payments.jsonl"
        start = time.perf_counter()
        n = export_platform_json(generated, export, args.rows)
        rows.append({"stage": f"export {n:,} rows as platform-json (setup, {export.stat().st_size / 1e6:,.0f} MB)",
                     "seconds": time.perf_counter() - start, "rate": ""})
        rows.extend(bench_ingest(root, export, n))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    machine = describe()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    print(f"peak RSS of this process: {_peak_rss_mb():,.0f} MB")
    print(f"| {'stage':<70} | {'seconds':>8} | {'throughput':>22} |")
    print(f"|{'-' * 72}|{'-' * 10}|{'-' * 24}|")
    for row in rows:
        print(f"| {row['stage']:<70} | {row['seconds']:>8.1f} | {row['rate']:>22} |")


if __name__ == "__main__":
    main()
