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

import pyarrow as pa

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
    records: dict[tuple[str, tuple], Record] = {}
    rejects: list[Reject] = []
    superseded: dict[int, str] = {}  # line -> reason, raw text fetched afterwards
    for item in src.read(file, progress):
        if isinstance(item, Reject):
            rejects.append(item)
            continue
        key = (item.table, _key_of(item.table, item.row))
        previous = records.get(key)
        if previous is not None:
            for line in previous.lines:
                superseded[line] = (
                    f"duplicate id {key[1][0]!s:.60} in file: superseded by line {item.lines[-1]}"
                )
        records[key] = item
    result.rows_read = src.rows_read

    # 2. refunds and disputes need their payment, and refunds may not exceed it
    for line, reason in _check_against_payments(warehouse, records).items():
        superseded[line] = reason
    if superseded:
        raw = src.raw_rows(file, set(superseded))
        for line, reason in superseded.items():
            rejects.append(Reject(line, reason, raw.get(line, "")))
        dropped = set(superseded)
        records = {k: r for k, r in records.items() if not dropped.intersection(r.lines)}

    # 3. write parents first, one commit per table
    primary_rows: dict[str, list[dict]] = defaultdict(list)
    child_rows: dict[str, dict[tuple, dict]] = defaultdict(dict)
    derived_rows: dict[str, dict[tuple, dict]] = defaultdict(dict)
    for rec in records.values():
        primary_rows[rec.table].append(rec.row)
        for table, row in rec.children:
            child_rows[table][_key_of(table, row)] = row
        for table, row in rec.derived:
            derived_rows[table][_key_of(table, row)] = row
    outcomes: dict[str, dict[tuple, str]] = {}
    for table in WRITE_ORDER:
        counts = {"inserted": 0, "updated": 0, "unchanged": 0}
        owned = dict(child_rows.get(table, {}))
        owned.update({_key_of(table, r): r for r in primary_rows.get(table, [])})
        derived = {k: r for k, r in derived_rows.get(table, {}).items() if k not in owned}
        if derived:
            res = warehouse.upsert(table, list(derived.values()), batch_id, only_new=True)
            counts["inserted"] += res.inserted
        if owned:
            res = warehouse.upsert(table, list(owned.values()), batch_id)
            outcomes[table] = res.outcomes
            for k in counts:
                counts[k] += getattr(res, k)
        if derived or owned:
            result.tables[table] = counts

    # 4. the accounting: each accepted line takes its record's outcome
    for rec in records.values():
        outcome = outcomes[rec.table][_key_of(rec.table, rec.row)]
        setattr(result, outcome, getattr(result, outcome) + len(rec.lines))
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
            "line": rej.line, "reason": rej.reason[:1000], "raw": rej.raw[:RAW_LIMIT],
            "raw_length": rej.raw_length or len(rej.raw), "rejected_at": now,
        }
    warehouse.upsert("ingest_rejects", pa.Table.from_pylist(list(rows.values())), batch_id, only_new=True)


def _check_against_payments(warehouse: Warehouse, records: dict[tuple[str, tuple], Record]) -> dict[int, str]:
    """Lines of refund/dispute records whose payment is unknown or over-refunded -> reason."""
    claims = [r for (table, _), r in records.items() if table in ("refunds", "disputes")]
    if not claims:
        return {}
    batch_payments = {
        r.row["transaction_id"]: (r.row["amount_minor"], r.row["currency"])
        for (table, _), r in records.items() if table == "transactions"
    }
    wanted = sorted({r.row["transaction_id"] for r in claims} - set(batch_payments))
    stored: dict[str, tuple[int, str]] = {}
    stored_refunds: dict[str, list[tuple[str, int]]] = defaultdict(list)
    if wanted:
        with warehouse.snapshot(tables=["transactions", "refunds"]) as snap:
            snap.con.register("wanted", pa.table({"transaction_id": wanted}))
            for tx, amount, cur in snap.con.sql(
                "SELECT transaction_id, amount_minor, currency FROM transactions "
                "WHERE transaction_id IN (SELECT transaction_id FROM wanted)"
            ).fetchall():
                stored[tx] = (amount, cur)
            for refund_id, tx, amount in snap.con.sql(
                "SELECT refund_id, transaction_id, amount_minor FROM refunds "
                "WHERE transaction_id IN (SELECT transaction_id FROM wanted) AND status <> 'failed'"
            ).fetchall():
                stored_refunds[tx].append((refund_id, amount))
    payments = {**stored, **batch_payments}
    bad: dict[int, str] = {}
    refunded: dict[str, int] = defaultdict(int)
    batch_refund_ids = {r.row["refund_id"] for r in claims if "refund_id" in r.row}
    for tx, items in stored_refunds.items():
        refunded[tx] += sum(a for rid, a in items if rid not in batch_refund_ids)
    for rec in sorted(claims, key=lambda r: r.lines):
        tx = rec.row["transaction_id"]
        kind = "refund" if "refund_id" in rec.row else "dispute"
        if tx not in payments:
            for line in rec.lines:
                bad[line] = f"{kind} of an unknown payment {tx!s:.60}"
            continue
        amount, cur = payments[tx]
        if rec.row["currency"] != cur:
            for line in rec.lines:
                bad[line] = f"{kind} currency {rec.row['currency']} differs from the payment's {cur}"
            continue
        if kind == "refund" and rec.row.get("status") != "failed":
            if refunded[tx] + rec.row["amount_minor"] > amount:
                for line in rec.lines:
                    bad[line] = (f"refund above the payment: {refunded[tx] + rec.row['amount_minor']} > "
                                 f"{amount} minor units of {cur} on {tx!s:.60}")
                continue
            refunded[tx] += rec.row["amount_minor"]
        elif kind == "dispute" and rec.row["amount_minor"] > amount:
            for line in rec.lines:
                bad[line] = f"dispute above the payment: {rec.row['amount_minor']} > {amount} on {tx!s:.60}"
    return bad


def _reason_category(reason: str) -> str:
    """The reason without its values, to count rejects by kind."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason.split(": ", 1)[0] if reason.startswith("malformed JSON") else reason)
    text = re.sub(r"-?\d+(\.\d+)?", "N", text)
    return re.sub(r"\b(on|of|payment|id) [^\s:]+$", r"\1 …", text)[:100]
