"""The benchmark suite (``make bench``, tests/benchmarks/run.py) at a tiny scale, so it cannot rot.

Nothing here asserts a time: the checks are that every stage runs and yields its row (wall, CPU,
peak, load), that pandas and polars agree with DuckDB on the headline numbers (``main`` raises if
not), that the ratios are computed, and that the in-memory suites are refused with an estimate
where they would not fit. The slow test adds Spark, the report and the models.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tests.benchmarks import run

QUICK_SKIPS = ["--skip", "spark", "--skip", "models", "--skip", "report"]


def _rows(report: dict, scale: str) -> dict[str, dict]:
    return {row["stage"]: row for row in report["scales"][scale]["rows"]}


def test_scales_and_labels():
    assert [run.parse_scale(s) for s in ("20k", "1M", "10M", "100M", "1000000", "2.5M")] == [
        20_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000, 2_500_000]
    assert [run.scale_label(n) for n in (20_000, 1_000_000, 10_000_000, 100_000_000, 1234)] == [
        "20k", "1M", "10M", "100M", "1234"]
    with pytest.raises(Exception, match="not a scale"):
        run.parse_scale("lots")


def test_memory_estimate_from_the_largest_measurement(monkeypatch, tmp_path):
    monkeypatch.setattr(run, "RESULTS", tmp_path)  # no earlier results
    assert run.estimate_peak_mb("pandas", 100_000_000, []) is None
    mb, source = run.estimate_peak_mb("pandas", 100_000_000, [(1_000_000, 1_500.0), (9_822_115, 10_700.0)])
    assert mb == pytest.approx(10_700.0 * 100_000_000 / 9_822_115)
    assert source == "10.4 GB at 9,822,115 transactions, this run"


def test_floor_reads_every_column_the_suite_reads():
    from datetime import UTC, datetime

    from tests.benchmarks.pandas_suite import COLUMNS

    sql = run.floor_sql(datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), history=True)
    for table, cols in COLUMNS.items():
        for col in cols:
            assert f"max(hash({col})) AS {table}_{col}" in sql


def test_bench_runs_at_a_tiny_scale(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results")
    report = run.main(["--scale", "20k", "--keep", str(tmp_path / "wh"), "--scratch", str(tmp_path / "scratch"),
                       "--ingest-rows", "500", *QUICK_SKIPS])
    scale = report["scales"]["20k"]
    assert 15_000 < scale["transactions"] < 25_000
    kinds = {row["kind"]: row for row in scale["rows"] if row.get("kind")}
    assert set(kinds) == {"suite_first", "suite", "floor_period", "floor_history", "pandas", "polars"}
    for row in scale["rows"]:
        assert row["seconds"] > 0, row
        assert row["load"], row
        if not row["stage"].endswith("load the tables into memory"):
            assert row["cpu"] is not None and row["peak_mb"] > 0, row
    stages = " | ".join(_rows(report, "20k"))
    for expected in ("demo generator", "real-time 24h window", "ingest platform-json 500 rows into an empty warehouse",
                     "operations dashboard: one refresh"):
        assert expected in stages
    assert not scale["disagreements"] and not scale.get("failed")
    for engine in ("pandas", "polars"):
        assert scale[f"{engine}_numbers"]["total_transactions"] == scale["numbers"]["total_transactions"] > 0
    assert {"suite_over_period_floor", "first_call_over_history_floor", "pandas_over_suite",
            "polars_over_suite"} <= set(scale["ratios"])
    saved = json.loads(Path(report["results_file"]).read_text())
    assert saved["scales"]["20k"]["peaks"]["pandas"] > 0
    # a 100M run after this one would refuse pandas with an estimate from these results
    mb, source = run.estimate_peak_mb("pandas", 100_000_000, [])
    assert mb > 24 * 1024 and f"at {scale['transactions']:,} transactions, bench-20k-" in source


def _spark_ready() -> bool:
    return importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.skipif(not _spark_ready(), reason="pyspark (the spark extra) or java not installed")
def test_bench_with_spark_report_and_models(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results")
    report = run.main(["--scale", "20k", "--keep", str(tmp_path / "wh"), "--scratch", str(tmp_path / "scratch"),
                       "--skip", "ingest", "--skip", "pandas", "--skip", "polars", "--skip", "dashboard",
                       "--spark-runs", "1", "--score-rows", "5000", "--report-formats", "html"])
    scale = report["scales"]["20k"]
    assert not scale["disagreements"] and not scale.get("failed")
    assert scale["spark_numbers"] == pytest.approx(scale["numbers"], rel=1e-9)
    stages = " | ".join(_rows(report, "20k"))
    for expected in ("Spark suite", "run daily_operations", "models: train payment_failure", "models: fraud: score()"):
        assert expected in stages
    assert "spark_over_suite" in scale["ratios"]
