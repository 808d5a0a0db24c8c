"""One run of a job at a time, across threads and processes: an exclusive ``fcntl`` lock on
``<state>/locks/<job>.lock``.

The operating system releases the lock when its holder exits, however it exits, so a crashed
scheduler never leaves a job locked. The lock file records the holder (pid, host, since) for
messages only; the lock itself is the ``flock``. Works on local file systems and NFSv4; on a
file system without working ``flock`` run a single scheduler (``serve``) instead of several
``run-due`` callers.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

#: flock is per open file description; threads of one process share nothing else, so a process
#: also keeps a set of the jobs it holds (two threads of one `serve` must not both pass)
_HELD: set[str] = set()
_HELD_GUARD = threading.Lock()


class JobLock:
    """``with JobLock(folder, job) as lock: if lock.acquired: ...`` (never blocks)."""

    def __init__(self, folder: Path, job: str):
        self.path = Path(folder) / f"{job}.lock"
        self.job = job
        self.acquired = False
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as recorded in the lock file (best effort)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return "another process"
        return f"pid {doc.get('pid')} on {doc.get('host')} since {doc.get('since')}"

    def acquire(self) -> bool:
        with _HELD_GUARD:
            key = str(self.path.resolve())
            if key in _HELD:
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            _HELD.add(key)
        self._fd = fd
        self.acquired = True
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": datetime.now(UTC).isoformat(timespec="seconds")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        return True

    def release(self) -> None:
        if not self.acquired or self._fd is None:
            return
        with _HELD_GUARD:
            _HELD.discard(str(self.path.resolve()))
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
                self.acquired = False

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
