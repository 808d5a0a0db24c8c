"""A persistent cache of the metric layer's history tables (``sql/_history.sql``), so a new
process (a scheduled report, a dashboard kernel) does not rebuild them from all of history.

A history table depends only on the warehouse's table versions, the block's SQL and its key
(filters, currency, time zone, MRR conventions). The cache stores each built table as Parquet
under ``<warehouse>/_cache/metrics/<digest>/`` where the digest covers all of these, so any new
data or SQL change is a new digest: a stale entry can never be read. Entries are written to a
temporary folder and renamed when complete; the newest few per block are kept. Local
warehouses only; ``PAYMENT_ANALYTICS_METRIC_CACHE=off`` disables it. ``payment-analytics maintain``
warms it after compaction (the versions then stay the same until the next write)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import duckdb

ENV_SWITCH = "PAYMENT_ANALYTICS_METRIC_CACHE"
KEEP_PER_BLOCK = 6
COMPLETE = "_complete.json"


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "on").lower() not in ("off", "0", "false", "no")


def cacheable(sql: str) -> bool:
    """A history block can be stored if it reads no period variable (those change per scope)."""
    return not re.search(r"getvariable\(\s*'p_", sql)


def digest(block: str, sql: str, key: Any, versions: dict[str, int]) -> str:
    doc = json.dumps({"block": block, "sql": sql, "key": repr(key), "versions": sorted(versions.items())})
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


class HistoryCache:
    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def for_warehouse(cls, location: str, area: str = "metrics") -> HistoryCache | None:
        """The cache of ``<warehouse>/_cache/<area>`` (the metric layer's, or ``models`` for the
        fraud model's earlier history); None when switched off or not a local folder."""
        if not enabled() or "://" in location:
            return None
        return cls(Path(location) / "_cache" / area)

    def load(self, con: duckdb.DuckDBPyConnection, block: str, entry: str, tables: list[str],
             views: bool = False) -> bool:
        """Create ``tables`` from the entry (temporary tables, or with ``views`` temporary views
        over its files, for a query that reads each once); False (nothing created) if it is not
        there."""
        folder = self.root / block / entry
        if not (folder / COMPLETE).is_file():
            return False
        kind = "VIEW" if views else "TABLE"
        made: list[str] = []
        try:
            for table in tables:
                path = folder / f"{table}.parquet"
                if views:
                    con.execute(f"SELECT count(*) FROM parquet_metadata('{_sql_path(path)}')").fetchall()  # readable
                con.execute(f"CREATE OR REPLACE TEMP {kind} \"{table}\" AS SELECT * FROM read_parquet('{_sql_path(path)}')")
                made.append(table)
        except (duckdb.Error, OSError):
            for table in made:  # nothing half-made stays in the way of the tables built instead
                con.execute(f"DROP {kind} IF EXISTS \"{table}\"")
            shutil.rmtree(folder, ignore_errors=True)  # damaged: rebuilt from the warehouse and stored again
            return False
        return True

    def store(self, con: duckdb.DuckDBPyConnection, block: str, entry: str, tables: list[str]) -> None:
        """Save the tables (best effort: a cache that cannot be written is skipped)."""
        kinds = dict(con.execute("SELECT table_name, 'table' FROM duckdb_tables() WHERE temporary").fetchall())
        if not all(t in kinds for t in tables):
            return  # views are cheap and read other tables at query time: nothing to store
        parent = self.root / block
        tmp = parent / f".{entry}.{uuid.uuid4().hex[:8]}.part"
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            for table in tables:
                con.execute(f"COPY \"{table}\" TO '{_sql_path(tmp / f'{table}.parquet')}' (FORMAT parquet)")
            (tmp / COMPLETE).write_text(json.dumps({"tables": tables}))
            target = parent / entry
            if target.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.replace(tmp, target)
            self._prune(parent)
        except (duckdb.Error, OSError):
            shutil.rmtree(tmp, ignore_errors=True)

    def _prune(self, parent: Path) -> None:
        entries = sorted((p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP_PER_BLOCK:]:
            shutil.rmtree(old, ignore_errors=True)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
