"""Where the scheduler keeps its state: ``$PAYMENT_ANALYTICS_SCHEDULER_STATE``, by default
``<outputs>/.scheduler/`` (beside the runs it describes, so a persistent outputs volume keeps the
history too)::

    history.sqlite3        run history and per-job cursors (analytics_lib.scheduling.history)
    locks/<job>.lock       one run of a job at a time (analytics_lib.scheduling.locks)
    logs/<job>/*.log       each attempt's output (the last 50 per job are kept)
    work/                  requests and results passed to job processes (removed after use)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from analytics_lib.config import Settings

ENV_STATE = "PAYMENT_ANALYTICS_SCHEDULER_STATE"
KEEP_LOGS = 50


@dataclass(frozen=True)
class StateDir:
    root: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> StateDir:
        env = os.environ.get(ENV_STATE)
        return cls(Path(env).expanduser().resolve() if env else settings.outputs / ".scheduler")

    @property
    def history_path(self) -> Path:
        return self.root / "history.sqlite3"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def work(self) -> Path:
        path = self.root / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, job: str, stamp: str, attempt: int) -> Path:
        folder = self.root / "logs" / job
        folder.mkdir(parents=True, exist_ok=True)
        old = sorted(folder.glob("*.log"))
        for stale in old[:-KEEP_LOGS]:
            stale.unlink(missing_ok=True)
        return folder / f"{stamp}-attempt{attempt}.log"
