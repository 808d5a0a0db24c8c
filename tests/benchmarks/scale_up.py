"""Scale a warehouse up: a new warehouse holding ``copies`` disjoint copies of every entity.

``python -m tests.benchmarks.scale_up --source W --target NEW --copies 10
[--recent-months-only TABLE=N ...] [--skip-table T ...]``

Generating 100M payments takes the generator's whole simulation in memory (about 0.22 GB per
million payments) and about 5,400 s of CPU; scaling a generated 10M warehouse up by 10 takes
neither. Copy ``k`` (0 is the source itself) of every row gets every identifier that names an
entity of the platform (:data:`ENTITY_COLUMNS`: customer, payment, subscription, refund, ...)
suffixed with ``~k``, so the copies are ten platforms side by side: same time span, ten times the
daily volume, keys unique, and every foreign key points into its own copy (copy 3's refund refers
to copy 3's payment and customer). Shared dimensions (:data:`SHARED`: products, fx rates, the
marketing campaigns) are written once. Marketing spend (with impressions and clicks) is multiplied
by ``copies``: the copies' new customers come from the same campaigns, so ten times the customers
cost ten times the spend and CAC, click and impression rates stay what they were.

Every copied row gets the content hash an upsert of it would compute (a later upsert of the same
row finds it unchanged); ``_batch_id`` is suffixed like the ids (``ingest_batches`` is copied the
same way), ``_ingested_at`` is kept.

The layout is the bulk writer's (``analytics_lib/warehouse/bulk.py``): the table's schema and
partitioning, rows sorted by the table's time column, Parquet row groups of at most
``ROW_GROUP_ROWS`` rows, zstd level 1. DuckDB does the work (``COPY ... TO`` one file per chunk:
a partition, a month of an unpartitioned time-sorted table, or a source file of an unsorted one)
under a memory limit, spilling to a temporary folder; the files of a table are then committed in
one Delta commit, so a table is either complete or absent.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.transaction import AddAction

from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.bulk import COMPRESSION_LEVEL, ROW_GROUP_ROWS
from analytics_lib.warehouse.schema import TABLES, WRITE_ORDER, TableSpec

#: columns holding an identifier of an entity of the platform: suffixed with ``~k`` in copy k.
#: Hashed personal identifiers (e-mail, IP address) are entities too: copy 3's customer is not the
#: same person as copy 0's, and fraud rules count customers per IP address.
ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "email_hash"),
    "subscriptions": ("subscription_id", "customer_id"),
    "subscription_events": ("event_id", "subscription_id", "customer_id"),
    "transactions": ("transaction_id", "customer_id", "original_transaction_id", "subscription_id", "ip_hash"),
    "fees": ("fee_id", "transaction_id"),
    "refunds": ("refund_id", "transaction_id", "customer_id"),
    "disputes": ("dispute_id", "transaction_id", "customer_id"),
    "checkout_events": ("event_id", "session_id", "customer_id", "transaction_id"),
    "user_activity": ("customer_id",),
    "support_tickets": ("ticket_id", "customer_id"),
    "fraud_alerts": ("alert_id", "transaction_id", "customer_id"),
    "anomaly_alerts": ("alert_id",),  # and the subject when it names a customer or a payment
    "ingest_rejects": ("reject_id", "batch_id"),
    "ingest_batches": ("batch_id",),
}
#: dimensions every copy shares (product ids, campaign ids, discount codes, currencies and
#: countries inside the other tables stay as they are): written once
SHARED: tuple[str, ...] = ("products", "fx_rates", "marketing_spend")
#: columns of a shared table multiplied by ``copies`` (see the module docstring)
SCALED_COLUMNS: dict[str, tuple[str, ...]] = {"marketing_spend": ("spend_minor", "impressions", "clicks")}
assert set(ENTITY_COLUMNS) | set(SHARED) == set(TABLES), "every table must be copied or shared"
assert not set(ENTITY_COLUMNS) & set(SHARED)

#: DuckDB cuts row groups at multiples of its 2,048-row vectors: the largest such size within
#: the warehouse's ROW_GROUP_ROWS (100,000 would give row groups of 100,352 rows)
DUCKDB_ROW_GROUP = ROW_GROUP_ROWS // 2048 * 2048
#: an unpartitioned time-sorted table of more output rows than this is written a month per file
MONTH_CHUNKS_ABOVE = 4_000_000
SUFFIX = "~"


class ScaleUpError(RuntimeError):
    pass


@dataclass
class Chunk:
    """One output file: source files, an optional row filter, the partition value."""

    label: str
    files: list[str]
    where: str = ""
    partition: str | None = None
    rows: int = 0


@dataclass
class TableResult:
    table: str
    source_rows: int = 0
    rows: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    note: str = ""
    chunks: list[dict] = field(default_factory=list)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _files_list(files: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(f) for f in files) + "]"


def _local(uri: str) -> str:
    return uri.removeprefix("file://")


def copied_expression(spec: TableSpec, column: str, copies_of_table: int) -> str:
    """The SQL of ``column`` in copy ``k`` (the cross join's column) of a row of ``spec``."""
    ref = f"src.{_ident(column)}"
    if copies_of_table > 1 and column in ENTITY_COLUMNS.get(spec.name, ()):
        return f"CASE WHEN k = 0 THEN {ref} ELSE {ref} || '{SUFFIX}' || k::VARCHAR END"
    if spec.name == "anomaly_alerts" and column == "subject" and copies_of_table > 1:
        return (f"CASE WHEN k = 0 OR NOT ({ref} LIKE 'customer:%' OR {ref} LIKE 'transaction:%') THEN {ref} "
                f"ELSE {ref} || '{SUFFIX}' || k::VARCHAR END")
    return ref


def row_hash_sql(spec: TableSpec, relation: str = "") -> str:
    """The content hash :meth:`Warehouse._with_system_columns` computes (in a UTC session)."""
    prefix = f"{relation}." if relation else ""
    struct = ", ".join(f"{_ident(c)} := {prefix}{_ident(c)}" for c in spec.business_columns)
    return f"md5(to_json(struct_pack({struct})))"


def chunk_sql(spec: TableSpec, chunk: Chunk, copies_of_table: int, scale_shared: int) -> str:
    """SELECT of a chunk's output rows in the order they are stored (without partition columns,
    which live in the path as the Delta convention has it)."""
    part_cols = set(spec.partition_by)
    business = spec.business_columns
    exprs = []
    for col in business:
        if col in part_cols:
            exprs.append(f"{_literal(chunk.partition or '')}::VARCHAR AS {_ident(col)}")
            continue
        if spec.name in SHARED and col in SCALED_COLUMNS.get(spec.name, ()):
            expr = f"src.{_ident(col)} * {int(scale_shared)}"
        else:
            expr = copied_expression(spec, col, copies_of_table)
        exprs.append(f"CAST({expr} AS {spec.column(col).duckdb_type}) AS {_ident(col)}")
    scaled = spec.name in SCALED_COLUMNS and scale_shared != 1  # every row's content changes
    read = f"read_parquet({_files_list(chunk.files)}, union_by_name = true, hive_partitioning = false)"
    moved = (f"SELECT k, {', '.join(exprs)}"
             + (", src._row_hash AS _src_hash, src._batch_id AS _src_batch, src._ingested_at AS _src_at"
                if spec.system_columns else "")
             + f" FROM (SELECT * FROM {read} {chunk.where}) src CROSS JOIN range({copies_of_table}) copies(k)")
    out_cols = [_ident(c) for c in business if c not in part_cols]
    if spec.system_columns:
        if scaled:
            hash_expr = row_hash_sql(spec, "moved")
        elif copies_of_table > 1:  # copy 0 is the source row: its hash stands
            hash_expr = f"CASE WHEN k = 0 THEN _src_hash ELSE {row_hash_sql(spec, 'moved')} END"
        else:
            hash_expr = "_src_hash"
        batch_expr = ("CASE WHEN k = 0 THEN _src_batch ELSE _src_batch || '" + SUFFIX + "' || k::VARCHAR END"
                      if copies_of_table > 1 else "_src_batch")
        out_cols += [f"{hash_expr} AS _row_hash", f"{batch_expr} AS _batch_id", "_src_at AS _ingested_at"]
    order = ""
    if spec.sort_by:
        order = " ORDER BY " + ", ".join(_ident(c) for c in (*spec.sort_by, *spec.keys))
    return f"SELECT {', '.join(out_cols)} FROM ({moved}) moved{order}"


# -- Delta add actions ----------------------------------------------------------------------------


def _stat_value(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def file_stats(path: str) -> tuple[int, str]:
    """(rows, the Delta ``stats`` JSON) of a Parquet file, from its footer: numRecords and the
    minimum, maximum and null count of every top-level column with statistics."""
    meta = pq.ParquetFile(path).metadata
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    nulls: dict[str, int] = {}
    for i in range(meta.num_columns):
        col_path = meta.schema.column(i).path
        if "." in col_path:  # nested (a list's element): no column-level stats
            continue
        lo = hi = None
        n_null = 0
        complete = True
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(i).statistics
            if stats is None:
                complete = False
                continue
            n_null += stats.null_count or 0
            if stats.has_min_max:
                lo = stats.min if lo is None or stats.min < lo else lo
                hi = stats.max if hi is None or stats.max > hi else hi
        nulls[col_path] = n_null if complete else None  # type: ignore[assignment]
        if lo is not None and (v := _stat_value(lo)) is not None:
            mins[col_path] = v
        if hi is not None and (v := _stat_value(hi)) is not None:
            maxs[col_path] = v
    stats = {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs,
             "nullCount": {k: v for k, v in nulls.items() if v is not None}}
    return meta.num_rows, json.dumps(stats)


# -- planning ---------------------------------------------------------------------------------


def _source_files(dt: DeltaTable, spec: TableSpec) -> list[tuple[str, str | None, int]]:
    """(absolute path, partition value, rows) of every file of the table's current version."""
    actions = pa.table(dt.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    root = _local(dt.table_uri).rstrip("/")
    part = f"partition.{spec.partition_by[0]}" if spec.partition_by else None
    cols = ["path", "num_records", *([part] if part else [])]
    return [(f"{root}/{r['path']}", r[part] if part else None, int(r["num_records"] or 0))
            for r in actions.select(cols).to_pylist()]


def _months(con: duckdb.DuckDBPyConnection, files: Sequence[str], column: str) -> list[tuple[str, int]]:
    return con.execute(
        f"SELECT strftime({_ident(column)} AT TIME ZONE 'UTC', '%Y-%m') AS m, count(*) "
        f"FROM read_parquet({_files_list(files)}, union_by_name = true, hive_partitioning = false) "
        f"GROUP BY ALL ORDER BY m").fetchall()


def _month_bounds(month: str) -> tuple[str, str]:
    year, mon = (int(x) for x in month.split("-"))
    nxt = (year + (mon == 12), mon % 12 + 1)
    return f"{year:04d}-{mon:02d}-01 00:00:00+00", f"{nxt[0]:04d}-{nxt[1]:02d}-01 00:00:00+00"


def plan_chunks(con: duckdb.DuckDBPyConnection, spec: TableSpec, files: list[tuple[str, str | None, int]],
                copies_of_table: int, recent_months: int | None) -> tuple[list[Chunk], str]:
    """The table's output files: one per partition (partitioned tables), one per UTC month of the
    time column (big unpartitioned time-sorted tables, so each file holds a stretch of time), one
    per source file (unsorted tables, copies streamed without a sort), or one for all rows.
    ``recent_months``: only the last N months (partitions, or months of the time column)."""
    note = ""
    if spec.partition_by:
        by_part: dict[str, list[tuple[str, int]]] = {}
        for path, value, rows in files:
            by_part.setdefault(value or "", []).append((path, rows))
        parts = sorted(by_part)
        if recent_months:
            dropped = parts[:-recent_months]
            parts = parts[-recent_months:]
            if dropped:
                note = f"only the last {recent_months} partitions ({parts[0]}..{parts[-1]}); {len(dropped)} older left out"
        return [Chunk(label=f"{spec.partition_by[0]}={p}", files=[f for f, _ in by_part[p]], partition=p,
                      rows=sum(n for _, n in by_part[p])) for p in parts], note
    total = sum(n for _, _, n in files)
    if spec.sort_by and (recent_months or total * copies_of_table > MONTH_CHUNKS_ABOVE):
        column = spec.sort_by[0]
        paths = [f for f, _, _ in files]
        months = _months(con, paths, column)
        if recent_months:
            kept = months[-recent_months:]
            if len(kept) < len(months):
                note = f"only the last {recent_months} months ({kept[0][0]}..{kept[-1][0]}); {len(months) - len(kept)} older left out"
            months = kept
        chunks = []
        for month, rows in months:
            if month is None:
                chunks.append(Chunk("no time", paths, f"WHERE {_ident(column)} IS NULL", rows=rows))
                continue
            lo, hi = _month_bounds(month)
            chunks.append(Chunk(f"{column} in {month}", paths,
                                f"WHERE {_ident(column)} >= TIMESTAMPTZ '{lo}' AND {_ident(column)} < TIMESTAMPTZ '{hi}'",
                                rows=rows))
        return chunks, note
    if spec.sort_by:
        return [Chunk("all rows", [f for f, _, _ in files], rows=total)], note
    return [Chunk(f"source file {i + 1}/{len(files)}", [path], rows=rows)
            for i, (path, _, rows) in enumerate(files)], note


# -- the run ------------------------------------------------------------------------------------


def _free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9


def _check_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaleUpError(f"target {target} exists and is not an empty folder: refusing to write into it")


def scale_up(source: str | Path, target: str | Path, copies: int, *,
             recent_months: Mapping[str, int] | None = None, skip_tables: Sequence[str] = (),
             memory_limit: str = "8GB", threads: int = 2, temp_directory: str | Path | None = None,
             min_free_gb: float = 8.0, progress: bool = True) -> list[TableResult]:
    """Write a new warehouse at ``target`` with ``copies`` disjoint copies of ``source``'s rows
    (see the module docstring). Returns one result per table written or skipped."""
    if copies < 1:
        raise ScaleUpError("copies must be at least 1")
    source, target = Path(source), Path(target)
    recent_months = dict(recent_months or {})
    for name in (*recent_months, *skip_tables):
        if name not in TABLES:
            raise ScaleUpError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
    if not (source / "transactions" / "_delta_log").is_dir():
        raise ScaleUpError(f"no warehouse at {source} (no transactions table)")
    _check_target(target)
    target.mkdir(parents=True, exist_ok=True)
    temp = Path(temp_directory) if temp_directory else target / "_scale_up_tmp"
    temp.mkdir(parents=True, exist_ok=True)
    src_wh, dst_wh = Warehouse(source), Warehouse(target)
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": True})
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET temp_directory = {_literal(str(temp))}")
    con.execute("SET preserve_insertion_order = true")

    def say(msg: str) -> None:
        if progress:
            print(msg, flush=True)

    results: list[TableResult] = []
    say(f"scale-up {source} -> {target}: {copies} copies; memory_limit {memory_limit}, {threads} threads, "
        f"spill to {temp}; {_free_gb(target):.1f} GB free")
    try:
        for name in WRITE_ORDER:
            spec = TABLES[name]
            result = TableResult(table=name)
            results.append(result)
            if name in skip_tables:
                result.note = "skipped (--skip-table)"
                say(f"{name}: skipped")
                continue
            src_dt = src_wh._delta(name)
            if src_dt is None:
                result.note = "not in the source"
                say(f"{name}: not in the source")
                continue
            files = _source_files(src_dt, spec)
            result.source_rows = sum(n for _, _, n in files)
            copies_of_table = 1 if name in SHARED else copies
            chunks, result.note = plan_chunks(con, spec, files, copies_of_table, recent_months.get(name))
            dst_dt = dst_wh.create(name)
            root = Path(_local(dst_dt.table_uri))
            actions: list[AddAction] = []
            started = time.perf_counter()
            for chunk in chunks:
                if chunk.rows == 0:
                    continue
                t0 = time.perf_counter()
                rel = (f"{spec.partition_by[0]}={chunk.partition}/" if spec.partition_by else "") + \
                    f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
                out = root / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                sql = chunk_sql(spec, chunk, copies_of_table, copies)
                con.execute(f"COPY ({sql}) TO {_literal(str(out))} (FORMAT parquet, COMPRESSION zstd, "
                            f"COMPRESSION_LEVEL {COMPRESSION_LEVEL}, ROW_GROUP_SIZE {DUCKDB_ROW_GROUP})")
                rows, stats = file_stats(str(out))
                size = out.stat().st_size
                actions.append(AddAction(path=rel, size=size,
                                         partition_values={spec.partition_by[0]: chunk.partition} if spec.partition_by else {},
                                         modification_time=int(out.stat().st_mtime * 1000), data_change=True,
                                         stats=stats))
                result.rows += rows
                result.bytes += size
                seconds = time.perf_counter() - t0
                result.chunks.append({"chunk": chunk.label, "rows": rows, "bytes": size, "seconds": round(seconds, 2)})
                free = _free_gb(target)
                say(f"  {name} {chunk.label}: {rows:,} rows, {size / 1e6:,.1f} MB, {seconds:.1f} s; "
                    f"{free:.1f} GB free")
                if free < min_free_gb:
                    raise ScaleUpError(f"only {free:.1f} GB free on {target}'s disk (limit {min_free_gb} GB): stopped "
                                       f"in {name}; the target is incomplete")
            if actions:
                props = CommitProperties(custom_metadata={
                    "writer": "tests.benchmarks.scale_up", "source": str(source), "copies": str(copies_of_table),
                    "source_version": str(src_dt.version())})
                dst_dt.create_write_transaction(actions, mode="append", schema=spec.arrow_schema(),
                                                partition_by=list(spec.partition_by) or None,
                                                commit_properties=props)
            result.files = len(actions)
            result.seconds = time.perf_counter() - started
            say(f"{name}: {result.source_rows:,} -> {result.rows:,} rows in {result.files} files, "
                f"{result.bytes / 1e9:.2f} GB, {result.seconds:.1f} s" + (f" ({result.note})" if result.note else ""))
    finally:
        con.close()
        shutil.rmtree(temp, ignore_errors=True)
    return results


def _usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _pairs(items: Sequence[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--recent-months-only {item!r}: expected TABLE=N (N >= 1)")
        out[name] = int(n)
    return out


def main(argv: Sequence[str] | None = None) -> list[TableResult]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="warehouse to copy (read only)")
    parser.add_argument("--target", required=True, help="new warehouse folder (must not exist or be empty)")
    parser.add_argument("--copies", type=int, required=True, help="copies of every entity (1 = the source)")
    parser.add_argument("--recent-months-only", action="append", default=[], metavar="TABLE=N",
                        help="keep only the last N months of TABLE (repeatable)")
    parser.add_argument("--skip-table", action="append", default=[], metavar="T", help="do not write T (repeatable)")
    parser.add_argument("--memory-limit", default="8GB", help="DuckDB memory_limit (default 8GB)")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2)")
    parser.add_argument("--temp-directory", help="DuckDB spill folder (default TARGET/_scale_up_tmp, removed)")
    parser.add_argument("--min-free-gb", type=float, default=8.0, help="stop when the disk has less free (default 8)")
    ns = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        with open("/proc/loadavg") as handle:
            load_before = handle.read().split()[:3]
    except OSError:
        load_before = []
    try:
        results = scale_up(ns.source, ns.target, ns.copies, recent_months=_pairs(ns.recent_months_only),
                           skip_tables=ns.skip_table, memory_limit=ns.memory_limit, threads=ns.threads,
                           temp_directory=ns.temp_directory, min_free_gb=ns.min_free_gb)
    except ScaleUpError as exc:
        print(f"scale-up failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    cpu, peak = _usage()
    try:
        with open("/proc/loadavg") as handle:
            load_after = handle.read().split()[:3]
    except OSError:
        load_after = []
    total_rows = sum(r.rows for r in results)
    total_bytes = sum(r.bytes for r in results)
    print(f"done: {total_rows:,} rows, {total_bytes / 1e9:.2f} GB in {time.perf_counter() - start:.0f} s wall, "
          f"{cpu:.0f} s CPU, peak RSS {peak / 1024:.2f} GB; load {' '.join(load_before)} -> {' '.join(load_after)}")
    summary = {"source": ns.source, "target": ns.target, "copies": ns.copies, "wall_seconds": time.perf_counter() - start,
               "cpu_seconds": cpu, "peak_rss_mb": peak, "load_before": load_before, "load_after": load_after,
               "tables": [r.__dict__ for r in results]}
    Path(ns.target, "_scale_up.json").write_text(json.dumps(summary, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
