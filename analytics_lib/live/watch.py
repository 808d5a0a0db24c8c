"""Watch-folder ingestion: load every complete file dropped into a folder, exactly once.

``payment-analytics ingest --watch DIR --source platform-json`` scans ``DIR`` every few seconds:

* only complete files are loaded: hidden files and partial-download names (``*.part``,
  ``*.tmp``, ``*.partial``, ``*.crdownload``, ``*.swp``, ``*~``) are ignored, and a file is taken
  once its size and modification time have not changed for ``settle_seconds`` across two
  scans (writers that cannot rename atomically are still safe);
* each file goes through :func:`analytics_lib.warehouse.ingest.ingest` and then moves to
  ``DIR/done`` (rows loaded, rejected rows included) or ``DIR/failed`` (a whole-file problem:
  not UTF-8, wrong columns, empty ...), with ``<name>.result.json`` beside it holding the ingest
  accounting or the error;
* a file is never loaded twice: its SHA-256 is looked up in the ``ingest_batches`` log (which
  every completed ingest writes last) before loading, so a copy of a file already loaded, or a
  file left in place by a watcher that stopped between loading and moving it, is moved to
  ``done`` without loading;
* restarts are safe: the watcher keeps no state on disk besides the folders and the warehouse's
  own log; an ingest interrupted before its log row is simply re-run (writes are idempotent).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import IngestResult, ingest
from analytics_lib.warehouse.sources import IngestError, get_source

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".swp", ".download", ".result.json")
DONE, FAILED = "done", "failed"
#: unexpected (non-file) errors are retried this many scans before the file is set aside
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class WatchOptions:
    """Settings of a folder watcher.

    Attributes
    ----------
    source : str, default "platform-json"
        Ingestion source of the files (the platform's native export by default).
    interval : float, default 2.0
        Seconds between scans.
    settle_seconds : float, default 1.0
        A file must be unchanged (size and modification time) for this long, and across two
        scans, before it is loaded.
    source_options : mapping
        Options of the source (e.g. ``mapping`` for the csv source).
    """

    source: str = "platform-json"
    interval: float = 2.0
    settle_seconds: float = 1.0
    source_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.05 <= self.interval <= 3600:
            raise ValueError("interval must be between 0.05 and 3600 seconds")
        if not 0 <= self.settle_seconds <= 3600:
            raise ValueError("settle seconds must be between 0 and 3600")
        get_source(self.source, **dict(self.source_options))  # an unknown source fails now


@dataclass
class WatchOutcome:
    """What happened to one file."""

    file: str
    status: str  # loaded | duplicate | failed
    moved_to: str
    sha256: str
    message: str
    result: IngestResult | None = None

    def line(self) -> str:
        return f"{self.status:<9} {self.file}: {self.message}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_candidate(path: Path) -> bool:
    """A regular, visible file whose name does not mark it as still being written."""
    name = path.name
    if name.startswith(".") or name.endswith("~") or name.lower().endswith(IGNORED_SUFFIXES):
        return False
    return path.is_file()


class FolderWatcher:
    """Loads complete files from ``folder`` into ``warehouse``; see the module docstring."""

    def __init__(self, folder: str | os.PathLike[str], warehouse: Warehouse | None = None,
                 options: WatchOptions | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise IngestError(f"watch folder {self.folder} does not exist or is not a folder")
        self.warehouse = warehouse or Warehouse()
        self.options = options or WatchOptions()
        self.done = self.folder / DONE
        self.failed = self.folder / FAILED
        self.done.mkdir(exist_ok=True)
        self.failed.mkdir(exist_ok=True)
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, first seen unchanged)
        self._attempts: dict[str, int] = {}

    # -- scanning ---------------------------------------------------------------------------
    def ready_files(self) -> list[Path]:
        """Files complete by now: unchanged since the previous scan and for ``settle_seconds``."""
        now = time.time()
        ready = []
        present = set()
        for path in sorted(self.folder.iterdir()):
            if not is_candidate(path):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # moved away meanwhile
                continue
            present.add(path.name)
            signature = (st.st_size, st.st_mtime_ns)
            previous = self._seen.get(path.name)
            if previous is None or previous[:2] != signature:
                self._seen[path.name] = (*signature, now)
                continue
            if now - st.st_mtime >= self.options.settle_seconds and now - previous[2] >= min(
                    self.options.settle_seconds, self.options.interval):
                ready.append(path)
        for name in list(self._seen):
            if name not in present:
                del self._seen[name]
        return ready

    def scan_once(self) -> list[WatchOutcome]:
        """Load every file that is ready; returns what happened to each."""
        return [o for o in (self.process(p) for p in self.ready_files()) if o is not None]

    # -- one file ---------------------------------------------------------------------------
    def loaded_batch(self, sha256: str) -> str | None:
        """The batch that already loaded a file with this content, if any."""
        if not self.warehouse.exists("ingest_batches"):
            return None
        with self.warehouse.snapshot(tables=["ingest_batches"]) as snap:
            rows = snap.con.execute(
                "SELECT batch_id FROM ingest_batches WHERE file_sha256 = ? ORDER BY finished_at LIMIT 1",
                [sha256]).fetchall()
        return rows[0][0] if rows else None

    def process(self, path: Path) -> WatchOutcome | None:
        """Load one complete file (unless already loaded) and move it to done/ or failed/."""
        sha = _sha256(path)
        previous = self.loaded_batch(sha)
        if previous is not None:
            message = f"already loaded by batch {previous}; not loaded again"
            return self._finish(path, DONE, "duplicate", sha, message, {"duplicate_of": previous})
        try:
            result = ingest(path, self.options.source, self.warehouse, **dict(self.options.source_options))
        except IngestError as exc:
            return self._finish(path, FAILED, "failed", sha, str(exc).splitlines()[0], {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - the watcher must outlive any one file
            # most likely not the file's fault (warehouse, disk): try again on the next scans
            attempts = self._attempts[path.name] = self._attempts.get(path.name, 0) + 1
            log.warning("ingest of %s failed (attempt %d of %d): %s", path.name, attempts, MAX_ATTEMPTS, exc)
            if attempts < MAX_ATTEMPTS:
                self._seen.pop(path.name, None)
                return None
            return self._finish(path, FAILED, "failed", sha, f"{type(exc).__name__}: {exc}".splitlines()[0],
                                {"error": str(exc), "attempts": attempts})
        message = result.summary().split(": ", 1)[1]
        return self._finish(path, DONE, "loaded", sha, message, {"result": result.to_dict()}, result)

    def _finish(self, path: Path, folder: str, status: str, sha: str, message: str,
                details: dict[str, Any], result: IngestResult | None = None) -> WatchOutcome:
        target_dir = self.done if folder == DONE else self.failed
        target = target_dir / path.name
        if target.exists():  # a file of the same name was handled before: keep both
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            target = target_dir / f"{path.stem}.{stamp}{path.suffix}"
        report = {"file": path.name, "status": status, "sha256": sha, "message": message,
                  "source": self.options.source, "handled_at": datetime.now(UTC).isoformat(), **details}
        report_path = target.with_name(target.name + ".result.json")
        report_path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        shutil.move(str(path), target)
        self._seen.pop(path.name, None)
        self._attempts.pop(path.name, None)
        log.info("%s %s -> %s: %s", status, path.name, target, message)
        return WatchOutcome(file=path.name, status=status, moved_to=str(target), sha256=sha, message=message,
                            result=result)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None,
            on_outcome: Callable[[WatchOutcome], None] | None = None,
            max_scans: int | None = None) -> int:
        """Scan every ``interval`` seconds until ``stop`` is set; returns the files handled.

        A stop request lets the file being loaded finish (and move) first.
        """
        stop = stop or threading.Event()
        handled = 0
        scans = 0
        while not stop.is_set():
            tick = time.monotonic()
            for path in self.ready_files():
                if stop.is_set():
                    break
                outcome = self.process(path)
                if outcome is not None:
                    handled += 1
                    if on_outcome:
                        on_outcome(outcome)
            scans += 1
            if max_scans is not None and scans >= max_scans:
                break
            with contextlib.suppress(ValueError):
                stop.wait(max(0.0, self.options.interval - (time.monotonic() - tick)))
        return handled


def watch_folder(folder: str | os.PathLike[str], warehouse: Warehouse | None = None,
                 options: WatchOptions | None = None, *, stop: threading.Event | None = None,
                 on_outcome: Callable[[WatchOutcome], None] | None = None) -> int:
    """Watch ``folder`` until ``stop`` is set (see :class:`FolderWatcher`)."""
    return FolderWatcher(folder, warehouse, options).run(stop=stop, on_outcome=on_outcome)
