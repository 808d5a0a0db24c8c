"""The Delta Lake tables: creation, idempotent upserts, compaction. The only writer.

Every write goes through :class:`Warehouse`. A write of one batch to one table is one Delta
commit, so a failure leaves that table at its previous version. Rows are classified against
the stored table before writing (new key -> inserted, same key and different content hash ->
updated, same hash -> unchanged), only inserted and updated rows are written, and a batch that
changes nothing makes no commit. Writers to one table take a file lock (local warehouses) and
retry on a Delta commit conflict, so two writers (the live simulator and a scheduled ingest)
never lose or double a batch.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from analytics_lib.config import Settings, get_settings
from analytics_lib.warehouse.schema import TABLES, TableSpec, get_table

if TYPE_CHECKING:
    from analytics_lib.warehouse.snapshot import Snapshot

log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 8
#: Files removed by compaction stay readable this long, longer than any report or dashboard read.
DEFAULT_VACUUM_RETENTION_HOURS = 168


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message says which table and why."""


@dataclass
class WriteResult:
    """Outcome of writing one batch to one table."""

    table: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    version: int | None = None
    #: per input key (tuple of key values) -> "inserted" | "updated" | "unchanged"
    outcomes: dict[tuple, str] = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> int:
        return self.inserted + self.updated + self.unchanged


def new_batch_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _duck(memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": True})
    con.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


class Warehouse:
    """Delta tables under one location (a folder or an object-store URI)."""

    def __init__(self, location: str | os.PathLike[str] | None = None, settings: Settings | None = None):
        settings = settings or get_settings()
        if location is not None:
            settings = settings.with_warehouse(location)
        self.settings = settings
        self.location = settings.warehouse
        self.storage_options = settings.storage_options or None
        if self.is_local and Path(self.location).exists() and not Path(self.location).is_dir():
            # else reads see an empty warehouse and the first write fails with an OSError traceback
            raise WarehouseError(f"warehouse location {self.location} is not a folder")

    # -- layout -------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.settings.warehouse_is_local

    def table_uri(self, name: str) -> str:
        get_table(name)
        return f"{self.location}/{name}"

    def _delta(self, name: str, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.table_uri(name), version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def table(self, name: str, version: int | None = None) -> DeltaTable:
        """The Delta table (created empty if missing)."""
        dt = self._delta(name, version)
        if dt is None:
            if version is not None:
                raise WarehouseError(f"table {name} does not exist, so it has no version {version}")
            dt = self.create(name)
        return dt

    def exists(self, name: str) -> bool:
        return self._delta(name) is not None

    def create(self, name: str) -> DeltaTable:
        spec = get_table(name)
        if self.is_local:
            _make_folder(Path(self.location))
        try:
            return DeltaTable.create(
                self.table_uri(name),
                spec.arrow_schema(),
                mode="ignore",
                partition_by=list(spec.partition_by) or None,
                name=name,
                description=spec.grain,
                storage_options=self.storage_options,
            )
        except CommitFailedError:  # created concurrently by another process
            return DeltaTable(self.table_uri(name), storage_options=self.storage_options)

    def ensure_tables(self) -> None:
        for name in TABLES:
            if not self.exists(name):
                self.create(name)

    def versions(self) -> dict[str, int]:
        """Current Delta version of every table (-1 for a table not created yet)."""
        out = {}
        for name in TABLES:
            dt = self._delta(name)
            out[name] = dt.version() if dt is not None else -1
        return out

    def snapshot(self, as_of: datetime | dict[str, int] | None = None, **kwargs: object) -> Snapshot:
        from analytics_lib.warehouse.snapshot import Snapshot

        return Snapshot.open(self, as_of=as_of, **kwargs)  # type: ignore[arg-type]

    # -- writing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writer_lock(self, name: str) -> Iterator[None]:
        """Serialise writers of one table across processes (local warehouses only)."""
        if not self.is_local:
            yield
            return
        lock_dir = Path(self.location) / "_locks"
        _make_folder(lock_dir)
        with open(lock_dir / f"{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def conform(self, name: str, data: pa.Table | Sequence[dict]) -> pa.Table:
        """Cast a batch to the table's business columns (missing nullable columns become null)."""
        spec = get_table(name)
        schema = pa.schema([pa.field(c.name, c.arrow_type, c.nullable) for c in spec.columns])
        if not isinstance(data, pa.Table):
            # with the schema given, a key absent from some rows (even the first) becomes null
            data = pa.Table.from_pylist(list(data), schema=pa.schema([f.with_nullable(True) for f in schema]))
        arrays = []
        for col in spec.columns:
            if col.name in data.column_names:
                arr = data.column(col.name)
                if arr.type != col.arrow_type:
                    arr = arr.cast(col.arrow_type)
            else:
                arr = pa.nulls(data.num_rows, col.arrow_type)
            if not col.nullable and arr.null_count:
                raise WarehouseError(
                    f"table {name}: required column {col.name!r} is missing or null in {arr.null_count} rows"
                )
            arrays.append(arr)
        return pa.Table.from_arrays(arrays, schema=schema)

    def upsert(
        self,
        name: str,
        data: pa.Table | Sequence[dict],
        batch_id: str | None = None,
        only_new: bool = False,
        outcomes: bool = False,
    ) -> WriteResult:
        """Insert new keys and update changed rows of ``name`` in one commit.

        Keys must be unique within ``data``. With ``only_new`` existing keys are left as they
        are (counted unchanged): for rows derived from another record, such as a customer first
        seen on a payment, which must not overwrite the customer's own richer record.
        Returns counts, and with ``outcomes`` each key's outcome (ingestion's row accounting).
        """
        spec = get_table(name)
        batch = self.conform(name, data)
        result = WriteResult(table=name)
        if batch.num_rows == 0:
            return result
        batch_id = batch_id or new_batch_id()
        con = _duck(self.settings.duckdb_memory_limit)
        try:
            con.register("batch_raw", batch)
            dupes = con.sql(
                f"SELECT count(*) - count(DISTINCT ({', '.join(spec.keys)})) FROM batch_raw"
            ).fetchall()[0][0]
            if dupes:
                raise WarehouseError(f"table {name}: batch has {dupes} duplicate keys {spec.keys}")
            hashed = self._with_system_columns(con, spec, batch_id)
            # the hashed copy is all that is needed from here: free the input early (large files)
            con.unregister("batch_raw")
            del batch, data
            con.register("batch", hashed)
            for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
                with self._writer_lock(name):
                    dt = self.table(name)
                    try:
                        return self._classify_and_write(con, spec, dt, batch_id, only_new, outcomes, hashed)
                    except CommitFailedError as exc:
                        if attempt == MAX_COMMIT_ATTEMPTS:
                            raise WarehouseError(f"table {name}: commit kept conflicting: {exc}") from exc
                        wait = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                        log.warning("commit conflict on %s (attempt %d), retrying in %.2fs", name, attempt, wait)
                        time.sleep(wait)
        finally:
            con.close()
        return result

    def _with_system_columns(self, con: duckdb.DuckDBPyConnection, spec: TableSpec, batch_id: str) -> pa.Table:
        """The batch with its content hash and batch columns, sorted as the table is stored
        (files written in time order let time-bounded reads skip row groups)."""
        cols = ", ".join(f'"{c}"' for c in spec.business_columns)
        struct = ", ".join(f'"{c}" := "{c}"' for c in spec.business_columns)
        order = f" ORDER BY {', '.join(repr_ident(c) for c in spec.sort_by)}" if spec.sort_by else ""
        if not spec.system_columns:
            return con.sql(f"SELECT {cols} FROM batch_raw{order}").to_arrow_table().cast(spec.arrow_schema())
        now = datetime.now(UTC)
        tbl = con.sql(
            f"SELECT {cols}, md5(to_json(struct_pack({struct}))) AS _row_hash, "
            f"?::VARCHAR AS _batch_id, ?::TIMESTAMPTZ AS _ingested_at FROM batch_raw{order}",
            params=[batch_id, now],
        ).to_arrow_table()
        return tbl.cast(spec.arrow_schema())

    def _target_files(self, con: duckdb.DuckDBPyConnection, spec: TableSpec, dt: DeltaTable) -> list[str]:
        if spec.partition_by:
            part = spec.partition_by[0]
            values = [r[0] for r in con.sql(f'SELECT DISTINCT "{part}" FROM batch').fetchall()]
            return dt.file_uris(file_pruning_predicate=[(part, "in", values)])
        return dt.file_uris()

    def _classify_and_write(
        self, con: duckdb.DuckDBPyConnection, spec: TableSpec, dt: DeltaTable, batch_id: str, only_new: bool,
        want_outcomes: bool, batch: pa.Table,
    ) -> WriteResult:
        from analytics_lib.warehouse.snapshot import parquet_view_sql

        keys = list(spec.keys)
        files = self._target_files(con, spec, dt)
        has_hash = spec.system_columns and not only_new
        join = " AND ".join(f'b."{k}" = t."{k}"' for k in keys)
        key_list = ", ".join(f'b."{k}"' for k in keys)
        if files:
            # only the stored rows whose keys are in the batch (a semi join keeps the memory
            # proportional to the batch, not to the table)
            stored = parquet_view_sql(spec, files, columns=[*keys, *(["_row_hash"] if has_hash else [])])
            con.execute(f"CREATE OR REPLACE TEMP VIEW target AS SELECT t.* FROM ({stored}) t "
                        f"SEMI JOIN batch b ON {join}")
            hash_expr = "t._row_hash" if has_hash else "NULL"
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE classified AS
                    SELECT {key_list},
                           CASE WHEN t."{keys[0]}" IS NULL THEN 'inserted'
                                WHEN {"b._row_hash = " + hash_expr if has_hash else "true"} THEN 'unchanged'
                                ELSE 'updated' END AS outcome
                    FROM batch b LEFT JOIN target t ON {join}""")
        else:  # nothing stored where the batch goes: everything is new
            con.execute(f"CREATE OR REPLACE TEMP TABLE classified AS SELECT {key_list}, 'inserted' AS outcome FROM batch b")
        result = WriteResult(table=spec.name)
        for outcome, n in con.sql("SELECT outcome, count(*) FROM classified GROUP BY ALL").fetchall():
            setattr(result, outcome, n)
        if want_outcomes:
            for row in con.sql("SELECT * FROM classified").fetchall():
                result.outcomes[tuple(row[:-1])] = row[-1]
        if result.inserted == 0 and result.updated == 0:
            result.version = dt.version()
            return result
        # rows to write: new keys and changed rows (all of the batch when everything is new)
        if result.unchanged == 0 and result.updated == 0:
            changed = batch
        else:
            order = f" ORDER BY {', '.join(repr_ident(c) for c in spec.sort_by)}" if spec.sort_by else ""
            changed = con.sql(
                f"""SELECT b.* FROM batch b SEMI JOIN (SELECT * FROM classified WHERE outcome <> 'unchanged') c
                    ON {join.replace('t."', 'c."')}{order}"""
            ).to_arrow_table().cast(spec.arrow_schema())
        props = CommitProperties(custom_metadata={"batch_id": batch_id, "writer": "analytics_lib"})
        if result.updated == 0:
            write_deltalake(dt, changed, mode="append", commit_properties=props,
                            storage_options=self.storage_options)
        else:
            predicate = " AND ".join(f's."{k}" = t."{k}"' for k in (*keys, *spec.partition_by) if k in spec.column_names)
            # literal partition values let the merge read only the partitions the batch touches
            # (a join condition alone made it scan every partition: ~60 s for 2 rows at 10M)
            for part in (p for p in spec.partition_by if p in changed.column_names):
                values = sorted({v for v in changed.column(part).to_pylist() if v is not None})
                if values and len(values) == len(set(changed.column(part).to_pylist())):
                    quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
                    predicate += f' AND t."{part}" IN ({quoted})'
            (
                dt.merge(changed, predicate=predicate, source_alias="s", target_alias="t",
                         commit_properties=props)
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
        dt.update_incremental()
        result.version = dt.version()
        return result

    def append(self, name: str, data: pa.Table | Sequence[dict], batch_id: str | None = None) -> WriteResult:
        """Alias of :meth:`upsert` kept for readability at call sites that only add rows."""
        return self.upsert(name, data, batch_id)

    # -- maintenance --------------------------------------------------------------------
    def compact(self, retention_hours: int = DEFAULT_VACUUM_RETENTION_HOURS, vacuum: bool = True) -> dict[str, dict]:
        """Compact small files (optimize), checkpoint, and vacuum files older than the retention."""
        report: dict[str, dict] = {}
        for name in TABLES:
            dt = self._delta(name)
            if dt is None:
                continue
            with self._writer_lock(name):
                dt = self.table(name)
                before = len(dt.file_uris())
                # bin-packing keeps files written sorted by time; a z-order would rewrite
                # whole partitions every night for little gain on time-sorted appends
                metrics = dt.optimize.compact()
                dt.update_incremental()
                dt.create_checkpoint()
                removed = dt.vacuum(retention_hours=retention_hours, dry_run=False,
                                    enforce_retention_duration=False) if vacuum else []
                report[name] = {
                    "files_before": before,
                    "files_after": len(dt.file_uris()),
                    "files_removed_by_vacuum": len(removed),
                    "version": dt.version(),
                    "optimize": {k: metrics.get(k) for k in ("numFilesAdded", "numFilesRemoved")},
                }
        return report

    def describe(self) -> list[dict]:
        """One row per table: version, files, rows (from the Delta log, no data scan)."""
        rows = []
        for name, spec in TABLES.items():
            dt = self._delta(name)
            if dt is None:
                rows.append({"table": name, "version": -1, "files": 0, "rows": 0})
                continue
            actions = pa.table(dt.get_add_actions(flatten=True))
            n = 0
            if actions.num_rows:
                n = sum(c or 0 for c in actions.column("num_records").to_pylist())
            rows.append({"table": name, "grain": spec.grain, "version": dt.version(),
                         "files": actions.num_rows, "rows": n})
        return rows


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission, read-only file system
        raise WarehouseError(f"cannot create the warehouse folder {path}: {exc.strerror or exc}") from None


def repr_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def versions_json(versions: dict[str, int]) -> str:
    return json.dumps(versions, sort_keys=True)
