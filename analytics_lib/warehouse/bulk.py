"""Bulk loading of a brand-new warehouse: append fresh batches without key lookups.

:meth:`Warehouse.upsert` classifies every batch against the stored rows of its keys, which is
what makes repeated loads idempotent, but costs a read of the stored keys per batch. When a
table is known to be empty and every batch brings keys no earlier batch had (the synthetic
generator filling a new warehouse), that lookup finds nothing and can be skipped.

:func:`bulk_append` writes a batch exactly as an upsert into an empty table would: the same
business columns (conformed by :meth:`Warehouse.conform`), the same system columns and content
hash (:meth:`Warehouse._with_system_columns`, so a later upsert of the same row finds it
unchanged), the same sort order and partitioning, the table created by :meth:`Warehouse.create`.
The Parquet row groups are the warehouse's (:data:`ROW_GROUP_ROWS` rows, files written in time
order, so time-bounded reads skip row groups); only the compression differs: zstd level 1 instead
of the default snappy (hex ids and hashes compress to about half with zstd, hardly at all with
snappy; 96 instead of 157 bytes per transaction row, and less CPU). Readers do not depend on it.

The caller is responsible for key uniqueness across batches; keys are checked within a batch.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

import pyarrow as pa
from deltalake import CommitProperties, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from analytics_lib.warehouse.schema import get_table
from analytics_lib.warehouse.tables import (
    MAX_COMMIT_ATTEMPTS,
    ROW_GROUP_ROWS,
    Warehouse,
    WarehouseError,
    WriteResult,
    _duck,
    new_batch_id,
)

log = logging.getLogger(__name__)

# rows per Parquet row group: the warehouse's ROW_GROUP_ROWS (the time-bounded reads' unit of skipping)
__all__ = ["ROW_GROUP_ROWS", "bulk_append", "is_empty", "writer_properties"]
COMPRESSION = "ZSTD"
COMPRESSION_LEVEL = 1


def writer_properties(compression: str = COMPRESSION, level: int | None = COMPRESSION_LEVEL) -> WriterProperties:
    return WriterProperties(max_row_group_size=ROW_GROUP_ROWS, compression=compression,  # type: ignore[arg-type]
                            compression_level=level)


def is_empty(warehouse: Warehouse, name: str) -> bool:
    """True when ``name`` does not exist or holds no data file."""
    dt = warehouse._delta(name)
    return dt is None or not dt.file_uris()


def bulk_append(
    warehouse: Warehouse,
    name: str,
    data: pa.Table | Sequence[dict],
    batch_id: str | None = None,
    *,
    check_keys: bool = True,
    properties: WriterProperties | None = None,
) -> WriteResult:
    """Append ``data`` to ``name`` as new rows, in one Delta commit, without reading stored keys.

    Every row is counted as inserted. Only correct when none of the batch's keys is stored yet
    (a new warehouse filled by one writer); use :meth:`Warehouse.upsert` otherwise.
    """
    spec = get_table(name)
    batch = warehouse.conform(name, data)
    result = WriteResult(table=name)
    if batch.num_rows == 0:
        return result
    batch_id = batch_id or new_batch_id()
    con = _duck(warehouse.settings.duckdb_memory_limit)
    try:
        con.register("batch_raw", batch)
        if check_keys:
            dupes = con.sql(
                f"SELECT count(*) - count(DISTINCT ({', '.join(spec.keys)})) FROM batch_raw"
            ).fetchall()[0][0]
            if dupes:
                raise WarehouseError(f"table {name}: batch has {dupes} duplicate keys {spec.keys}")
        hashed = warehouse._with_system_columns(con, spec, batch_id)
        con.unregister("batch_raw")
        del batch, data
    finally:
        con.close()
    props = CommitProperties(custom_metadata={"batch_id": batch_id, "writer": "analytics_lib"})
    for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
        with warehouse._writer_lock(name):
            dt = warehouse.table(name)  # created with the table's schema and partitioning
            try:
                write_deltalake(dt, hashed, mode="append", commit_properties=props,
                                writer_properties=properties or writer_properties(),
                                storage_options=warehouse.storage_options)
                break
            except CommitFailedError as exc:
                if attempt == MAX_COMMIT_ATTEMPTS:
                    raise WarehouseError(f"table {name}: commit kept conflicting: {exc}") from exc
        wait = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
        log.warning("commit conflict on %s (attempt %d), retrying in %.2fs", name, attempt, wait)
        time.sleep(wait)
    dt.update_incremental()
    result.inserted = hashed.num_rows
    result.version = dt.version()
    return result
