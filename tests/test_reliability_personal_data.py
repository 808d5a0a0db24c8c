"""Personal data in every artefact (issue 9): no IP address, user agent or e-mail address of a
customer appears in any rendered report (HTML, PDF text, the executed notebook, summary.json),
export (xlsx, csv, json), scheduled e-mail (body and attachments, as a real SMTP server on
127.0.0.1 received them), dashboard (tiles, charts, the printable page, exports) or CLI output.

The fixture warehouse is the demo generator's data plus personal data arriving the way it does in
production: platform JSON payments carrying real-looking IP addresses and user agents, and a
Stripe export carrying customer e-mails, names and card addresses, all in the reports' periods and
marked risky so the fraud review and the alerts pick them up. The warehouse keeps only keyed
hashes and derived fields; the list of real values is what the input files held, and the test
first checks their hashes did reach the warehouse (so the values were there to leak). Each
artefact's text is then searched for every value (plus the keyed hashes of IPs and e-mails, which
identify a person as well) and for anything shaped like an e-mail, an IPv4 address or a browser
user agent. PDFs are read with pdftotext (poppler-utils), workbooks with openpyxl."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from analytics_lib.config import PROJECT_ROOT, get_settings
from analytics_lib.runner import catalogue, run_report
from tests.conftest import payment, write_jsonl
from tests.test_scheduling_support import running_smtp_server
from tests.test_sources_stripe import charge, write_export

REPORTS = sorted(catalogue())
NOW = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # the morning after the data ends
END = date(2026, 10, 31)
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "PaymentsApp/3.2.1 (iPad; iOS 17.4; Scale/2.00) Alamofire/5.8",
]
#: what may look like an address and is not a customer's: sender/recipients of the schedules' examples
ALLOWED_EMAILS = re.compile(r"@(example\.com|example\.org)$", re.I)


@dataclass
class PersonalData:
    ips: list[str]
    user_agents: list[str]
    emails: list[str]
    names: list[str]
    hashes: list[str]

    def values(self) -> dict[str, str]:
        out = {v: "IP address" for v in self.ips}
        out |= {v: "user agent" for v in self.user_agents}
        out |= {v: "e-mail" for v in self.emails} | {v.lower(): "e-mail" for v in self.emails}
        out |= {v: "name or address" for v in self.names}
        out |= {v: "keyed hash of an IP or e-mail" for v in self.hashes}
        return out


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.ingest import ingest
    from analytics_lib.warehouse.privacy import hash_email, hash_ip

    root = tmp_path_factory.mktemp("personal-data")
    wh = Warehouse(root / "warehouse")
    generate(wh, customers=400, months=14, seed=23, end=END)
    ips = [f"203.0.113.{i}" for i in range(11, 51)] + [f"198.51.100.{i}" for i in range(101, 121)]
    records = []
    for i, ip in enumerate(ips):
        created = datetime(2026, 10, 25, 8, tzinfo=UTC) + timedelta(hours=4 * i + (i % 3))
        created = min(created, datetime(2026, 10, 31, 17, 30, tzinfo=UTC) - timedelta(minutes=i))
        status = ("completed", "completed", "failed", "completed")[i % 4]
        records.append(payment(f"pay_pii_{i:03d}", userId=f"user_pii_{i % 25}", amount=round(29.0 + 7.5 * i, 2),
                               status=status, createdAt=created.isoformat().replace("+00:00", "Z"),
                               completedAt=(created + timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
                               riskScore=float(60 + i % 40), fraudIndicators=["velocity", "ip_mismatch"][: i % 3],
                               **{"metadata.ipAddress": ip, "metadata.userAgent": USER_AGENTS[i % len(USER_AGENTS)],
                                  "metadata.countryCode": ("US", "TR", "DE", "GB")[i % 4]}))
    write_jsonl(root / "payments.jsonl", records)
    report = ingest(root / "payments.jsonl", "platform-json", wh)
    assert report.rejected == 0, report
    emails = [f"Customer.{i}.Private@gmail.com" for i in range(30)] + ["zeynep.kaya1987@hotmail.com",
                                                                      "j.smith+shop@outlook.com"]
    names = []
    rows = []
    for i, email in enumerate(emails):
        name = f"Privatename{i} Surname{i}"
        street = f"{100 + i} Hidden Lane"
        names += [name, street]
        created = datetime(2026, 10, 1, 9, tzinfo=UTC) + timedelta(hours=22 * i)
        extra = {"Dispute Status": "lost", "Disputed Amount": "40.00", "Dispute Reason": "fraudulent",
                 "Dispute Date (UTC)": (created + timedelta(days=2)).strftime("%Y-%m-%d %H:%M")} if i % 7 == 0 else {}
        rows.append(charge(f"ch_pii_{i:03d}", Customer_ID=f"cus_pii_{i}", Customer_Email=email,
                           Customer_Description=name, Card_Name=name, Card_Address_Line1=street,
                           Amount=f"{40 + 3 * i}.00", Converted_Amount=f"{40 + 3 * i}.00",
                           **{"Created (UTC)": created.strftime("%Y-%m-%d %H:%M:%S"),
                              "Amount Refunded": "10.00" if i % 5 == 0 else "0.00",
                              "Converted Amount Refunded": "10.00" if i % 5 == 0 else "0.00",
                              "Card Fingerprint": f"fpPII{i:03d}"}, **extra))
    write_export(root / "stripe.csv", rows)
    report = ingest(root / "stripe.csv", "stripe", wh)
    assert report.rejected == 0, report
    ip_hashes = sorted({hash_ip(ip) for ip in ips})
    email_hashes = sorted({hash_email(e) for e in emails})
    with wh.snapshot(tables=["transactions", "customers"]) as snap:
        stored_ips = set(snap.sql("SELECT DISTINCT ip_hash FROM transactions WHERE ip_hash IS NOT NULL")["ip_hash"])
        stored_emails = set(snap.sql("SELECT DISTINCT email_hash FROM customers WHERE email_hash IS NOT NULL")["email_hash"])
    assert set(ip_hashes) <= stored_ips and set(email_hashes) <= stored_emails, "the personal data never arrived"
    data = PersonalData(ips, USER_AGENTS, emails, names, ip_hashes + email_hashes)
    settings = replace(get_settings().with_warehouse(root / "warehouse"), outputs=root / "outputs")
    return root, settings, data


# -- reading artefacts as text ------------------------------------------------------------------


def _unescape(text: str) -> str:
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return html.unescape(text.replace("\\/", "/"))


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def xlsx_text(content: bytes) -> str:
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    return "\n".join(" ".join("" if v is None else str(v) for v in row)
                     for sheet in book.worksheets for row in sheet.iter_rows(values_only=True))


def file_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return pdf_text(path)
    if suffix == ".xlsx":
        return xlsx_text(path.read_bytes())
    if suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            return "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    return _unescape(path.read_text(encoding="utf-8", errors="replace"))


PLOTLY_LIBRARY = re.compile(r"<script[^>]*>(?:(?!</script>).){200000,}?</script>", re.S)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])")
USER_AGENT = re.compile(r"Mozilla/\d|AppleWebKit/\d|\(KHTML, like Gecko\)|Alamofire/\d")


def findings(name: str, text: str, data: PersonalData) -> list[str]:
    found = [f"{name}: {kind} {value!r}" for value, kind in data.values().items() if value in text]
    # shapes, outside an inlined library (plotly.js is several MB of third-party code)
    own = PLOTLY_LIBRARY.sub("", text)
    found += [f"{name}: something shaped like an e-mail {m!r}" for m in set(EMAIL.findall(own))
              if not ALLOWED_EMAILS.search(m)]
    found += [f"{name}: something shaped like an IPv4 address {m!r}" for m in set(IPV4.findall(own))
              if not m.startswith(("0.", "1.0.", "2.0."))]
    found += [f"{name}: something shaped like a user agent {m!r}" for m in set(USER_AGENT.findall(own))]
    return found


def scan_folder(folder: Path, data: PersonalData) -> tuple[list[str], int]:
    found, count = [], 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        found += findings(str(path.relative_to(folder)), file_text(path), data)
        count += 1
    return found, count


def test_the_scan_finds_each_kind_of_personal_data_however_it_is_written(tmp_path):
    """The scanner itself: a value planted in JSON inside HTML (escaped), a workbook cell or a zipped
    CSV is found; the schedules' example addresses and version numbers are not findings."""
    data = PersonalData(["203.0.113.7"], [USER_AGENTS[0]], ["Jane.Doe@gmail.com"], ["Privatename Surname"],
                        ["ab" * 32])
    page = tmp_path / "page.html"
    page.write_text('<p>to: ops@example.com, plotly 2.35.2</p><script type="application/json">'
                    + '{"hover": "Jane.Doe\\u0040gmail.com", "ua": "' + USER_AGENTS[0].replace("/", "\\/") + '"}'
                    + "</script>")
    assert {f.split(": ", 1)[1].split(" ")[0] for f in findings("page", file_text(page), data)} >= {"e-mail", "user"}
    book = openpyxl.Workbook()
    book.active.append(["ip", "203.0.113.7"])
    book.save(tmp_path / "book.xlsx")
    assert any("IP address" in f for f in findings("book", file_text(tmp_path / "book.xlsx"), data))
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as z:
        z.writestr("a.csv", "name\nPrivatename Surname\n10.1.2.3\n")
    found = findings("zip", file_text(tmp_path / "export.zip"), data)
    assert any("name or address" in f for f in found) and any("10.1.2.3" in f for f in found)
    clean = tmp_path / "clean.html"
    clean.write_text("<p>Send questions to head-of-finance@example.com; revenue 1,234.50; version 1.0.0.1</p>")
    assert findings("clean", file_text(clean), data) == []


# -- reports, the scheduled e-mail, the CLI -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", REPORTS)
def test_no_personal_data_in_a_reports_outputs(fixture, name):
    root, settings, data = fixture
    values = ({"definition": str(PROJECT_ROOT / "parameters" / "custom_report" / "country_mix.yaml")}
              if name == "custom_report" else None)
    record = run_report(name, values=values, formats="html,pdf,xlsx,csv,json", settings=settings, now=NOW,
                        progress=False)
    assert record.status == "succeeded", record.error
    found, count = scan_folder(record.path, data)
    print(f"\n{name}: {count} files scanned for {len(data.values())} values")
    assert count >= 6  # html, pdf, xlsx, csv, json, ipynb, summary.json, run.json
    assert not found, "\n".join(found)


@pytest.mark.slow
def test_no_personal_data_in_the_scheduled_email(fixture, monkeypatch):
    from analytics_lib.scheduling.distribution import ReportDelivery, get_target

    root, settings, data = fixture
    record = run_report("weekly_business", formats="html,pdf", settings=replace(settings, outputs=root / "mail-outputs"),
                        now=NOW, progress=False)
    assert record.status == "succeeded", record.error
    with running_smtp_server(monkeypatch) as server:
        cls = get_target("email")
        target = cls(cls.parse_options({"to": ["head-of-finance@example.com"]}))
        target.deliver(ReportDelivery.from_run("weekly_business", "management_team", record, root / "mail-outputs"))
        [mail] = server.messages
    parts = {"body (html)": _unescape(mail.html()), "body (text)": mail.text(), "headers": str(mail.message.items())}
    attachments = mail.attachments()
    assert {"weekly_business.html", "weekly_business.pdf"} <= set(attachments), attachments.keys()
    scratch = root / "attachments"
    scratch.mkdir(exist_ok=True)
    for fname, content in attachments.items():
        (scratch / fname).write_bytes(content)
        parts[f"attachment {fname}"] = file_text(scratch / fname)
    found = [f for part, text in parts.items() for f in findings(part, text, data)]
    assert not found, "\n".join(found)


@pytest.mark.slow
def test_no_personal_data_in_cli_output(fixture):
    from click.testing import CliRunner

    from analytics_lib.cli import main

    root, settings, data = fixture
    runner = CliRunner()
    found = []
    for args in (["analytics", "--period", "2026-10", "--format", "json"], ["analytics", "--period", "2026-10"],
                 ["info"]):
        result = runner.invoke(main, ["--warehouse", settings.warehouse, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        found += findings(" ".join(args), _unescape(result.output), data)
    assert not found, "\n".join(found)


# -- dashboards ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_personal_data_on_any_dashboard_or_in_its_exports(fixture):
    from analytics_lib.dashboards import DASHBOARDS, open_dashboard
    from analytics_lib.dashboards.export import export, page_html
    from analytics_lib.dashboards.widgets import Dashboard

    root, settings, data = fixture
    clock = datetime(2026, 10, 31, 18, 0, tzinfo=UTC)
    roles_file = str(PROJECT_ROOT / "parameters" / "dashboards" / "roles.yaml")
    found, scanned = [], 0
    for name in DASHBOARDS:
        board = open_dashboard(name, warehouse=settings.warehouse, roles_file=roles_file, clock=lambda: clock)
        assert isinstance(board, Dashboard), getattr(board, "text", board)
        view = board.refresh()
        assert board.error is None, board.error
        board.page_shown.click()  # charts are sent once the page is on screen
        shown = "\n".join(t.html.value for t in board.tiles.values())
        shown += "\n".join(json.dumps(o, default=str) for t in board.tiles.values() for o in t.chart.outputs)
        shown += board.message.value
        parts = {f"{name} tiles and charts": _unescape(shown), f"{name} printable page": _unescape(page_html(view))}
        for fmt in ("json", "csv", "xlsx"):
            download = export(view, fmt, (fmt,), None)
            path = root / "dash-exports" / download.filename
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(download.content)
            parts[f"{name} export {download.filename}"] = file_text(path)
        for part, text in parts.items():
            found += findings(part, text, data)
            scanned += 1
    print(f"\ndashboards: {scanned} artefacts scanned")
    assert not found, "\n".join(found)


@pytest.mark.slow
@pytest.mark.browser
def test_no_personal_data_in_a_dashboards_pdf_export(fixture):
    from analytics_lib.dashboards import open_dashboard
    from analytics_lib.dashboards.export import export

    if not shutil.which("chromium") and not shutil.which("chromium-browser"):
        pytest.skip("chromium is not installed")
    root, settings, data = fixture
    clock = datetime(2026, 10, 31, 18, 0, tzinfo=UTC)
    board = open_dashboard("operations", warehouse=settings.warehouse, clock=lambda: clock,
                           roles_file=str(PROJECT_ROOT / "parameters" / "dashboards" / "roles.yaml"))
    pdf = export(board.refresh(), "pdf", ("pdf",), None)
    path = root / "operations.pdf"
    path.write_bytes(pdf.content)
    assert not findings("operations pdf", pdf_text(path), data)
