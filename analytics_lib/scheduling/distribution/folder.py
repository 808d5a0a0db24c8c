"""``folder``: copy a report into a folder (a shared drive, a synced folder, a web root), and
write failure notices there::

    finance_share:
      folder: /mnt/finance/reports           # short form
    archive:
      folder: {path: "{outputs}/_archive", formats: [pdf, html, xlsx]}

Reports land in ``<path>/<report>/<period>/`` (files written under a temporary name and renamed,
so a reader never sees half a file); failure notices in ``<path>/failures/``. ``{outputs}`` and
``{project}`` in the path stand for the outputs folder and the project root; other relative
paths are relative to the project root.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from analytics_lib.config import get_settings
from analytics_lib.scheduling.distribution.base import (
    DeliveryError,
    FailureNotice,
    ReportDelivery,
    Target,
)


class FolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    formats: list[str] = Field(default_factory=lambda: ["pdf", "html"])


def _copy(src: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, target)


class FolderTarget(Target):
    name = "folder"
    Options = FolderOptions
    options: FolderOptions

    @classmethod
    def parse_options(cls, raw: Any) -> BaseModel:
        if isinstance(raw, str):
            raw = {"path": raw}
        return cls.Options.model_validate(raw)

    def root(self, outputs: Path) -> Path:
        settings = get_settings()
        text = self.options.path.replace("{outputs}", str(outputs)).replace("{project}", str(settings.project_root))
        path = Path(text).expanduser()
        return path if path.is_absolute() else settings.project_root / path

    def deliver(self, delivery: ReportDelivery) -> dict[str, Any]:
        from analytics_lib.runner.runs import safe_segment

        record = delivery.record
        folder = (self.root(delivery.outputs) / safe_segment(record.report, "report")
                  / safe_segment(record.period_label, "period"))
        copied = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for kind in [*self.options.formats, "summary"]:
                names = ["summary.json"] if kind == "summary" else (record.artefacts.get(kind) or "").split(",")
                for name in filter(None, names):
                    src = record.path / name
                    if src.is_file():
                        _copy(src, folder / name)
                        copied.append(name)
        except OSError as exc:
            raise DeliveryError(f"cannot write to {folder}: {exc.strerror or exc}") from None
        return {"folder": str(folder), "files": copied}

    def notify(self, notice: FailureNotice) -> dict[str, Any]:
        folder = self.root(notice.outputs) / "failures"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = folder / f"{stamp}-{notice.job}-{notice.history_id}.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            tmp.write_text("\n".join(notice.lines()) + "\n", encoding="utf-8")
            os.replace(tmp, target)
            target.with_suffix(".json").write_text(json.dumps({
                "job": notice.job, "status": notice.status, "error": notice.error, "attempts": notice.attempts,
                "fire_time": notice.fire_time.isoformat() if notice.fire_time else None,
                "history_id": notice.history_id, "run_folder": notice.run_folder}, indent=2), encoding="utf-8")
        except OSError as exc:
            raise DeliveryError(f"cannot write to {folder}: {exc.strerror or exc}") from None
        return {"file": str(target)}
