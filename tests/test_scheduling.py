"""Scheduling end to end with the shipped schedules, a demo warehouse and a real SMTP server on
127.0.0.1 (the issue's "Done when"):

- ``schedule run-due --now <Monday 09:05>`` produces the weekly report for the previous Monday to
  Sunday and e-mails it to management_team (recipients, subject, attachments, the numbers of the
  run's summary.json);
- a run killed mid-way (its notebook kernel SIGKILLed) leaves the previous output in place, and
  the failure is recorded in the history and sent to the failure contacts;
- two concurrent ``run-due`` processes produce the report once;
- a job's timeout reaches the notebook run.

The demo warehouse's data ends on 2026-10-31, so "Monday 09:05" is 2 November 2026 (Istanbul).
Every test writes under its own temporary folder (PAYMENT_ANALYTICS_OUTPUTS)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from analytics_lib.cli import main
from analytics_lib.config import PROJECT_ROOT
from analytics_lib.scheduling.history import History
from tests.test_scheduling_support import (
    Received,
    SmtpRecorder,
    assert_mail_numbers_match_summary,
    free_port,
    smtp_env,
)

pytestmark = pytest.mark.slow

SHIPPED = PROJECT_ROOT / "scheduling"
MONDAY_0905 = "2026-11-02T09:05+03:00"
NEXT_MONDAY_0905 = "2026-11-09T09:05+03:00"
MANAGEMENT = ["head-of-finance@example.com", "head-of-growth@example.com", "head-of-product@example.com"]
ONCALL = "data-platform-oncall@example.com"


@dataclass
class SmtpServer:
    recorder: SmtpRecorder
    env: dict[str, str]


class running_server:  # noqa: N801 - used as a context manager
    def __enter__(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        self.recorder = SmtpRecorder()
        port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=port)
        self.controller.start()
        return SmtpServer(self.recorder, smtp_env(port, timeout=10))

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def workspace_env(outputs: Path, warehouse: Path, smtp: SmtpServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMENT_ANALYTICS_")}
    return {**env, **smtp.env, "PAYMENT_ANALYTICS_OUTPUTS": str(outputs), "PAYMENT_ANALYTICS_WAREHOUSE": str(warehouse)}


def runs(outputs: Path, report: str = "weekly_business") -> list[dict]:
    return [json.loads(p.read_text()) | {"folder": str(p.parent)} for p in sorted(outputs.glob(f"{report}/*/*/run.json"))]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory) -> Path:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    root = tmp_path_factory.mktemp("scheduling") / "warehouse"
    generate(Warehouse(root), customers=900, months=14, seed=11, end=date(2026, 10, 31))
    return root


@dataclass
class FirstWeekly:
    root: Path
    outputs: Path
    exit_code: int
    output: str
    messages: list[Received]


@pytest.fixture(scope="module")
def first_weekly(tmp_path_factory, demo_warehouse) -> FirstWeekly:
    """`payment-analytics schedule run-due --now <Monday 09:05>` with the shipped schedules."""
    root = tmp_path_factory.mktemp("first-weekly")
    outputs = root / "outputs"
    with running_server() as smtp:
        env = {**smtp.env, "PAYMENT_ANALYTICS_OUTPUTS": str(outputs), "PAYMENT_ANALYTICS_SCHEDULER_STATE": None,
               "PAYMENT_ANALYTICS_SCHEDULES": None, "PAYMENT_ANALYTICS_AUDIENCES": None,
               "PAYMENT_ANALYTICS_REPORTS_URL": None}
        result = CliRunner().invoke(main, ["--warehouse", str(demo_warehouse), "schedule", "run-due",
                                           "--now", MONDAY_0905], env=env)
        messages = list(smtp.recorder.messages)
    return FirstWeekly(root, outputs, result.exit_code, result.output, messages)


def test_monday_run_due_produces_last_weeks_report_and_emails_management(first_weekly):
    assert first_weekly.exit_code == 0, first_weekly.output
    assert "weekly_business: succeeded" in first_weekly.output
    # only the weekly report was due at 09:05 on a Monday; no other report ran
    assert sorted(p.name for p in first_weekly.outputs.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "weekly_business"]
    [run] = runs(first_weekly.outputs)
    assert run["status"] == "succeeded" and run["period_label"] == "2026-W44"
    assert run["parameters"]["now"] == "2026-11-02T06:00:00+00:00"  # the fire time, 09:00 Istanbul
    assert run["parameters"]["timezone"] == "Europe/Istanbul"
    folder = Path(run["folder"])
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["period"]["start"], summary["period"]["end"]) == ("2026-10-26", "2026-11-01")  # Monday..Sunday
    latest = json.loads((first_weekly.outputs / "weekly_business" / "latest.json").read_text())
    assert latest["run_id"] == run["run_id"]

    [mail] = first_weekly.messages  # one message, to management_team; no failure notices
    assert sorted(mail.rcpt_tos) == sorted(MANAGEMENT)
    assert mail.message["To"] == ", ".join(MANAGEMENT)
    assert mail.subject == f"[Payment analytics] {summary['title']} — 2026-W44 (26 Oct – 1 Nov 2026)"
    files = mail.attachments()
    assert set(files) == {"weekly_business.pdf", "weekly_business.html"}
    assert files["weekly_business.pdf"].startswith(b"%PDF") and files["weekly_business.pdf"] == (
        folder / "weekly_business.pdf").read_bytes()
    assert files["weekly_business.html"] == (folder / "weekly_business.html").read_bytes()
    html = mail.html()
    assert_mail_numbers_match_summary(html, summary)
    for insight in summary["insights"][:3]:
        assert insight["title"].split(":")[0] in html
    assert summary["summary"][0].split(",")[0] in html
    assert "<script" not in html.lower()

    rows = History(first_weekly.outputs / ".scheduler" / "history.sqlite3").rows()
    assert [(r.job, r.status, r.trigger) for r in rows] == [("weekly_business", "succeeded", "on-time")]
    [delivery] = rows[0].detail["deliveries"]
    assert (delivery["target"], delivery["audience"], delivery["status"]) == ("email", "management_team", "sent")
    assert rows[0].detail["run_id"] == run["run_id"]


def _descendants(pid: int):
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _is_kernel(process) -> bool:
    import psutil

    try:
        return "ipykernel" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _still_running(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_run_killed_mid_way_keeps_the_previous_output_and_is_recorded_and_notified(first_weekly, demo_warehouse,
                                                                                     tmp_path):
    assert first_weekly.exit_code == 0, first_weekly.output
    root = tmp_path / "workspace"
    shutil.copytree(first_weekly.root, root)  # last week's good run, its history and cursors
    outputs = root / "outputs"
    [good] = runs(outputs)
    good_files = digest(Path(good["folder"]))
    latest_before = (outputs / "weekly_business" / "latest.json").read_text()
    # the shipped schedules, with no retry, so that the killed attempt is the last
    config = yaml.safe_load((SHIPPED / "schedules.yaml").read_text())
    config["jobs"]["weekly_business"]["retries"] = 0
    (root / "scheduling").mkdir()
    (root / "scheduling" / "schedules.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(SHIPPED / "audiences.yaml", root / "scheduling" / "audiences.yaml")
    with running_server() as smtp:
        proc = subprocess.Popen([sys.executable, "-m", "analytics_lib.cli", "schedule", "--schedules",
                                 str(root / "scheduling" / "schedules.yaml"), "run-due", "--job", "weekly_business",
                                 "--now", NEXT_MONDAY_0905], cwd=PROJECT_ROOT,
                                env=workspace_env(outputs, demo_warehouse, smtp), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            kernel = None
            deadline = time.monotonic() + 120
            while kernel is None and time.monotonic() < deadline and proc.poll() is None:
                kernel = next((p for p in _descendants(proc.pid) if _is_kernel(p)), None)
                time.sleep(0.2)
            assert kernel is not None, "the notebook's kernel never started"
            time.sleep(3)  # mid-way through the notebook
            tree = _descendants(proc.pid)
            kernel.send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        messages = list(smtp.recorder.messages)
    assert proc.returncode == 1, (out, err)
    assert "weekly_business: failed after 1 attempt(s)" in err
    time.sleep(1)
    assert not [p for p in tree if _still_running(p)], "processes of the run were left behind"
    # the previous output is intact and still the latest good one
    assert (outputs / "weekly_business" / "latest.json").read_text() == latest_before
    assert digest(Path(good["folder"])) == good_files
    killed = [r for r in runs(outputs) if r["run_id"] != good["run_id"]]
    assert len(killed) == 1 and killed[0]["status"] == "failed" and killed[0]["period_label"] == "2026-W45"
    assert killed[0]["error"]
    # recorded
    rows = History(outputs / ".scheduler" / "history.sqlite3").rows(job="weekly_business")
    assert [r.status for r in rows] == ["failed", "succeeded"]
    assert rows[0].error.startswith(f"report run {killed[0]['run_id']} failed: ")
    assert rows[0].detail["run_id"] == killed[0]["run_id"]
    # notified: the failure contacts (e-mail and folder), and nothing reached management
    assert [m.rcpt_tos for m in messages] == [[ONCALL]]
    notice = messages[0]
    assert notice.subject == "[Payment analytics] FAILED: weekly_business (2026-11-09 09:00 +03)"
    text = notice.text()
    assert rows[0].error in text
    assert f"Last good output (still in place): 2026-W44, run {good['run_id']}" in text
    [note] = (outputs / "_notifications" / "failures").glob("*.txt")
    assert rows[0].error in note.read_text()
    portal = (outputs / "index.html").read_text()
    assert killed[0]["run_id"] in portal


def test_two_concurrent_run_due_calls_produce_the_report_once(demo_warehouse, tmp_path):
    outputs = tmp_path / "outputs"
    with running_server() as smtp:
        env = workspace_env(outputs, demo_warehouse, smtp)
        procs = [subprocess.Popen([sys.executable, "-m", "analytics_lib.cli", "schedule", "run-due", "--now",
                                   MONDAY_0905], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [p.communicate(timeout=600) for p in procs]
        messages = list(smtp.recorder.messages)
    assert [p.returncode for p in procs] == [0, 0], results
    assert len(runs(outputs)) == 1
    assert [sorted(m.rcpt_tos) for m in messages] == [sorted(MANAGEMENT)]
    rows = History(outputs / ".scheduler" / "history.sqlite3").rows()
    assert [(r.job, r.status) for r in rows] == [("weekly_business", "succeeded")]
    said = "".join(out for out, _ in results)
    assert said.count("weekly_business: running report weekly_business") == 1


def test_a_jobs_timeout_stops_the_notebook(demo_warehouse, tmp_path):
    jobs = {"jobs": {"weekly_business": {"notebook": "weekly_business", "cron": "0 9 * * 1", "timeout": 3,
                                         "retries": 0, "formats": ["html"], "timezone": "Europe/Istanbul",
                                         "on_failure": ["oncall"]}}}
    (tmp_path / "schedules.yaml").write_text(yaml.safe_dump(jobs))
    (tmp_path / "audiences.yaml").write_text(yaml.safe_dump({"audiences": {"oncall": {
        "folder": str(tmp_path / "notices")}}}))
    outputs = tmp_path / "outputs"
    result = CliRunner().invoke(main, ["--warehouse", str(demo_warehouse), "schedule", "--schedules",
                                       str(tmp_path / "schedules.yaml"), "run-due", "--now", MONDAY_0905],
                                env={"PAYMENT_ANALYTICS_OUTPUTS": str(outputs), "PAYMENT_ANALYTICS_SCHEDULER_STATE": None})
    assert result.exit_code == 1, result.output
    [run] = runs(outputs)
    assert run["status"] == "failed" and "timed out after 3 s" in run["error"]
    assert not (outputs / "weekly_business" / "latest.json").exists()
    [row] = History(outputs / ".scheduler" / "history.sqlite3").rows()
    assert row.status == "failed" and "timed out after 3 s" in row.error
    assert len(list((tmp_path / "notices" / "failures").glob("*.txt"))) == 1
