"""Model scoring benchmark: payment failure and fraud scored end to end on a warehouse.

``python -m tests.benchmarks.models_suite --warehouse DIR [--score-rows N]`` trains both models on
a fresh 20,000-customer demo warehouse, then scores the most recent attempts of the warehouse
under test that add up to ``--score-rows`` candidates per model (every attempt if it holds fewer): failure scores every
payment attempt, fraud every checkout attempt (``purchase`` and ``subscription_create``; renewals
and dunning retries are merchant-initiated and not fraud-scored).

For each model it reports the end-to-end call (``Model.score``: feature SQL on the snapshot,
Arrow fetch, encoding, trees, and for fraud the isolation forest and the stacking; a DataFrame
of scores out) as wall seconds, CPU seconds and rows per second, then the same pipeline step by
step, and the cost of building the platform's ``Prediction`` objects (explanations included) for
100 attempts. Nothing is asserted: docs/performance.md records the numbers with the conditions.

``stage_models(root)`` is the hook for ``tests/benchmarks/run.py`` (a stage that scores
``root / "generated"``); run.py does not call it yet.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parents[2] / "bench-results"
DEMO_CUSTOMERS = 20_000
DEMO_END = date(2026, 11, 26)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Clock:
    """Wall and CPU seconds of each timed step, as benchmark rows."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def time(self, stage: str, rows: int | None, fn: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), _cpu()
        out = fn()
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        n = rows if rows is not None else (len(out) if hasattr(out, "__len__") else None)
        self.rows.append({"stage": stage, "seconds": wall, "cpu_seconds": cpu,
                          "rate": f"{n / wall:,.0f} rows/s" if n else "", "rows": n, "peak_mb": _peak_mb()})
        return out


def _window_start(snap: Any, rows: int, checkout_only: bool) -> datetime:
    """Start of the most recent window of attempts holding ``rows`` candidates (or all)."""
    where = "WHERE billing_reason IN ('purchase', 'subscription_create')" if checkout_only else ""
    found = snap.scalar(f"SELECT created_at FROM transactions {where} ORDER BY created_at DESC "
                        f"LIMIT 1 OFFSET {max(rows - 1, 0)}")
    if found is None:
        found = snap.scalar(f"SELECT min(created_at) FROM transactions {where}")
    return found


def stage_models(root: Path, score_rows: int = 1_000_000, warehouse: Path | None = None) -> dict[str, Any]:
    """Train on a demo warehouse under ``root``, score the warehouse ``warehouse`` (default
    ``root / "generated"``); returns the benchmark rows."""
    from analytics_lib.models import Registry, compiled
    from analytics_lib.models.classifier import as_instant, run_batched
    from analytics_lib.models.failure import PaymentFailureModel
    from analytics_lib.models.fraud import FraudModel, FraudScorer
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    clock = _Clock()
    demo = Warehouse(root / "models_demo")
    if not (root / "models_demo" / "transactions").exists():
        generate(demo, customers=DEMO_CUSTOMERS, end=DEMO_END)
    registry = Registry(root / "models_registry")
    failure, fraud = PaymentFailureModel(), FraudModel()
    clock.time(f"train payment_failure on the {DEMO_CUSTOMERS:,}-customer demo", 0,
               lambda: failure.fit_and_register(demo, registry))
    clock.time(f"train fraud on the {DEMO_CUSTOMERS:,}-customer demo", 0, lambda: fraud.fit_and_register(demo, registry))
    failure_model, fraud_model = failure.load(registry), fraud.load(registry)
    report: dict[str, Any] = {}
    with Warehouse(warehouse or root / "generated").snapshot() as snap:
        last = snap.scalar("SELECT max(created_at) FROM transactions")
        end = as_instant(last + timedelta(microseconds=1))
        report["transactions"] = snap.count("transactions")

        # -- payment failure --------------------------------------------------------------
        start = _window_start(snap, score_rows, checkout_only=False)
        scores = clock.time("payment_failure: score() end to end (SQL + encode + trees)", None,
                            lambda: failure.score(failure_model, snap, start, end))
        n = len(scores)
        report["payment_failure"] = {"rows": n, "window": [str(start), str(end)]}
        table = clock.time("  feature SQL -> Arrow", n,
                           lambda: failure.feature_table(snap, "attempts", start=start, end=end))
        classifier = failure_model.model.classifier
        x = clock.time("  encode to a float matrix", n, lambda: classifier.matrix(table))
        clock.time("  calibrated gradient boosting", n, lambda: classifier.predict_proba(x))
        ids = scores.nlargest(100, "probability")["transaction_id"].tolist()
        clock.time("  100 Prediction objects (explanations, actions) by id", 100,
                   lambda: failure.predict(failure_model, snap, ids=ids))
        del table, x

        # -- fraud ------------------------------------------------------------------------
        start = _window_start(snap, score_rows, checkout_only=True)
        scores = clock.time("fraud: score() end to end (SQL + encode + trees + forest + stack)", None,
                            lambda: fraud.score(fraud_model, snap, start, end))
        n = len(scores)
        report["fraud"] = {"rows": n, "window": [str(start), str(end)],
                           "decisions": scores["decision"].value_counts().to_dict()}
        table = clock.time("  feature SQL -> Arrow", n,
                           lambda: fraud.feature_table(snap, "window", end, start=start, end=end))
        scorer: FraudScorer = fraud_model.model.scorer
        assert scorer.classifier is not None and scorer.forest is not None
        x = clock.time("  encode to a float matrix", n, lambda: scorer.classifier.matrix(table))
        p_sup = clock.time("  gradient boosting (supervised)", n, lambda: scorer.classifier.predict_proba(x))
        numeric = scorer.classifier.numeric
        xa = np.where(np.isnan(x[:, [numeric.index(f) for f in scorer.anomaly_features]]),
                      scorer.anomaly_fill, x[:, [numeric.index(f) for f in scorer.anomaly_features]]).astype(np.float32)
        forest = scorer.forest
        trees = compiled.isolation(forest)  # what score() uses, when the forest compiles
        if trees is not None:
            columns = [numeric.index(f) for f in scorer.anomaly_features]
            raw = clock.time(f"  isolation forest ({len(forest.estimators_)} trees, compiled)", n,
                             lambda: run_batched(lambda part: trees.anomaly(part, columns, scorer.anomaly_fill), x))
        else:
            raw = clock.time(f"  isolation forest ({len(forest.estimators_)} trees)", n,
                             lambda: run_batched(lambda part: -forest.score_samples(part), xa))
        z = (raw - scorer.anomaly_center) / scorer.anomaly_scale
        clock.time("  stacking + 0-99 score", n, lambda: FraudScorer.risk_score(scorer.combine(p_sup, z)))
        clock.time("  encode + trees + forest batch by batch, as score() runs them", n,
                   lambda: scorer.components(table))
        ids = scores.nlargest(100, "probability")["transaction_id"].tolist()
        clock.time("  100 Prediction objects (explanations, actions) by id", 100,
                   lambda: fraud.predict(fraud_model, snap, ids=ids))
    return {"rows": clock.rows, "report": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", required=True, help="warehouse to score")
    parser.add_argument("--score-rows", type=int, default=1_000_000, help="candidates per model (most recent)")
    parser.add_argument("--work", help="folder for the demo warehouse and registry (default: temporary)")
    ns = parser.parse_args()
    root = Path(ns.work) if ns.work else Path(tempfile.mkdtemp(prefix="pa-models-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        out = stage_models(root, ns.score_rows, Path(ns.warehouse))
    finally:
        if not ns.work:
            shutil.rmtree(root, ignore_errors=True)
    from tests.benchmarks.machine import describe

    machine = describe()
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()) + f"; load average {' '.join(load)}")
    print(f"| {'stage':<70} | {'wall s':>7} | {'CPU s':>7} | {'throughput':>16} | {'peak MB':>8} |")
    print(f"|{'-' * 72}|{'-' * 9}|{'-' * 9}|{'-' * 18}|{'-' * 10}|")
    for row in out["rows"]:
        print(f"| {row['stage']:<70} | {row['seconds']:>7.2f} | {row['cpu_seconds']:>7.2f} | {row['rate']:>16} "
              f"| {row['peak_mb']:>8,.0f} |")
    print(json.dumps(out["report"], default=str))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"models-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"machine": machine, "load_average": load, **out}, indent=2, default=str))
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
