"""Distribution, on a fabricated report run (no notebook executed), through a real SMTP server on
127.0.0.1: the summary e-mail (recipients, subject, attachments, numbers equal to summary.json,
no scripts, no personal data), the size limit's link-only fallback, SMTP servers that refuse or
stall (retried, reported, the last good output left in place), the folder target, and SMTP
settings from the environment."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analytics_lib.scheduling.config import load_config
from analytics_lib.scheduling.dispatch import Dispatcher
from analytics_lib.scheduling.distribution import DeliveryError, ReportDelivery, get_target
from analytics_lib.scheduling.distribution.smtp import SmtpSettings
from analytics_lib.scheduling.jobs import JobResult
from analytics_lib.scheduling.state import StateDir
from tests.test_scheduling_support import (
    SUMMARY,
    assert_mail_numbers_match_summary,
    fake_run,
    running_smtp_server,
    settings_for,
    write_config,
)

RECIPIENTS = ["head-of-finance@example.com", "head-of-growth@example.com"]


@pytest.fixture
def smtp_server(monkeypatch):
    with running_smtp_server(monkeypatch) as server:
        yield server


def email_target(**options):
    cls = get_target("email")
    return cls(cls.parse_options({"to": RECIPIENTS, **options}))


def test_report_email_summary_attachments_and_numbers(tmp_path, smtp_server):
    record = fake_run(tmp_path / "outputs")
    info = email_target().deliver(ReportDelivery.from_run("weekly_business", "management_team", record,
                                                          tmp_path / "outputs"))
    assert info["attached"] == ["pdf", "html"] and info["fallback"] is None and info["recipients"] == 2
    [mail] = smtp_server.messages
    assert sorted(mail.rcpt_tos) == sorted(RECIPIENTS)
    assert mail.mail_from == "payment-analytics@example.com"
    assert mail.message["To"] == ", ".join(RECIPIENTS)
    assert mail.subject == "[Payment analytics] Weekly business review — 2026-W44 (26 Oct – 1 Nov 2026)"
    files = mail.attachments()
    assert files == {"weekly_business.pdf": (record.path / "weekly_business.pdf").read_bytes(),
                     "weekly_business.html": (record.path / "weekly_business.html").read_bytes()}
    pdf_part = next(p for p in mail.message.iter_attachments() if p.get_filename().endswith(".pdf"))
    assert pdf_part.get_content_type() == "application/pdf"
    html = mail.html()
    assert_mail_numbers_match_summary(html, SUMMARY)
    assert "(-12.3% vs previous period)" in html
    # top three insights, ranked as in summary.json, with the estimate formatted as money
    assert html.index("High-value segment") < html.index("Card declines") < html.index("Third insight")
    assert "Fourth insight" not in html and "about <strong>$424.11</strong> a month" in html
    # readable without scripts or remote resources
    assert "<script" not in html.lower() and not re.search(r"(src|href)=\"https?://", html)
    assert "<style" not in html.lower()  # inline styles only: many mail clients drop <style>
    text = mail.text()
    assert "Gross revenue" in text and "$12,346" in text and "Attached: PDF, HTML report." in text
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert mail.message["X-Payment-Analytics-Run"] == record.run_id


def test_no_personal_data_reaches_a_message(tmp_path, smtp_server):
    record = fake_run(tmp_path / "outputs")
    email_target().deliver(ReportDelivery.from_run("weekly_business", "management_team", record, tmp_path / "outputs"))
    [mail] = smtp_server.messages
    body = mail.html() + mail.text() + str(mail.message["Subject"])
    for secret in ("jane.doe@gmail.com", "203.0.113.9", "ops@merchant-customer.com"):
        assert secret not in body
    assert "[e-mail removed]" in body and "[address removed]" in body
    del mail.message["Message-ID"]  # <unique@sender-domain> looks like an address
    addresses = set(re.findall(r"[\w.+-]+@[\w-]+\.[\w.-]+", mail.message.as_string()))
    assert addresses == {*RECIPIENTS, "payment-analytics@example.com"}


def test_size_limit_links_instead_of_attaching(tmp_path, smtp_server, monkeypatch):
    outputs = tmp_path / "outputs"
    record = fake_run(outputs, html_bytes=3_000_000, pdf_bytes=400_000)
    delivery = ReportDelivery.from_run("weekly_business", "management_team", record, outputs)
    # 1.5 MB: the 3 MB HTML is linked, the PDF still attached
    info = email_target(max_size_mb=1.5).deliver(delivery)
    assert (info["attached"], info["linked"], info["fallback"]) == (["pdf"], ["html"], "partial")
    assert info["bytes"] <= 1.5 * 1_048_576
    mail = smtp_server.messages[-1]
    assert list(mail.attachments()) == ["weekly_business.pdf"]
    assert "The HTML report (2.9 MB) is too large to attach" in mail.html()
    assert (record.path / "weekly_business.html").resolve().as_uri() in mail.html()
    # 0.1 MB: link only, to the reports web server when one is configured
    monkeypatch.setenv("PAYMENT_ANALYTICS_REPORTS_URL", "https://reports.example.com/outputs/")
    info = email_target(max_size_mb=0.1).deliver(delivery)
    assert (info["attached"], info["fallback"]) == ([], "link-only")
    mail = smtp_server.messages[-1]
    assert mail.attachments() == {}
    rel = record.path.relative_to(outputs).as_posix()
    for name in ("weekly_business.html", "weekly_business.pdf"):
        assert f'href="https://reports.example.com/outputs/{rel}/{name}"' in mail.html()
    assert 'href="https://reports.example.com/outputs/index.html"' in mail.html()  # the portal


def test_refusing_server_is_retried_then_reported(tmp_path, smtp_server):
    record = fake_run(tmp_path / "outputs")
    delivery = ReportDelivery.from_run("weekly_business", "management_team", record, tmp_path / "outputs")
    smtp_server.mode = "refuse"
    with pytest.raises(DeliveryError) as info:
        email_target().deliver(delivery)
    assert info.value.retryable and "replied 451" in str(info.value)
    smtp_server.mode = "reject"
    with pytest.raises(DeliveryError) as info:
        email_target().deliver(delivery)
    assert not info.value.retryable and "replied 554" in str(info.value)


def dispatcher_with_fake_report(tmp_path: Path, monkeypatch, record, retries: int = 2) -> Dispatcher:
    """A dispatcher whose report attempts 'produce' ``record`` instead of executing the notebook."""
    jobs = (f"weekly_business:\n  notebook: weekly_business\n  cron: '0 9 * * 1'\n  audience: management_team\n"
            f"  retries: {retries}\n  retry_backoff: 0.2\n  on_failure: [oncall]\n")
    schedules, audiences = write_config(tmp_path, jobs)
    config = load_config(schedules, audiences, replace(settings_for(tmp_path), outputs=tmp_path / "outputs"))

    def attempt(self, job, fire, row, n):
        return JobResult("succeeded", detail={"report": record.report, "run_id": record.run_id,
                                              "folder": record.folder, "period": record.period_label,
                                              "run_status": "succeeded"})

    monkeypatch.setattr(Dispatcher, "_attempt", attempt)
    return Dispatcher(config, state=StateDir(tmp_path / "state"))


MONDAY_0905 = datetime(2026, 11, 2, 6, 5, tzinfo=UTC)


def test_run_due_delivers_the_report_and_records_it(tmp_path, smtp_server, monkeypatch):
    record = fake_run(tmp_path / "outputs")
    d = dispatcher_with_fake_report(tmp_path, monkeypatch, record)
    [outcome] = d.run_due(MONDAY_0905)
    assert outcome.status == "succeeded"
    [delivery] = outcome.detail["deliveries"]
    assert (delivery["target"], delivery["audience"], delivery["status"], delivery["attempts"]) == (
        "email", "management_team", "sent", 1)
    assert [sorted(m.rcpt_tos) for m in smtp_server.messages] == [sorted(RECIPIENTS)]


@pytest.mark.parametrize("mode", ["refuse", "stall", "down"])
def test_smtp_refusing_or_timing_out_is_retried_reported_and_the_output_stays(tmp_path, smtp_server, monkeypatch,
                                                                             mode):
    outputs = tmp_path / "outputs"
    previous = fake_run(outputs, period="2026-W43")
    record = fake_run(outputs)
    latest_before = (outputs / "weekly_business" / "latest.json").read_text()
    files_before = {p.name: p.read_bytes() for p in record.path.iterdir()}
    monkeypatch.setenv("PAYMENT_ANALYTICS_SMTP_TIMEOUT", "1")
    if mode == "down":
        from tests.test_scheduling_support import free_port

        monkeypatch.setenv("PAYMENT_ANALYTICS_SMTP_PORT", str(free_port()))  # nothing listens there
    else:
        smtp_server.mode = mode
        smtp_server.stall_seconds = 3
    d = dispatcher_with_fake_report(tmp_path, monkeypatch, record, retries=2)
    [outcome] = d.run_due(MONDAY_0905)
    assert outcome.status == "delivery_failed"
    expected = {"refuse": "replied 451", "stall": "timed out after 1 s", "down": "Connection refused"}[mode]
    assert "email to management_team failed after 3 attempt(s)" in outcome.error and expected in outcome.error
    if mode == "refuse":
        assert smtp_server.calls >= 3  # three report attempts (+ the failure notices, refused too)
    # the run and what readers rely on are untouched
    assert (outputs / "weekly_business" / "latest.json").read_text() == latest_before
    assert {p.name: p.read_bytes() for p in record.path.iterdir()} == files_before
    assert previous.path.is_dir()
    # recorded, and the failure contacts told through what still works (the folder target)
    row = d.history.get(outcome.history_id)
    assert row.status == "delivery_failed" and row.error == outcome.error
    notifications = {n["target"]: n for n in row.detail["notifications"]}
    assert notifications["folder"]["status"] == "sent" and notifications["email"]["status"] == "failed"
    [notice] = (tmp_path / "notices" / "failures").glob("*.txt")
    text = notice.read_text()
    assert "ran, but its report could not be delivered" in text and record.run_id in text


def test_email_without_smtp_settings_is_a_clear_permanent_failure(tmp_path, monkeypatch):
    for key in ("HOST", "PORT", "SECURITY", "USER", "PASSWORD", "FROM", "TIMEOUT"):
        monkeypatch.delenv(f"PAYMENT_ANALYTICS_SMTP_{key}", raising=False)
    record = fake_run(tmp_path / "outputs")
    d = dispatcher_with_fake_report(tmp_path, monkeypatch, record)
    [outcome] = d.run_due(MONDAY_0905)
    assert outcome.status == "delivery_failed"
    assert "failed after 1 attempt(s): e-mail is not configured: set PAYMENT_ANALYTICS_SMTP_HOST" in outcome.error


def test_folder_target_copies_the_report_and_writes_notices(tmp_path):
    outputs = tmp_path / "outputs"
    record = fake_run(outputs)
    cls = get_target("folder")
    target = cls(cls.parse_options("{outputs}/_shared"))
    info = target.deliver(ReportDelivery.from_run("weekly_business", "finance_share", record, outputs))
    folder = outputs / "_shared" / "weekly_business" / "2026-W44"
    assert info["folder"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["summary.json", "weekly_business.html", "weekly_business.pdf"]
    assert json.loads((folder / "summary.json").read_text())["title"] == "Weekly business review"


def test_smtp_settings_come_from_the_environment_and_hide_the_password(tmp_path):
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n")
    env = {"PAYMENT_ANALYTICS_SMTP_HOST": "smtp.example.com", "PAYMENT_ANALYTICS_SMTP_USER": "reports",
           "PAYMENT_ANALYTICS_SMTP_PASSWORD_FILE": str(secret)}
    smtp = SmtpSettings.from_env(env)
    assert (smtp.host, smtp.port, smtp.security, smtp.user, smtp.password) == ("smtp.example.com", 587, "starttls",
                                                                               "reports", "s3cret")
    assert "s3cret" not in repr(smtp)
    assert SmtpSettings.from_env({**env, "PAYMENT_ANALYTICS_SMTP_SECURITY": "ssl"}).port == 465
    with pytest.raises(ValueError, match="PAYMENT_ANALYTICS_SMTP_SECURITY='tls'"):
        SmtpSettings.from_env({**env, "PAYMENT_ANALYTICS_SMTP_SECURITY": "tls"})
    with pytest.raises(DeliveryError, match="set PAYMENT_ANALYTICS_SMTP_HOST"):
        SmtpSettings.from_env({})
