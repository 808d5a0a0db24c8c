"""Ingestion: parse -> validate -> reject or MERGE by natural key, with every row accounted for.

``ingest(path, source)`` reads a file through a registered source and writes it as one batch:

* every data row of the file ends up as exactly one of inserted, updated, unchanged or rejected,
  and ``rows_read == inserted + updated + unchanged + rejected``;
* a rejected row is stored in ``ingest_rejects`` with file, line, reason and raw text;
* the same id twice in one file: the later row wins, the earlier one is rejected as superseded;
* refunds and disputes are checked against their payment (in the file or the warehouse): an
  unknown payment, or refunds adding up to more than the payment, are rejected;
* each table receives the batch in one Delta commit; tables are written parents first and the
  ``ingest_batches`` row last, so an interrupted batch is simply re-run (writes are idempotent);
* whole-file problems (missing file, unknown source, not UTF-8, missing columns, empty file)
  raise :class:`IngestError` before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analytics_lib.warehouse import privacy
from analytics_lib.warehouse.schema import WRITE_ORDER, get_table
from analytics_lib.warehouse.sources import IngestError, Record, Reject, get_source
from analytics_lib.warehouse.tables import Warehouse, new_batch_id

log = logging.getLogger(__name__)

RAW_LIMIT = 4096


@dataclass
class IngestResult:
    """The accounting of one ingested file."""

    source: str
    file: str
    batch_id: str
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.inserted + self.updated + self.unchanged + self.rejected

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.file}: {self.rows_read} rows read = {self.inserted} inserted + "
            f"{self.updated} updated + {self.unchanged} unchanged + {self.rejected} rejected"
        )


def _key_of(table: str, row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in get_table(table).keys)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ingest(
    path: str | os.PathLike[str],
    source: str,
    warehouse: Warehouse | None = None,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> IngestResult:
    """Load one file through the source registered as ``source``; see the module docstring."""
    started = datetime.now(UTC)
    src = get_source(source, **options)
    file = Path(path)
    if not file.exists():
        raise IngestError(f"file not found: {file}")
    if not file.is_file():
        raise IngestError(f"not a file: {file}")
    warehouse = warehouse or Warehouse()
    batch_id = new_batch_id()
    result = IngestResult(source=source, file=file.name, batch_id=batch_id)

    # 1. parse everything first: a whole-file error raised here leaves the warehouse untouched
    collected = _Collector(warehouse)
    rejects: list[Reject] = []
    for item in src.read(file, progress):
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            collected.add(item)
    result.rows_read = src.rows_read
    tables = collected.finish()

    # 2. refunds and disputes need their payment, and refunds may not exceed it
    claims = [c for c in collected.claims if c.lines[-1] not in collected.dropped_tags]
    for rec, reason in _check_against_payments(warehouse, claims, tables.get("transactions")):
        collected.drop(rec.lines, reason)
    if collected.dropped_lines:
        raw = src.raw_rows(file, set(collected.dropped_lines))
        for line, reason in sorted(collected.dropped_lines.items()):
            rejects.append(Reject(line, reason, raw.get(line, "")))
        tables = {
            t: tbl.filter(pc.invert(pc.is_in(tbl["_line"], pa.array(sorted(collected.dropped_tags), pa.int64()))))
            for t, tbl in tables.items()
        }

    # 3. write parents first, one commit per table
    outcomes: dict[str, dict[tuple, str]] = {}
    for table in WRITE_ORDER:
        counts = {"inserted": 0, "updated": 0, "unchanged": 0}
        owned = _last_per_key(table, tables.pop(table)) if table in tables else None
        owned_keys = set()
        if owned is not None and owned.num_rows:
            owned_keys = set(zip(*(owned[k].to_pylist() for k in get_table(table).keys), strict=True))
        derived = [r for k, r in collected.derived.get(table, {}).items() if k not in owned_keys]
        if derived:
            res = warehouse.upsert(table, derived, batch_id, only_new=True)
            counts["inserted"] += res.inserted
        if owned is not None and owned.num_rows:
            res = warehouse.upsert(table, owned, batch_id, outcomes=True)
            outcomes[table] = res.outcomes
            for k in counts:
                counts[k] += getattr(res, k)
        if derived or (owned is not None and owned.num_rows):
            result.tables[table] = counts

    # 4. the accounting: each accepted line takes its record's outcome
    for (table, key), lines in collected.owner.items():
        if lines[-1] in collected.dropped_tags:
            continue
        outcome = outcomes[table][key]
        setattr(result, outcome, getattr(result, outcome) + len(lines))
    result.rejected = len(rejects)
    for rej in rejects:
        reason = _reason_category(rej.reason)
        result.reject_reasons[reason] = result.reject_reasons.get(reason, 0) + 1
    _write_rejects(warehouse, rejects, source, file.name, batch_id)
    if not result.balanced:  # a bug, not bad input: say so loudly
        raise RuntimeError(f"ingest accounting does not add up: {result.summary()}")

    finished = datetime.now(UTC)
    result.seconds = (finished - started).total_seconds()
    result.versions = warehouse.versions()
    warehouse.upsert("ingest_batches", [{
        "batch_id": batch_id, "source": source, "file": file.name, "file_sha256": _file_sha256(file),
        "started_at": started, "finished_at": finished, "rows_read": result.rows_read,
        "inserted": result.inserted, "updated": result.updated, "unchanged": result.unchanged,
        "rejected": result.rejected, "table_versions": json.dumps(result.versions, sort_keys=True),
    }], batch_id)
    log.info(result.summary())
    return result


def _write_rejects(warehouse: Warehouse, rejects: list[Reject], source: str, file: str, batch_id: str) -> None:
    if not rejects:
        return
    now = datetime.now(UTC)
    rows: dict[str, dict] = {}
    for rej in rejects:
        reject_id = hashlib.sha256(f"{source}\x1f{file}\x1f{rej.line}\x1f{rej.reason}".encode()).hexdigest()[:32]
        rows[reject_id] = {
            "reject_id": reject_id, "batch_id": batch_id, "source": source, "file": file,
            "line": rej.line, "reason": privacy.redact_text(rej.reason[:1000]),
            "raw": privacy.redact_text(rej.raw[:RAW_LIMIT]),
            "raw_length": rej.raw_length or len(rej.raw), "rejected_at": now,
        }
    warehouse.upsert("ingest_rejects", pa.Table.from_pylist(list(rows.values())), batch_id, only_new=True)


def _check_against_payments(
    warehouse: Warehouse, claims: list[Record], batch_transactions: pa.Table | None
) -> list[tuple[Record, str]]:
    """Refund/dispute records whose payment is unknown, in another currency or over-refunded."""
    if not claims:
        return []
    wanted = sorted({r.row["transaction_id"] for r in claims})
    payments: dict[str, tuple[int, str]] = {}
    stored_refunds: dict[str, list[tuple[str, int]]] = defaultdict(list)
    with warehouse.snapshot(tables=["transactions", "refunds"]) as snap:
        snap.con.register("wanted", pa.table({"transaction_id": wanted}))
        for tx, amount, cur in snap.con.sql(
            "SELECT transaction_id, amount_minor, currency FROM transactions "
            "WHERE transaction_id IN (SELECT transaction_id FROM wanted)"
        ).fetchall():
            payments[tx] = (amount, cur)
        for refund_id, tx, amount in snap.con.sql(
            "SELECT refund_id, transaction_id, amount_minor FROM refunds "
            "WHERE transaction_id IN (SELECT transaction_id FROM wanted) AND status <> 'failed'"
        ).fetchall():
            stored_refunds[tx].append((refund_id, amount))
    if batch_transactions is not None and batch_transactions.num_rows:
        mask = pc.is_in(batch_transactions["transaction_id"], pa.array(wanted, pa.string()))
        for row in batch_transactions.filter(mask).select(["transaction_id", "amount_minor", "currency"]).to_pylist():
            payments[row["transaction_id"]] = (row["amount_minor"], row["currency"])
    bad: list[tuple[Record, str]] = []
    refunded: dict[str, int] = defaultdict(int)
    batch_refund_ids = {r.row["refund_id"] for r in claims if "refund_id" in r.row}
    for tx, items in stored_refunds.items():
        refunded[tx] += sum(a for rid, a in items if rid not in batch_refund_ids)
    for rec in sorted(claims, key=lambda r: r.lines):
        tx = rec.row["transaction_id"]
        kind = "refund" if "refund_id" in rec.row else "dispute"
        if tx not in payments:
            bad.append((rec, f"{kind} of an unknown payment {tx!s:.60}"))
            continue
        amount, cur = payments[tx]
        if rec.row["currency"] != cur:
            bad.append((rec, f"{kind} currency {rec.row['currency']} differs from the payment's {cur}"))
        elif kind == "refund" and rec.row.get("status") != "failed":
            if refunded[tx] + rec.row["amount_minor"] > amount:
                bad.append((rec, f"refund above the payment: {refunded[tx] + rec.row['amount_minor']} > "
                                 f"{amount} minor units of {cur} on {tx!s:.60}"))
            else:
                refunded[tx] += rec.row["amount_minor"]
        elif kind == "dispute" and rec.row["amount_minor"] > amount:
            bad.append((rec, f"dispute above the payment: {rec.row['amount_minor']} > {amount} on {tx!s:.60}"))
    return bad


class _Collector:
    """Holds a parsed file compactly: rows go to Arrow in chunks, Python keeps only the keys.

    Every row carries ``_line``, the last input line of the record that produced it, so rows of
    a record dropped later (a superseded duplicate, a refund of an unknown payment) are removed
    together with their children.
    """

    CHUNK = 50_000

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.pending: dict[str, list[dict]] = defaultdict(list)
        self.chunks: dict[str, list[pa.Table]] = defaultdict(list)
        self.derived: dict[str, dict[tuple, dict]] = defaultdict(dict)
        #: (table, key) -> input lines of the record that currently holds the key
        self.owner: dict[tuple[str, tuple], tuple[int, ...]] = {}
        self.claims: list[Record] = []
        self.dropped_lines: dict[int, str] = {}
        self.dropped_tags: set[int] = set()
        self._count = 0

    def add(self, rec: Record) -> None:
        key = _key_of(rec.table, rec.row)
        previous = self.owner.get((rec.table, key))
        if previous is not None:
            self.drop(previous, f"duplicate id {key[0]!s:.60} in file: superseded by line {rec.lines[-1]}")
        self.owner[(rec.table, key)] = rec.lines
        tag = rec.lines[-1]
        self.pending[rec.table].append({**rec.row, "_line": tag})
        for table, row in rec.children:
            self.pending[table].append({**row, "_line": tag})
        for table, row in rec.derived:
            self.derived[table][_key_of(table, row)] = row
        if rec.table in ("refunds", "disputes"):
            self.claims.append(rec)
        self._count += 1
        if self._count % self.CHUNK == 0:
            self._flush()

    def drop(self, lines: tuple[int, ...], reason: str) -> None:
        for line in lines:
            self.dropped_lines[line] = reason
        self.dropped_tags.add(lines[-1])

    def _flush(self) -> None:
        for table, rows in self.pending.items():
            if rows:
                lines = pa.array([r["_line"] for r in rows], pa.int64())
                tbl = self.warehouse.conform(table, rows)
                self.chunks[table].append(tbl.append_column("_line", lines))
        self.pending = defaultdict(list)

    def finish(self) -> dict[str, pa.Table]:
        self._flush()
        return {t: pa.concat_tables(c) for t, c in self.chunks.items() if c}


def _last_per_key(table: str, tbl: pa.Table) -> pa.Table:
    """One row per key (the one from the latest line), without the ``_line`` column."""
    keys = list(get_table(table).keys)
    con = duckdb.connect()
    try:
        con.register("rows_in", tbl)
        partition = ", ".join(f'"{k}"' for k in keys)
        out = con.sql(
            f"SELECT * EXCLUDE (_line) FROM rows_in "
            f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY _line DESC) = 1"
        ).to_arrow_table()
    finally:
        con.close()
    return out


def _reason_category(reason: str) -> str:
    """The reason without its values, to count rejects by kind."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason.split(": ", 1)[0] if reason.startswith("malformed JSON") else reason)
    text = re.sub(r"-?\d+(\.\d+)?", "N", text)
    return re.sub(r"\b(on|of|payment|id) [^\s:]+$", r"\1 …", text)[:100]
