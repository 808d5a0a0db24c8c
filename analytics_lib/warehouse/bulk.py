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

from collections.abc import Sequence

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake

from analytics_lib.warehouse.schema import get_table
from analytics_lib.warehouse.tables import (
    ROW_GROUP_ROWS,
    Warehouse,
    WriteResult,
    _duck,
    new_batch_id,
)

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
    con = _duck(warehouse.settings)
    try:
        con.register("batch_raw", batch)
        hashed = warehouse._checked_batch(con, spec, batch_id, check_keys)
        con.unregister("batch_raw")
        del batch, data
    finally:
        con.close()
    props = CommitProperties(custom_metadata={"batch_id": batch_id, "writer": "analytics_lib"})

    def append(dt: DeltaTable) -> WriteResult:  # created with the table's schema and partitioning
        write_deltalake(dt, hashed, mode="append", commit_properties=props,
                        writer_properties=properties or writer_properties(),
                        storage_options=warehouse.storage_options)
        dt.update_incremental()
        return WriteResult(table=name, inserted=hashed.num_rows, version=dt.version())

    return warehouse._committing(name, append)
