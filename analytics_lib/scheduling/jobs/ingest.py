"""``builtin: ingest``: load the files that have arrived in an inbox folder.

Each file matching ``pattern`` in ``inbox`` is ingested through ``source`` (the same pipeline
as ``payment-analytics ingest``), then moved to ``inbox/processed/<UTC date>/``; a file the
source refuses goes to ``inbox/failed/`` with ``<name>.error.txt`` beside it, and the job fails
naming it (after the other files are loaded). Files modified in the last ``settle_seconds`` are
left for the next run, as are hidden files and ``*.part``/``*.tmp``: an exporter still writing a
file must not have half of it loaded (better still, it writes ``x.part`` and renames it).
Ingestion is idempotent (rows are merged by natural key), so a file loaded twice after a crash
between loading and moving it changes nothing."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from analytics_lib.config import Settings
from analytics_lib.scheduling.jobs.base import JobKind, JobResult, Log, one_line

if TYPE_CHECKING:
    from analytics_lib.scheduling.config import Job

IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


class IngestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: folder new files arrive in (relative paths are relative to the project root); created if missing
    inbox: str
    #: ingestion source: platform-json, stripe, csv, online-retail
    source: str
    pattern: str = "*"
    #: column mapping YAML for the csv source
    mapping: str | None = None
    settle_seconds: float = Field(default=60, ge=0)


def _resolve(settings: Settings, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else settings.project_root / path


def pending_files(inbox: Path, pattern: str, settle_seconds: float, now: float | None = None) -> list[Path]:
    """Files ready to load, oldest first."""
    now = time.time() if now is None else now
    files = [p for p in inbox.glob(pattern) if p.is_file() and not p.name.startswith(".")
             and not p.name.endswith(IGNORED_SUFFIXES) and now - p.stat().st_mtime >= settle_seconds]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    shutil.move(str(path), target)
    return target


class IngestJob(JobKind):
    name = "ingest"
    Options = IngestOptions

    def check(self, job: Job, settings: Settings, cache: dict[str, Any]) -> list[tuple[str, str]]:
        found = super().check(job, settings, cache)
        if found:
            return found
        from analytics_lib.warehouse.sources import source_names

        opts = self.options(job)
        if opts.source not in source_names():
            found.append(("options.source", f"unknown source {opts.source!r}; sources: {', '.join(source_names())}"))
        if opts.mapping and not _resolve(settings, opts.mapping).is_file():
            found.append(("options.mapping", f"mapping file not found: {opts.mapping}"))
        return found

    def run(self, job: Job, fire_time: datetime, settings: Settings, log: Log) -> JobResult:
        from analytics_lib.warehouse import Warehouse
        from analytics_lib.warehouse.ingest import ingest

        opts = self.options(job)
        inbox = _resolve(settings, opts.inbox)
        inbox.mkdir(parents=True, exist_ok=True)
        files = pending_files(inbox, opts.pattern, opts.settle_seconds)
        warehouse = Warehouse(settings.warehouse, settings)
        options: dict[str, Any] = {"mapping": _resolve(settings, opts.mapping)} if opts.mapping else {}
        loaded: list[dict[str, Any]] = []
        failed: dict[str, str] = {}
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        for path in files:
            log(f"ingesting {path.name}")
            try:
                result = ingest(path, opts.source, warehouse, **options)
            except Exception as exc:  # noqa: BLE001 - a bad file is set aside; the others still load
                failed[path.name] = one_line(exc)
                moved = _move(path, inbox / "failed")
                moved.with_name(moved.name + ".error.txt").write_text(failed[path.name] + "\n", encoding="utf-8")
                log(f"{path.name} failed: {failed[path.name]}")
                continue
            _move(path, inbox / "processed" / today)
            loaded.append({"file": path.name, "batch_id": result.batch_id, "summary": result.summary()})
            log(result.summary())
        detail = {"inbox": str(inbox), "loaded": loaded, "failed": failed}
        if failed:
            return JobResult("failed", f"{len(failed)} of {len(files)} file(s) refused: "
                             + "; ".join(f"{k}: {v}" for k, v in failed.items()), detail=detail)
        return JobResult("succeeded", detail=detail)
