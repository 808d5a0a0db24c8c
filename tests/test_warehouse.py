"""The Delta tables: upsert classification, one commit per batch, snapshots and time travel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics_lib.warehouse import TABLES, Warehouse, WarehouseError, schema


def tx(i: int, **kw) -> dict:
    created = kw.pop("created_at", datetime(2024, 1 + i % 3, 5, 12, tzinfo=UTC))
    row = dict(
        transaction_id=f"t{i}", customer_id=f"c{i % 2}", amount_minor=1000 + i, currency="USD",
        status="completed", outcome_type="authorized", payment_method="card", provider="stripe",
        created_at=created, attempt_number=1, billing_reason="purchase", country_code="TR",
        created_month=f"{created.year}-{created.month:02d}", fraud_indicators=["velocity"],
    )
    row.update(kw)
    return row


def test_every_table_is_documented():
    for spec in TABLES.values():
        assert spec.grain and spec.keys
        for col in spec.all_columns:
            assert col.description, f"{spec.name}.{col.name} has no description"
            if col.name.endswith("_minor"):
                assert "minor units" in col.unit
    md = schema.markdown()
    for name in TABLES:
        assert f"## {name}" in md


def test_upsert_classifies_and_commits_once(warehouse: Warehouse):
    rows = [tx(i) for i in range(6)]
    first = warehouse.upsert("transactions", rows)
    assert (first.inserted, first.updated, first.unchanged) == (6, 0, 0)
    v1 = warehouse.versions()["transactions"]
    again = warehouse.upsert("transactions", rows)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)
    assert warehouse.versions()["transactions"] == v1, "an unchanged batch must not commit"
    rows[2]["status"] = "refunded"
    rows.append(tx(99))
    third = warehouse.upsert("transactions", rows, outcomes=True)
    assert (third.inserted, third.updated, third.unchanged) == (1, 1, 5)
    assert third.outcomes[("t2",)] == "updated" and third.outcomes[("t99",)] == "inserted"
    assert warehouse.versions()["transactions"] == v1 + 1, "inserts and updates are one commit"
    with warehouse.snapshot() as snap:
        assert snap.count("transactions") == 7
        assert snap.scalar("SELECT status FROM transactions WHERE transaction_id = 't2'") == "refunded"
        assert snap.scalar("SELECT count(DISTINCT transaction_id) FROM transactions") == 7
        # partition column comes back from the paths with its value
        assert snap.scalar("SELECT created_month FROM transactions WHERE transaction_id = 't1'") == "2024-02"
        assert snap.scalar("SELECT fraud_indicators FROM transactions WHERE transaction_id = 't1'") == ["velocity"]


def test_only_new_leaves_existing_rows(warehouse: Warehouse):
    cust = dict(customer_id="c1", country_code="TR", signup_at=datetime(2023, 1, 1, tzinfo=UTC),
                acquisition_channel="organic", is_guest=False, device_class="desktop")
    warehouse.upsert("customers", [cust])
    thin = dict(customer_id="c1", country_code="TR", acquisition_channel="unknown", is_guest=False)
    res = warehouse.upsert("customers", [thin, dict(thin, customer_id="c2")], only_new=True)
    assert (res.inserted, res.updated, res.unchanged) == (1, 0, 1)
    with warehouse.snapshot() as snap:
        assert snap.scalar("SELECT acquisition_channel FROM customers WHERE customer_id = 'c1'") == "organic"


def test_bad_batches_are_refused_before_writing(warehouse: Warehouse):
    with pytest.raises(WarehouseError, match="duplicate keys"):
        warehouse.upsert("transactions", [tx(1), tx(1)])
    with pytest.raises(WarehouseError, match="required column 'amount_minor' is missing"):
        row = tx(1)
        del row["amount_minor"]
        warehouse.upsert("transactions", [row])
    with pytest.raises(WarehouseError, match="'currency' is missing or null in 1 rows"):
        warehouse.upsert("transactions", [tx(1), tx(2, currency=None)])
    # a nullable key absent from the first row is kept for the rows that have it
    rows = [tx(3), tx(4, failure_reason="expired_card")]
    assert "failure_reason" not in rows[0]
    assert warehouse.conform("transactions", rows).column("failure_reason").to_pylist() == [None, "expired_card"]
    assert warehouse.versions()["transactions"] <= 0


def test_empty_tables_have_typed_views(warehouse: Warehouse):
    with warehouse.snapshot() as snap:
        assert snap.count("transactions") == 0
        types = dict(snap.con.sql("SELECT column_name, column_type FROM (DESCRIBE transactions)").fetchall())
        assert types["amount_minor"] == "BIGINT"
        assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
        assert all(v == -1 for v in snap.versions.values())


def test_snapshot_is_pinned_and_time_travels(warehouse: Warehouse):
    warehouse.upsert("transactions", [tx(1), tx(2)])
    snap = warehouse.snapshot()
    pinned = snap.versions["transactions"]
    warehouse.upsert("transactions", [tx(3), tx(1, status="refunded")])
    assert snap.count("transactions") == 2, "an open snapshot keeps its version"
    assert snap.scalar("SELECT status FROM transactions WHERE transaction_id='t1'") == "completed"
    snap.close()
    with warehouse.snapshot() as now:
        assert now.count("transactions") == 3
    with warehouse.snapshot(as_of={"transactions": pinned}) as past:
        assert past.count("transactions") == 2
        assert past.versions["transactions"] == pinned
    with warehouse.snapshot(as_of=datetime(2000, 1, 1, tzinfo=UTC)) as before_any:
        assert before_any.count("transactions") == 0


def test_compaction_keeps_the_data_and_old_versions_readable(warehouse: Warehouse):
    for i in range(8):
        warehouse.upsert("transactions", [tx(i, created_at=datetime(2024, 1, 1 + i, tzinfo=UTC))])
    before = warehouse.describe()
    files_before = next(r["files"] for r in before if r["table"] == "transactions")
    assert files_before == 8
    with warehouse.snapshot() as snap:
        old_version = snap.versions["transactions"]
        total = snap.scalar("SELECT sum(amount_minor) FROM transactions")
    report = warehouse.compact(retention_hours=168)
    assert report["transactions"]["files_after"] == 1
    with warehouse.snapshot() as snap:
        assert snap.scalar("SELECT sum(amount_minor) FROM transactions") == total
    # replaced files are kept for the retention period, so the old version still reads
    with warehouse.snapshot(as_of={"transactions": old_version}) as snap:
        assert snap.scalar("SELECT sum(amount_minor) FROM transactions") == total


def _row_groups(path: str, column: str) -> list[tuple[int, object, object]]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    index = [meta.schema.column(i).path for i in range(meta.num_columns)].index(column)
    return [(meta.row_group(i).num_rows, meta.row_group(i).column(index).statistics.min,
             meta.row_group(i).column(index).statistics.max) for i in range(meta.num_row_groups)]


def test_files_are_written_in_time_sorted_row_groups_and_compaction_keeps_them_so(warehouse, monkeypatch):
    """Appends are sorted by time in row groups of ROW_GROUP_ROWS; a MERGE's rewritten file is
    not, and compaction sorts such partitions again without changing a row."""
    import random

    import pyarrow as pa

    from analytics_lib.warehouse import tables

    monkeypatch.setattr(tables, "ROW_GROUP_ROWS", 40)
    rng = random.Random(3)
    rows = [tx(i, created_at=datetime(2024, 1 + i % 2, 1 + rng.randrange(28), rng.randrange(24), tzinfo=UTC))
            for i in range(230)]
    rng.shuffle(rows)
    warehouse.upsert("transactions", rows)
    for path in warehouse.table("transactions").file_uris():
        groups = _row_groups(path, "created_at")
        assert len(groups) > 1 and all(n <= 40 for n, _, _ in groups)
        assert all(a[2] <= b[1] for a, b in zip(groups, groups[1:], strict=False)), "a file's row groups follow time"
    # an update rewrites files through a MERGE; new payments add small files
    warehouse.upsert("transactions", [{**r, "status": "refunded"} for r in rows[:60]])
    warehouse.upsert("transactions", [tx(1000 + i, created_at=datetime(2024, 2, 28, 23, i, tzinfo=UTC))
                                      for i in range(5)])
    with warehouse.snapshot() as snap:
        before = snap.arrow("SELECT * EXCLUDE (created_month) FROM transactions ORDER BY transaction_id")
        old_version = snap.versions["transactions"]
    report = warehouse.compact()
    assert report["transactions"]["optimize"]["numFilesAdded"] >= 1
    dt = warehouse.table("transactions")
    by_month: dict[str, list] = {}
    for path in dt.file_uris():
        by_month.setdefault(path.split("created_month=")[1][:7], []).extend(_row_groups(path, "created_at"))
    assert set(by_month) == {"2024-01", "2024-02"}
    for groups in by_month.values():
        assert all(n <= 40 for n, _, _ in groups)
        ordered = sorted(groups, key=lambda g: g[1])
        assert all(a[2] <= b[1] for a, b in zip(ordered, ordered[1:], strict=False)), "row groups do not overlap in time"
    with warehouse.snapshot() as snap:
        after = snap.arrow("SELECT * EXCLUDE (created_month) FROM transactions ORDER BY transaction_id")
    assert after.equals(before), "compaction changed rows (content hashes, batch ids or values)"
    assert isinstance(after, pa.Table) and after.num_rows == 235
    # a second compaction finds nothing to do
    assert warehouse.compact()["transactions"]["optimize"]["numFilesAdded"] == 0
    with warehouse.snapshot(as_of={"transactions": old_version}) as snap:
        assert snap.count("transactions") == 235


def test_snapshots_reuse_the_tables_and_see_every_new_version(tmp_path):
    """Snapshots of one Warehouse object keep its DeltaTable objects between them and bring them
    up to date: a write by another writer (another Warehouse object, as another process would)
    is seen by the next snapshot, and so is a table deleted and created again."""
    import shutil

    location = tmp_path / "warehouse"
    reader, writer = Warehouse(location), Warehouse(location)
    with reader.snapshot() as snap:
        assert snap.versions["transactions"] == -1
    writer.upsert("transactions", [tx(1), tx(2)])
    with reader.snapshot(tables=["transactions"]) as snap:
        assert snap.count("transactions") == 2
        kept = reader._readers["transactions"]
    writer.upsert("transactions", [tx(3), tx(1, status="refunded")])
    with reader.snapshot() as snap, reader.snapshot() as other:
        assert reader._readers["transactions"] is kept, "the table object is reused"
        assert snap.count("transactions") == 3 and other.count("transactions") == 3
        assert snap.scalar("SELECT status FROM transactions WHERE transaction_id = 't1'") == "refunded"
        other.con.execute("CREATE TEMP TABLE mine AS SELECT 1")
        assert snap.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'mine'") == 0, \
            "snapshots of one warehouse share a database, never their tables"
    shutil.rmtree(location / "transactions")
    writer.upsert("transactions", [tx(7)])
    with reader.snapshot() as snap:
        assert snap.count("transactions") == 1 and snap.versions["transactions"] == writer.versions()["transactions"]
        assert snap.scalar("SELECT transaction_id FROM transactions") == "t7"


def test_batches_of_any_size_are_classified_against_the_stored_key_range(warehouse: Warehouse):
    """The stored keys are read between the batch's smallest and largest key (literals, quotes
    escaped): a batch of more than 50 keys across several files still finds every stored key."""
    for start in (0, 40, 80):
        warehouse.upsert("transactions", [tx(i) for i in range(start, start + 40)])
    batch = [tx(i, status="refunded") for i in range(10, 40)] + [tx(i) for i in range(50, 80)]
    batch += [tx(i) for i in range(200, 219)] + [tx(0, transaction_id="t'quoted")]
    result = warehouse.upsert("transactions", batch)
    assert (result.inserted, result.updated, result.unchanged) == (20, 30, 30)
    with warehouse.snapshot() as snap:
        assert snap.count("transactions") == 140
        assert snap.scalar("SELECT count(*) FROM transactions WHERE status = 'refunded'") == 30
        assert snap.scalar("SELECT count(*) FROM transactions WHERE transaction_id = 't''quoted'") == 1


def test_duckdb_gets_a_bounded_memory_limit_and_a_spill_folder(tmp_path, monkeypatch):
    """Without settings, DuckDB may use 40 % of the machine (not its own 80 %) and spills to a
    folder of its own under the system temp folder (not `.tmp` in the current directory, shared
    by every process started there); the environment overrides both, a
    value DuckDB refuses is a clear ConfigError, and writers and snapshots use the settings."""
    import os

    from analytics_lib import config
    from analytics_lib.warehouse.snapshot import connect

    monkeypatch.delenv(config.ENV_DUCKDB_MEMORY, raising=False)
    monkeypatch.delenv(config.ENV_DUCKDB_TEMP, raising=False)
    settings = config.get_settings(warehouse=str(tmp_path / "wh"))
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    assert settings.duckdb_memory_limit == f"{int(total_mib * 0.4)}MiB"
    assert settings.duckdb_temp_directory.startswith(str(config.Path(config.tempfile.gettempdir())))
    wh = Warehouse(tmp_path / "wh", settings)
    with wh.snapshot() as snap:
        limit, temp = snap.con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
    assert temp.startswith(settings.duckdb_temp_directory + "/")  # a folder of its own per connection
    assert abs(float(limit.split()[0]) - total_mib * 0.4 / 1024) < 0.06  # "9.4 GiB"
    writer = warehouse_module_duck(settings)
    writer_temp = writer.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    assert writer_temp.startswith(settings.duckdb_temp_directory + "/") and writer_temp != temp

    monkeypatch.setenv(config.ENV_DUCKDB_MEMORY, "3GB")
    monkeypatch.setenv(config.ENV_DUCKDB_TEMP, str(tmp_path / "spill's"))
    settings = config.get_settings()
    con = connect(settings.duckdb_memory_limit, None, settings.duckdb_temp_directory)
    limit, temp = con.execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
    assert limit == "2.7 GiB" and temp.startswith(str(tmp_path / "spill's") + "/")
    # a spill lands in the connection's own folder, which the connection removes when it closes
    con.execute("SET memory_limit = '50MB'; SET threads = 1")
    query = "SELECT count(DISTINCT h) FROM (SELECT md5(range::VARCHAR) AS h FROM range(3000000))"
    assert con.execute(query).fetchone()[0] == 3_000_000
    assert config.Path(temp).is_dir()  # it spilled there
    con.close()
    assert not config.Path(temp).exists()
    with pytest.raises(config.ConfigError, match="memory limit 'plenty'"):
        connect("plenty")


def warehouse_module_duck(settings):  # the writers' connection (upserts, bulk appends)
    from analytics_lib.warehouse.tables import _duck

    return _duck(settings)
