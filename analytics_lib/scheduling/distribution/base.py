"""What a distribution target is given (a finished report run, or a failure notice) and what it
must do with it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel

if TYPE_CHECKING:  # the runner (and nbformat) load only when a report is distributed
    from analytics_lib.runner.runs import RunRecord

ENV_REPORTS_URL = "PAYMENT_ANALYTICS_REPORTS_URL"

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"\b(?:[0-9A-Fa-f]{1,4}:){3,7}[0-9A-Fa-f]{1,4}\b")


def redact(text: Any) -> str:
    """Text from a report, safe to send: e-mail and IP addresses replaced. Reports never show
    personal data, and this makes sure a message cannot carry any either."""
    out = _EMAIL.sub("[e-mail removed]", str(text))
    out = _IPV6.sub("[address removed]", out)
    return _IPV4.sub("[address removed]", out)


class DeliveryError(RuntimeError):
    """A target could not deliver. ``retryable``: another attempt later may succeed."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


def file_link(outputs: Path, path: Path, base_url: str | None = None) -> str:
    """Where a reader opens a file of a run: under ``$PAYMENT_ANALYTICS_REPORTS_URL`` (the
    outputs folder served by a web server) if set, else a ``file://`` URL."""
    base = base_url if base_url is not None else os.environ.get(ENV_REPORTS_URL)
    if base:
        rel = os.path.relpath(path, outputs).replace(os.sep, "/")
        return base.rstrip("/") + "/" + quote(rel)
    return Path(path).resolve().as_uri()


@dataclass
class ReportDelivery:
    """A succeeded report run to distribute."""

    job: str
    audience: str
    record: RunRecord
    outputs: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_run(cls, job: str, audience: str, record: RunRecord, outputs: Path) -> ReportDelivery:
        return cls(job, audience, record, outputs, record.summary() or {})

    def artefact(self, kind: str) -> Path | None:
        name = self.record.artefacts.get(kind)
        if not name:
            return None
        path = self.record.path / name.split(",")[0]
        return path if path.is_file() else None

    def link(self, kind: str) -> str | None:
        path = self.artefact(kind)
        return None if path is None else file_link(self.outputs, path)

    @property
    def portal_link(self) -> str:
        return file_link(self.outputs, self.outputs / "index.html")

    @property
    def title(self) -> str:
        return redact(self.summary.get("title") or self.record.report.replace("_", " ").capitalize())


@dataclass
class FailureNotice:
    """A job that failed (or whose report could not be delivered)."""

    job: str
    kind: str
    status: str  # failed | delivery_failed | interrupted
    error: str
    fire_time: datetime | None
    timezone: str
    attempts: int
    history_id: int
    outputs: Path
    run_folder: str | None = None
    last_good: RunRecord | None = None
    log_path: str | None = None

    @property
    def fire_local(self) -> str:
        if self.fire_time is None:
            return "manual run"
        from zoneinfo import ZoneInfo

        return self.fire_time.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M %Z")

    def lines(self) -> list[str]:
        """The notice as plain-text lines (every target says the same)."""
        what = {"failed": "failed", "delivery_failed": "ran, but its report could not be delivered",
                "interrupted": "was interrupted (the scheduler stopped during the run)"}.get(self.status, self.status)
        out = [f"Job {self.job} ({self.kind}) {what}.", "",
               f"Scheduled for: {self.fire_local}",
               f"Attempts:      {self.attempts}",
               f"Error:         {redact(self.error)}"]
        if self.run_folder:
            out.append(f"Run folder:    {self.run_folder}")
        if self.log_path:
            out.append(f"Job log:       {self.log_path}")
        if self.last_good is not None:
            out.append(f"Last good output (still in place): {self.last_good.period_label}, run {self.last_good.run_id}, "
                       f"{self.last_good.folder}")
        elif self.kind == "report":
            out.append("There is no earlier good output of this report.")
        out += ["", f"History: payment-analytics schedule history --job {self.job}  (entry {self.history_id})"]
        return out


class Target:
    """A distribution target. ``Options`` validates the target's entry in audiences.yaml."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]]

    def __init__(self, options: BaseModel):
        self.options = options

    @classmethod
    def parse_options(cls, raw: Any) -> BaseModel:
        return cls.Options.model_validate(raw)

    def deliver(self, delivery: ReportDelivery) -> dict[str, Any]:
        """Distribute a report; return what was done (for the history). Raise DeliveryError."""
        raise NotImplementedError

    def notify(self, notice: FailureNotice) -> dict[str, Any]:
        """Tell the audience about a failure. Raise DeliveryError."""
        raise NotImplementedError
