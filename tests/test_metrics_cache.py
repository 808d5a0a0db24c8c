"""The persistent history cache: a new session on the same warehouse versions reads the history
tables instead of rebuilding them and gets identical numbers; new data is a new cache entry."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from analytics_lib import metrics
from analytics_lib.metrics import cache as history_cache
from analytics_lib.metrics.engine import MetricSession
from analytics_lib.synth import generate
from tests.conftest import payment, write_jsonl

PERIOD = metrics.Period.parse("2026-10", timezone="Europe/Istanbul")


def _history_runs(monkeypatch) -> list[str]:
    runs: list[str] = []
    original = MetricSession._run_statement

    def counting(self, family, block, *args, **kwargs):
        if family == "_history":
            runs.append(block)
        return original(self, family, block, *args, **kwargs)

    monkeypatch.setattr(MetricSession, "_run_statement", counting)
    return runs


def _numbers(result) -> dict:
    doc = result.to_dict()
    doc.pop("generated_at")
    return doc


def _assert_same(a, b, path="") -> None:
    """Equal, floats to the last bits (DuckDB's parallel sums may add in another order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9), path
    else:
        assert a == b, path


def test_a_new_session_reads_history_from_the_cache(warehouse, monkeypatch, tmp_path):
    generate(warehouse, customers=400, months=6, seed=2, end=date(2026, 10, 31))
    runs = _history_runs(monkeypatch)
    first = metrics.comprehensive_analytics(PERIOD, {}, "USD", warehouse=warehouse)
    built = list(runs)
    assert built, "the first session builds the history tables"
    entries = list((Path(warehouse.location) / "_cache" / "metrics").glob("*/*/_complete.json"))
    assert len(entries) >= len(set(built)) - 1  # every stored block (views are not stored)
    runs.clear()
    second = metrics.comprehensive_analytics(PERIOD, {}, "USD", warehouse=warehouse)
    assert len(runs) < len(built), f"a second session rebuilt {runs}"
    _assert_same(_numbers(second), _numbers(first))
    # another filter set, currency or time zone is another entry
    runs.clear()
    metrics.comprehensive_analytics(PERIOD, {"country": ["TR"]}, "USD", warehouse=warehouse)
    assert runs, "a new filter set builds its own history"
    # new data: new versions, so the cache is not read and the numbers move
    records = [payment(f"late_{i}", userId="user_late", amount=100.0, createdAt="2026-10-15T12:00:00Z",
                       completedAt="2026-10-15T12:00:01Z") for i in range(3)]
    from analytics_lib.warehouse.ingest import ingest

    ingest(write_jsonl(tmp_path / "late.jsonl", records), "platform-json", warehouse)
    runs.clear()
    third = metrics.comprehensive_analytics(PERIOD, {}, "USD", warehouse=warehouse)
    assert runs, "new warehouse versions rebuild the history"
    assert third.transactions["total_transactions"] == first.transactions["total_transactions"] + 3


def test_the_cache_can_be_switched_off_and_a_damaged_entry_is_rebuilt(warehouse, monkeypatch):
    generate(warehouse, customers=200, months=3, seed=4, end=date(2026, 10, 31))
    monkeypatch.setenv(history_cache.ENV_SWITCH, "off")
    metrics.comprehensive_analytics(PERIOD, {}, "USD", warehouse=warehouse)
    assert not (Path(warehouse.location) / "_cache").exists()
    monkeypatch.delenv(history_cache.ENV_SWITCH)
    first = metrics.comprehensive_analytics(PERIOD, {}, "USD", warehouse=warehouse)
    for parquet in (Path(warehouse.location) / "_cache" / "metrics").rglob("*.parquet"):
        parquet.write_bytes(b"not parquet")
    again = metrics.comprehensive_analytics(PERIOD, {}, "USD", warehouse=warehouse)
    _assert_same(_numbers(again), _numbers(first))


@pytest.mark.parametrize("sql, ok", [("SELECT getvariable('rc')", True), ("SELECT getvariable('p_start')", False)])
def test_blocks_reading_period_variables_are_not_stored(sql, ok):
    assert history_cache.cacheable(sql) is ok


@pytest.mark.parametrize("views", [False, True])
def test_an_entry_damaged_in_its_second_file_leaves_nothing_half_made(tmp_path, views):
    """The first table of an entry loads, the second is damaged: the load reports a miss, drops
    what it made (so the caller can build the tables under the same names) and removes the entry."""
    import duckdb

    cache = history_cache.HistoryCache(tmp_path)
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE a AS SELECT 1 AS x")
    con.execute("CREATE TEMP TABLE b AS SELECT 2 AS y")
    cache.store(con, "block", "entry", ["a", "b"])
    con.execute("DROP TABLE a")
    con.execute("DROP TABLE b")
    assert cache.load(con, "block", "entry", ["a", "b"], views=views)
    assert con.execute("SELECT x FROM a").fetchall() == [(1,)]
    con.execute(f"DROP {'VIEW' if views else 'TABLE'} a")
    con.execute(f"DROP {'VIEW' if views else 'TABLE'} b")
    (tmp_path / "block" / "entry" / "b.parquet").write_bytes(b"not parquet")
    assert not cache.load(con, "block", "entry", ["a", "b"], views=views)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('a', 'b')").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name IN ('a', 'b')").fetchall() == [(0,)]
    con.execute("CREATE OR REPLACE TEMP TABLE a AS SELECT 3 AS x")  # the rebuild is not in the way
    assert not (tmp_path / "block" / "entry").exists()
