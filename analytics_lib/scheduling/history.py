"""Run history and scheduling state that survive restarts: one SQLite file,
``<state>/history.sqlite3``.

Two tables. ``runs``: one row per job run (or skipped fire time) with the fire time it was for,
status, attempts, duration, the one-line error and a JSON ``detail`` (report run id and folder,
deliveries, notifications). ``cursors``: per job, the latest fire time that has been dealt with;
``run-due`` compares it with the cron line to decide what is due. SQLite serialises writers from
any number of processes; every call opens its own short connection, so a crashed process leaves
nothing half-written.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
STATUSES = ("running", "succeeded", "failed", "delivery_failed", "interrupted", "skipped")
FAILED_STATUSES = ("failed", "delivery_failed", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    fire_time   TEXT,              -- UTC ISO-8601: the scheduled time this run is for
    trigger     TEXT NOT NULL,     -- on-time | catch-up | manual
    status      TEXT NOT NULL,     -- running | succeeded | failed | delivery_failed | interrupted | skipped
    started_at  TEXT NOT NULL,     -- UTC ISO-8601
    finished_at TEXT,
    duration_s  REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,              -- one line
    pid         INTEGER,
    host        TEXT,
    detail      TEXT               -- JSON
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, id);
CREATE TABLE IF NOT EXISTS cursors (
    job         TEXT PRIMARY KEY,
    last_fire   TEXT NOT NULL,     -- UTC ISO-8601: the latest fire time dealt with
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class HistoryRow:
    id: int
    job: str
    kind: str
    fire_time: datetime | None
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    attempts: int
    error: str | None
    pid: int | None
    host: str | None
    detail: dict[str, Any]

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> HistoryRow:
        def when(text: str | None) -> datetime | None:
            return None if text is None else datetime.fromisoformat(text)

        return cls(id=row["id"], job=row["job"], kind=row["kind"], fire_time=when(row["fire_time"]),
                   trigger=row["trigger"], status=row["status"], started_at=datetime.fromisoformat(row["started_at"]),
                   finished_at=when(row["finished_at"]), duration_s=row["duration_s"], attempts=row["attempts"],
                   error=row["error"], pid=row["pid"], host=row["host"], detail=json.loads(row["detail"] or "{}"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "job": self.job, "kind": self.kind, "fire_time": _iso(self.fire_time),
                "trigger": self.trigger, "status": self.status, "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at), "duration_s": self.duration_s, "attempts": self.attempts,
                "error": self.error, "pid": self.pid, "host": self.host, "detail": self.detail}


class History:
    """The history database at ``path`` (created on first use)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._ready = False

    @property
    def exists(self) -> bool:
        """False until the first run is recorded (reading never creates the database)."""
        return self.path.is_file()

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            if not self._ready:
                con.executescript(_SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self._ready = True
            if write:
                con.execute("BEGIN IMMEDIATE")
            yield con
            if write:
                con.execute("COMMIT")
        except BaseException:
            if write and con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    # -- runs -----------------------------------------------------------------------------------
    def start(self, job: str, kind: str, fire_time: datetime | None, trigger: str,
              detail: dict[str, Any] | None = None) -> int:
        with self._connect(write=True) as con:
            cur = con.execute(
                "INSERT INTO runs (job, kind, fire_time, trigger, status, started_at, pid, host, detail) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (job, kind, _iso(fire_time), trigger, _now(), os.getpid(), socket.gethostname(),
                 json.dumps(detail or {}, default=str)))
            return int(cur.lastrowid or 0)

    def update(self, run_id: int, **fields: Any) -> None:
        """Set columns of one row; ``detail`` is merged into the stored JSON."""
        if not fields:
            return
        with self._connect(write=True) as con:
            if "detail" in fields:
                row = con.execute("SELECT detail FROM runs WHERE id = ?", (run_id,)).fetchone()
                merged = {**json.loads((row["detail"] if row else None) or "{}"), **fields["detail"]}
                fields["detail"] = json.dumps(merged, default=str)
            if "status" in fields and fields["status"] not in STATUSES:
                raise ValueError(f"unknown status {fields['status']!r}")
            cols = ", ".join(f"{k} = ?" for k in fields)
            con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))  # noqa: S608

    def finish(self, run_id: int, status: str, *, attempts: int, duration_s: float, error: str | None = None,
               detail: dict[str, Any] | None = None) -> None:
        self.update(run_id, status=status, attempts=attempts, duration_s=round(duration_s, 2), error=error,
                    finished_at=_now(), detail=detail or {})

    def record_skip(self, job: str, kind: str, fire_time: datetime, reason: str) -> int:
        with self._connect(write=True) as con:
            cur = con.execute(
                "INSERT INTO runs (job, kind, fire_time, trigger, status, started_at, finished_at, error, pid, host, "
                "detail) VALUES (?, ?, ?, 'catch-up', 'skipped', ?, ?, ?, ?, ?, '{}')",
                (job, kind, _iso(fire_time), _now(), _now(), reason, os.getpid(), socket.gethostname()))
            return int(cur.lastrowid or 0)

    def get(self, run_id: int) -> HistoryRow:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no history row {run_id}")
        return HistoryRow.from_sql(row)

    def rows(self, job: str | None = None, status: str | None = None, limit: int = 50) -> list[HistoryRow]:
        """Newest first."""
        where, args = [], []
        if job:
            where.append("job = ?")
            args.append(job)
        if status:
            where.append("status = ?")
            args.append(status)
        if not self.exists:
            return []
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC LIMIT ?"
        with self._connect() as con:
            return [HistoryRow.from_sql(r) for r in con.execute(sql, (*args, int(limit)))]

    def last(self, job: str, include_skipped: bool = False) -> HistoryRow | None:
        if not self.exists:
            return None
        sql = "SELECT * FROM runs WHERE job = ?" + ("" if include_skipped else " AND status != 'skipped'")
        with self._connect() as con:
            row = con.execute(sql + " ORDER BY id DESC LIMIT 1", (job,)).fetchone()
        return None if row is None else HistoryRow.from_sql(row)

    def running(self, job: str) -> list[HistoryRow]:
        if not self.exists:
            return []
        with self._connect() as con:
            rows = con.execute("SELECT * FROM runs WHERE job = ? AND status = 'running' ORDER BY id", (job,))
            return [HistoryRow.from_sql(r) for r in rows]

    def interrupted_count(self, job: str, fire_time: datetime) -> int:
        if not self.exists:
            return 0
        with self._connect() as con:
            row = con.execute("SELECT COUNT(*) AS n FROM runs WHERE job = ? AND fire_time = ? AND status = 'interrupted'",
                              (job, _iso(fire_time))).fetchone()
        return int(row["n"])

    # -- cursors --------------------------------------------------------------------------------
    def cursor(self, job: str) -> datetime | None:
        if not self.exists:
            return None
        with self._connect() as con:
            row = con.execute("SELECT last_fire FROM cursors WHERE job = ?", (job,)).fetchone()
        return None if row is None else datetime.fromisoformat(row["last_fire"])

    def set_cursor(self, job: str, fire_time: datetime) -> None:
        with self._connect(write=True) as con:
            con.execute("INSERT INTO cursors (job, last_fire, updated_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (job) DO UPDATE SET last_fire = excluded.last_fire, updated_at = excluded.updated_at",
                        (job, _iso(fire_time), _now()))
