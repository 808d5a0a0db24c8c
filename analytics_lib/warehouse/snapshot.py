"""Read-only snapshots: a DuckDB connection with one view per table, pinned to Delta versions.

The views are temporary (they belong to the snapshot's connection): snapshots of one
``Warehouse`` are connections to one in-process DuckDB database, since starting a database costs
about 40 ms and a live dashboard opens a snapshot every few seconds.

A snapshot reads each table at one Delta version (the current one, or the one in force at an
``as_of`` time, or explicit versions), exposes it as a DuckDB view over exactly that version's
Parquet files, and reports the versions it read so every run can record them. Readers never
block writers: the files of a version are immutable, and compaction keeps replaced files for the
vacuum retention period.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
import pyarrow as pa

from analytics_lib.config import ConfigError
from analytics_lib.warehouse.schema import TABLES, WRITE_ORDER, TableSpec

if TYPE_CHECKING:
    from analytics_lib.warehouse.tables import Warehouse


def _quote_list(files: Sequence[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def parquet_view_sql(spec: TableSpec, files: Sequence[str], columns: Sequence[str] | None = None,
                     same_schema: bool = False) -> str:
    """SELECT over a Delta version's Parquet files with the table's column types.

    Partition columns live in the file paths (hive style), not in the files, so they are read
    with hive partitioning and typed explicitly. ``same_schema``: every file has the same
    columns, so DuckDB reads one file's footer to bind the view instead of all of them
    (``union_by_name`` reads every footer: 65-75 ms for the 78-166 files of a 10M warehouse's
    big tables, on every snapshot).
    """
    columns = list(columns or spec.column_names)
    hive = ""
    if spec.partition_by:
        types = ", ".join(f"'{p}': 'VARCHAR'" for p in spec.partition_by)
        hive = f", hive_partitioning = true, hive_types = {{{types}}}"
    select = ", ".join(f'CAST("{c}" AS {spec.column(c).duckdb_type}) AS "{c}"' for c in columns)
    union = "false" if same_schema else "true"
    return f"SELECT {select} FROM read_parquet({_quote_list(files)}, union_by_name = {union}{hive})"


def empty_view_sql(spec: TableSpec) -> str:
    cols = ", ".join(f'CAST(NULL AS {c.duckdb_type}) AS "{c.name}"' for c in spec.all_columns)
    return f"SELECT {cols} WHERE false"


def connect(memory_limit: str | None = None, threads: int | None = None,
            temp_directory: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up the workspace's way (UTC, no extension downloads; the memory
    limit, threads and spill folder of the settings, see ``config.Settings``)."""
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": True}
    )
    con.execute("SET TimeZone = 'UTC'")
    try:
        if memory_limit:
            con.execute(f"SET memory_limit = {_literal(memory_limit)}")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        if temp_directory:
            con.execute(f"SET temp_directory = {_literal(spill_directory(temp_directory))}")
    except (duckdb.Error, OSError) as exc:
        con.close()
        raise ConfigError(f"DuckDB settings refused (memory limit {memory_limit!r}, threads {threads!r}, "
                          f"temp directory {temp_directory!r}): {exc}") from None
    return con


def spill_directory(parent: str) -> str:
    """A spill folder of its own for one connection, inside ``parent`` (created if missing).

    DuckDB names its spill files by size class and number only, and a database that closes
    deletes every such file in its folder: two connections (two notebook kernels, a report and
    the scheduler) sharing one folder can read or delete each other's spills. DuckDB creates the
    subfolder at its first spill and removes it when the connection closes."""
    os.makedirs(parent, exist_ok=True)
    return os.path.join(parent, f"{os.getpid()}-{uuid.uuid4().hex[:12]}")


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


@dataclass
class Snapshot:
    """A DuckDB connection whose views show the warehouse at fixed Delta versions."""

    con: duckdb.DuckDBPyConnection
    versions: dict[str, int]
    location: str
    opened_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    #: per table, the Parquet files its view reads (absolute URIs; empty for an empty table), or
    #: None where the view reads through delta-rs (deletion vectors, object stores)
    files: dict[str, tuple[str, ...] | None] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        warehouse: Warehouse,
        as_of: datetime | dict[str, int] | None = None,
        tables: Sequence[str] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> Snapshot:
        """Pin every table (or ``tables``) at its current version, at ``as_of``, or at given versions."""
        con = con or warehouse.reader_connection()
        versions: dict[str, int] = {}
        files: dict[str, tuple[str, ...] | None] = {}
        # children before parents (the reverse of the write order): a child row seen here was
        # committed after its parent, which is pinned later and so is seen too
        wanted = set(tables or TABLES)
        for name in [t for t in reversed(WRITE_ORDER) if t in wanted]:
            spec = TABLES[name]
            if as_of is None:  # the latest version: the warehouse's kept table, brought up to date
                with warehouse.reading(name) as latest:
                    versions[name] = latest.version() if latest is not None else -1
                    view, files[name] = _view_sql(spec, latest, con)
                    con.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {view}')
                continue
            dt = warehouse._delta(name)
            if dt is not None and as_of is not None:
                if isinstance(as_of, dict):
                    if name in as_of and as_of[name] >= 0:
                        dt.load_as_version(int(as_of[name]))
                    elif name in as_of:
                        dt = None
                else:
                    try:
                        dt.load_as_version(as_of)
                    except Exception:  # the table did not exist yet at that time
                        dt = None
            versions[name] = dt.version() if dt is not None else -1
            view, files[name] = _view_sql(spec, dt, con)
            con.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {view}')
        versions = {name: versions[name] for name in TABLES if name in versions}
        return cls(con=con, versions=versions, location=warehouse.location, files=files)

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a query (values bound as parameters) and return a DataFrame."""
        return self.con.sql(query, params=params or None).df()

    def arrow(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pa.Table:
        return self.con.sql(query, params=params or None).to_arrow_table()

    def scalar(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        rows = self.con.sql(query, params=params or None).fetchall()
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        if table not in self.versions:
            raise KeyError(f"table {table!r} is not in this snapshot")
        return int(self.scalar(f'SELECT count(*) FROM "{table}"'))

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _view_sql(spec: TableSpec, dt: Any, con: duckdb.DuckDBPyConnection) -> tuple[str, tuple[str, ...] | None]:
    """The view's SELECT and the Parquet files it reads (None when it reads through delta-rs)."""
    if dt is None:
        return empty_view_sql(spec), ()
    protocol = dt.protocol()
    features = set(protocol.reader_features or [])
    is_local = "://" not in dt.table_uri or dt.table_uri.startswith("file://")
    if "deletionVectors" in features or not is_local:
        # the plain file list ignores deletion vectors, and DuckDB cannot reach object stores
        # offline: read through delta-rs' own dataset instead (slower, always correct)
        dataset_name = f"__ds_{spec.name}_{dt.version()}"
        con.register(dataset_name, dt.to_pyarrow_dataset())
        select = ", ".join(f'CAST("{c.name}" AS {c.duckdb_type}) AS "{c.name}"' for c in spec.all_columns)
        return f"SELECT {select} FROM {dataset_name}", None
    files = dt.file_uris()
    if not files:
        return empty_view_sql(spec), ()
    return parquet_view_sql(spec, files, same_schema=_one_schema(spec, dt)), tuple(files)


def _one_schema(spec: TableSpec, dt: Any) -> bool:
    """Whether all the table's files have the same columns: the warehouse writes every file with
    the table's schema and never evolves it (a schema change rewrites the table), so this holds
    when the table's schema is exactly the spec's columns; anything else is read by name."""
    try:
        names = [f.name for f in dt.schema().fields]
    except Exception:  # noqa: BLE001 - unreadable schema: read by name, always correct
        return False
    return names == spec.column_names
