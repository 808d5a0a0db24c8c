"""The warehouse: Delta Lake tables (the only writer), snapshots for reading, ingestion.

``Warehouse`` owns the tables under the configured location; ``Warehouse.snapshot()`` returns a
DuckDB connection pinned to the table versions it read; ``ingest()`` loads a file through a
registered source.
"""

from analytics_lib.warehouse.schema import TABLES, TableSpec, get_table
from analytics_lib.warehouse.snapshot import Snapshot
from analytics_lib.warehouse.tables import Warehouse, WarehouseError, WriteResult, new_batch_id


def snapshot(location: str | None = None, **kwargs):
    """Open a snapshot of the configured warehouse (or ``location``)."""
    return Warehouse(location).snapshot(**kwargs)


__all__ = [
    "TABLES", "Snapshot", "TableSpec", "Warehouse", "WarehouseError", "WriteResult",
    "get_table", "new_batch_id", "snapshot",
]
