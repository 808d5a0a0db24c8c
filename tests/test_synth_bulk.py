"""The bulk path of the generator (``generate(bulk=True)``): a new warehouse filled by appends
without key lookups must be indistinguishable from one filled by upserts: same rows, same content
hashes, same schema, partitioning and time order, and a later upsert of the same data changes
nothing. Tables skipped to save disk are simulated but not written, and every other table is
unchanged by skipping them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from analytics_lib.synth import generate
from analytics_lib.warehouse import TABLES, Warehouse
from analytics_lib.warehouse.bulk import ROW_GROUP_ROWS, bulk_append

END = dt.date(2025, 6, 30)
ARGS = {"customers": 800, "months": 5, "seed": 11, "end": END}
GENERATED = [n for n in TABLES if n not in ("ingest_rejects", "ingest_batches", "anomaly_alerts")]


def _rows(wh: Warehouse, table: str, with_hash: bool = True) -> list[tuple]:
    spec = TABLES[table]
    cols = [f'"{c}"' for c in spec.business_columns]
    if with_hash and spec.system_columns:
        cols.append("_row_hash")
    keys = ", ".join(f'"{k}"' for k in spec.keys)
    with wh.snapshot(tables=[table]) as s:
        return s.con.sql(f'SELECT {", ".join(cols)} FROM "{table}" ORDER BY {keys}').fetchall()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bulk")
    normal = Warehouse(root / "normal")
    bulk = Warehouse(root / "bulk")
    s_normal = generate(normal, **ARGS)
    s_bulk = generate(bulk, bulk=True, **ARGS)
    return normal, bulk, s_normal, s_bulk


def test_bulk_gives_the_same_rows_and_hashes_as_upserts(pair):
    normal, bulk, s_normal, s_bulk = pair
    assert s_bulk.rows == s_normal.rows
    assert s_bulk.parameters["bulk"] is True
    compared = 0
    for table in GENERATED:
        a, b = _rows(normal, table), _rows(bulk, table)
        assert a == b, table
        compared += len(a)
    assert compared > 10_000  # a real comparison, not of empty tables


def test_bulk_tables_have_the_same_schema_partitioning_and_batch(pair):
    normal, bulk, _, s_bulk = pair
    for table in GENERATED:
        dn, db = normal.table(table), bulk.table(table)
        assert db.schema().to_arrow() == dn.schema().to_arrow(), table
        assert db.metadata().partition_columns == dn.metadata().partition_columns, table
        if TABLES[table].system_columns:
            with bulk.snapshot(tables=[table]) as s:
                ids = s.con.sql(f'SELECT DISTINCT _batch_id FROM "{table}"').fetchall()
            assert ids == [(s_bulk.batch_id,)], table


def test_bulk_files_are_time_sorted_in_row_groups(tmp_path: Path, pair):
    _, bulk, _, _ = pair
    # files sorted by the table's time column
    for table in ("transactions", "checkout_events", "fees"):
        sort = TABLES[table].sort_by[0]
        for uri in DeltaTable(bulk.table_uri(table)).file_uris():
            col = pq.read_table(uri, columns=[sort]).column(0).to_pylist()
            assert col == sorted(col), (table, uri)
    # row groups of ROW_GROUP_ROWS: a batch larger than one row group is split
    wh = Warehouse(tmp_path / "rg")
    big = DeltaTable(bulk.table_uri("fees")).to_pyarrow_table()
    big = big.drop_columns([c for c in big.column_names if c.startswith("_")])
    repeated = pa.concat_tables([big] * (ROW_GROUP_ROWS // big.num_rows + 2))
    repeated = repeated.set_column(
        repeated.column_names.index("fee_id"), "fee_id",
        pa.array([f"fee_{i:09d}" for i in range(repeated.num_rows)]))
    bulk_append(wh, "fees", repeated, "b1")
    files = DeltaTable(wh.table_uri("fees")).file_uris()
    groups = [pq.ParquetFile(f).metadata.row_group(i).num_rows
              for f in files for i in range(pq.ParquetFile(f).metadata.num_row_groups)]
    assert sum(groups) == repeated.num_rows
    assert len(groups) >= 2 and max(groups) <= ROW_GROUP_ROWS


def test_an_upsert_of_the_same_rows_finds_them_unchanged(pair):
    normal, bulk, _, _ = pair
    with normal.snapshot(tables=["transactions"]) as s:
        cols = ", ".join(f'"{c}"' for c in TABLES["transactions"].business_columns)
        sample = s.con.sql(f"SELECT {cols} FROM transactions ORDER BY transaction_id LIMIT 500").to_arrow_table()
    result = bulk.upsert("transactions", sample)
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 500)


def test_bulk_refuses_a_warehouse_with_data(pair):
    _, bulk, _, _ = pair
    with pytest.raises(ValueError, match="empty warehouse"):
        generate(bulk, bulk=True, **ARGS)


def test_skipped_tables_are_not_written_and_the_others_are_unchanged(tmp_path: Path, pair):
    normal, _, s_normal, _ = pair
    wh = Warehouse(tmp_path / "skip")
    summary = generate(wh, bulk=True, skip_tables=("user_activity", "support_tickets"), **ARGS)
    skipped = summary.parameters["skipped_tables"]
    assert skipped == {"support_tickets": s_normal.rows["support_tickets"],
                       "user_activity": s_normal.rows["user_activity"]}
    assert not wh.exists("user_activity") and not wh.exists("support_tickets")
    for table in GENERATED:
        if table in skipped:
            continue
        assert _rows(wh, table) == _rows(normal, table), table
