"""Run folders: ``outputs/<report>/<period>/<run-id>/`` holds the executed notebook, the renders,
the data exports, ``summary.json`` and ``run.json`` (parameters, warehouse versions, code
version, start/end, status, error). A run folder is never rewritten by another run; a failed run
is kept and marked failed, and ``outputs/<report>/latest.json`` only ever points at a good run."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics_lib.config import PROJECT_ROOT

RUN_FILE = "run.json"
LATEST_FILE = "latest.json"
SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


class RunError(RuntimeError):
    """A run could not start, or a past run could not be found."""


def new_run_id(now: datetime | None = None) -> str:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def safe_segment(text: str, what: str) -> str:
    """A path segment that cannot leave its folder (no separators, dots-only names or NUL)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(text)).strip("._") or "_"
    if cleaned in (".", "..") or "\x00" in cleaned:
        raise RunError(f"unusable {what}: {text!r}")
    return cleaned[:80]


def code_version() -> dict[str, Any]:
    from analytics_lib import __version__

    out: dict[str, Any] = {"package": __version__}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        out.update(commit=commit, dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):
        out.update(commit=None, dirty=None)
    return out


@dataclass
class RunRecord:
    run_id: str
    report: str
    period_label: str
    notebook: str
    parameters: dict[str, Any]
    formats: list[str]
    warehouse: str
    warehouse_versions: dict[str, int]
    code: dict[str, Any]
    started_at: str
    status: str = "running"  # running | succeeded | failed
    finished_at: str | None = None
    duration_s: float | None = None
    error: str | None = None
    artefacts: dict[str, str] = field(default_factory=dict)  # format -> file name
    timings: dict[str, float] = field(default_factory=dict)
    rerun_of: str | None = None
    folder: str = ""

    @property
    def path(self) -> Path:
        return Path(self.folder)

    def save(self) -> None:
        target = self.path / RUN_FILE
        tmp = target.with_suffix(".json.part")
        doc = {k: v for k, v in asdict(self).items() if k != "folder"}
        tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, target)

    @classmethod
    def load(cls, folder: Path) -> RunRecord:
        doc = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known}, folder=str(folder))

    def summary(self) -> dict[str, Any] | None:
        path = self.path / "summary.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))


def run_folder(outputs: Path, report: str, period_label: str, run_id: str) -> Path:
    folder = outputs / safe_segment(report, "report name") / safe_segment(period_label, "period") / run_id
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def mark_latest(outputs: Path, record: RunRecord) -> None:
    """Point ``outputs/<report>/latest.json`` at a good run (atomically)."""
    target = outputs / record.report / LATEST_FILE
    tmp = target.with_suffix(".json.part")
    rel = os.path.relpath(record.path, outputs / record.report)
    tmp.write_text(json.dumps({"run_id": record.run_id, "folder": rel, "period": record.period_label,
                               "finished_at": record.finished_at, "artefacts": record.artefacts}, indent=2),
                   encoding="utf-8")
    os.replace(tmp, target)


def latest(outputs: Path, report: str) -> RunRecord | None:
    pointer = outputs / report / LATEST_FILE
    if not pointer.is_file():
        return None
    doc = json.loads(pointer.read_text(encoding="utf-8"))
    return RunRecord.load((outputs / report / doc["folder"]).resolve())


def all_runs(outputs: Path, report: str | None = None) -> list[RunRecord]:
    """Every run under ``outputs`` (newest first); unreadable run files are skipped."""
    pattern = f"{report}/*/*/{RUN_FILE}" if report else f"*/*/*/{RUN_FILE}"
    records = []
    for path in outputs.glob(pattern):
        try:
            records.append(RunRecord.load(path.parent))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(records, key=lambda r: r.started_at, reverse=True)


def find_run(outputs: Path, run_id: str) -> RunRecord:
    if not RUN_ID.match(run_id):
        raise RunError(f"not a run id: {run_id!r} (expected e.g. 20261126T080000Z-1a2b3c)")
    hits = list(outputs.glob(f"*/*/{run_id}/{RUN_FILE}"))
    if not hits:
        raise RunError(f"no run {run_id} under {outputs}")
    return RunRecord.load(hits[0].parent)
