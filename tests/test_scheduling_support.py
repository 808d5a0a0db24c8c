"""Shared helpers for the scheduling tests: a real SMTP server on 127.0.0.1 (aiosmtpd) that
records what it receives (and can refuse or stall on demand), workspace settings that write only
under a temporary folder, schedule files, and a fabricated report run for distribution tests."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from analytics_lib.config import Settings, get_settings

PYTHON = sys.executable


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    def attachments(self) -> dict[str, bytes]:
        return {p.get_filename(): p.get_payload(decode=True) for p in self.message.iter_attachments()}


@dataclass
class SmtpRecorder:
    """An aiosmtpd handler. ``mode``: accept | refuse (451, temporary) | reject (554) | stall."""

    mode: str = "accept"
    stall_seconds: float = 5.0
    messages: list[Received] = field(default_factory=list)
    calls: int = 0
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.calls += 1
        if self.mode == "refuse":
            return "451 4.3.0 Mailbox busy, try again later"
        if self.mode == "reject":
            return "554 5.7.1 Message rejected by policy"
        if self.mode == "stall":
            await asyncio.sleep(self.stall_seconds)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      message_from_bytes(envelope.content, policy=policy.default)))  # type: ignore[arg-type]
        return "250 2.0.0 OK"

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.rcpt_tos]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpRecorder]:
    """A real SMTP server on 127.0.0.1, stopped on exit; PAYMENT_ANALYTICS_SMTP_* point at it.
    Test modules wrap it in a fixture: ``with running_smtp_server(monkeypatch) as server: yield server``."""
    from aiosmtpd.controller import Controller

    recorder = SmtpRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    env = smtp_env(port)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    recorder.port = port
    recorder.env = env
    try:
        yield recorder
    finally:
        controller.stop()


def smtp_env(port: int, timeout: float = 3) -> dict[str, str]:
    return {"PAYMENT_ANALYTICS_SMTP_HOST": "127.0.0.1", "PAYMENT_ANALYTICS_SMTP_PORT": str(port),
            "PAYMENT_ANALYTICS_SMTP_SECURITY": "none", "PAYMENT_ANALYTICS_SMTP_TIMEOUT": str(timeout),
            "PAYMENT_ANALYTICS_SMTP_FROM": "payment-analytics@example.com"}


def settings_for(tmp_path: Path, warehouse: Path | None = None) -> Settings:
    settings = get_settings().with_warehouse(warehouse or tmp_path / "warehouse")
    return replace(settings, outputs=tmp_path / "outputs")


AUDIENCES = """
audiences:
  management_team:
    email: [head-of-finance@example.com, head-of-growth@example.com]
  oncall:
    email: [oncall@example.com]
    folder: "{notices}"
"""


def write_config(tmp_path: Path, jobs: str, audiences: str = AUDIENCES, defaults: str = "") -> tuple[Path, Path]:
    folder = tmp_path / "scheduling"
    folder.mkdir(exist_ok=True)
    schedules = folder / "schedules.yaml"
    audience_file = folder / "audiences.yaml"
    body = "defaults:\n" + textwrap.indent(textwrap.dedent(defaults).strip() or "timezone: Europe/Istanbul", "  ")
    schedules.write_text(body + "\njobs:\n" + textwrap.indent(textwrap.dedent(jobs).strip(), "  ") + "\n",
                         encoding="utf-8")
    audience_file.write_text(textwrap.dedent(audiences).replace("{notices}", str(tmp_path / "notices")),
                             encoding="utf-8")
    return schedules, audience_file


def command_job(name: str, code: str, cron: str = "0 9 * * 1", **fields: Any) -> str:
    """A ``builtin: command`` job running ``python -c code``."""
    extra = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in fields.items())
    return (f"{name}:\n  builtin: command\n  options:\n    argv: {json.dumps([PYTHON, '-c', code])}\n"
            f"  cron: {json.dumps(cron)}\n{extra}")


# -- a fabricated report run (no notebook executed) -----------------------------------------------

SUMMARY = {
    "title": "Weekly business review",
    "period": {"start": "2026-10-26", "end": "2026-11-01", "kind": "week", "timezone": "Europe/Istanbul",
               "label": "2026-W44"},
    "currency": "USD",
    "kpis": {"gross_revenue": 12345.678, "net_revenue": 11002.5, "revenue_growth_vs_previous": -0.1228,
             "mrr": 2905.945, "transactions": 1234, "success_rate": 0.92, "customers": 845,
             "new_customers": 117, "refund_rate": 0.0435, "chargeback_rate": 0.0},
    "summary": ["In week 2026-W44 gross revenue was $12,346, down 12.3% on week 2026-W43.",
                "Ask jane.doe@gmail.com why 203.0.113.9 paid twice.",
                "Monthly recurring revenue stood at $2,906."],
    "insights": [
        {"id": "a", "title": "High-value segment: Champions are worth 1.97x the average customer",
         "text": "Champions: 135 customers have spent $170.35 each.", "business_impact": "high",
         "recommended_actions": ["Build look-alike audiences", "Offer a loyalty programme", "Third action"],
         "estimated_revenue": 424.1078},
        {"id": "b", "title": "Card declines at one provider", "text": "Contact ops@merchant-customer.com today.",
         "business_impact": "medium", "recommended_actions": [], "estimated_revenue": None},
        {"id": "c", "title": "Third insight", "text": "Third.", "business_impact": "low",
         "recommended_actions": ["Act"], "estimated_revenue": 10.0},
        {"id": "d", "title": "Fourth insight is not in the e-mail", "text": "Fourth.", "business_impact": "low",
         "recommended_actions": [], "estimated_revenue": None},
    ],
}


def fake_run(outputs: Path, report: str = "weekly_business", period: str = "2026-W44", html_bytes: int = 20_000,
             pdf_bytes: int = 10_000, summary: dict[str, Any] | None = None, mark_good: bool = True):
    """A succeeded run folder with summary.json, an HTML and a PDF, as the runner leaves it."""
    from analytics_lib.runner.runs import RunRecord, mark_latest, new_run_id, run_folder

    run_id = new_run_id()
    folder = run_folder(outputs, report, period, run_id)
    (folder / f"{report}.html").write_bytes(b"<!DOCTYPE html><html><body>" + b"x" * html_bytes + b"</body></html>")
    (folder / f"{report}.pdf").write_bytes(b"%PDF-1.7\n" + b"0" * pdf_bytes + b"\n%%EOF\n")
    (folder / "summary.json").write_text(json.dumps(summary or SUMMARY), encoding="utf-8")
    now = datetime.now(UTC).isoformat()
    record = RunRecord(run_id=run_id, report=report, period_label=period, notebook=f"notebooks/reports/{report}.ipynb",
                       parameters={}, formats=["html", "pdf"], warehouse="-", warehouse_versions={}, code={},
                       started_at=now, status="succeeded", finished_at=now, duration_s=1.0,
                       artefacts={"html": f"{report}.html", "pdf": f"{report}.pdf"}, folder=str(folder))
    record.save()
    if mark_good:
        mark_latest(outputs, record)
    return record


# -- reading a report e-mail back ------------------------------------------------------------------


class KpiCells(HTMLParser):
    """The KPI table of a report e-mail: data-kpi -> the text of its value cell."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._row: str | None = None
        self._in_value = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-kpi" in attrs:
            self._row = attrs["data-kpi"]
        if tag == "td" and attrs.get("class") == "kpi-value" and self._row:
            self._in_value = True

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_value = False
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._in_value and self._row:
            self.values[self._row] = self.values.get(self._row, "") + data


def number_in(text: str) -> tuple[float, int]:
    """The number a formatted KPI shows, and its decimal places: '$12,346' -> (12346.0, 0)."""
    match = re.search(r"-?[\d,]+(?:\.(\d+))?", text)
    assert match, text
    return float(match.group(0).replace(",", "")), len(match.group(1) or "")


def assert_mail_numbers_match_summary(html: str, summary: dict) -> None:
    """Every headline KPI in the mail reads back to the number in summary.json (to its shown precision)."""
    cells = KpiCells()
    cells.feed(html)
    kpis = summary["kpis"]
    expected = [k for k in ("gross_revenue", "net_revenue", "mrr", "transactions", "success_rate", "customers")
                if kpis.get(k) is not None]
    assert set(expected) <= set(cells.values), cells.values
    for key, text in cells.values.items():
        value, places = number_in(text)
        true = kpis[key] * (100 if text.strip().endswith("%") else 1)
        assert abs(value - true) <= 0.5 * 10 ** -places + 1e-9, (key, text, kpis[key])
        if key in ("gross_revenue", "net_revenue", "mrr"):
            assert text.startswith("$"), text
