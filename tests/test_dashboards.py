"""Dashboards without a browser: roles, filter validation, what each dashboard loads, the page's
reaction to hostile widget values, exports, the refresh loop, the culling kernel manager, the
role servers' command lines and the CLI. The browser tests are in test_dashboards_browser.py."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner

from analytics_lib import metrics
from analytics_lib.config import PROJECT_ROOT, get_settings
from analytics_lib.dashboards import DASHBOARDS, open_dashboard
from analytics_lib.dashboards import data as dash_data
from analytics_lib.dashboards.export import ExportRefused, download_link, export, page_html
from analytics_lib.dashboards.refresh import Refresher
from analytics_lib.dashboards.regions import by_region, region
from analytics_lib.dashboards.roles import RoleError, load_roles, role_tokens, token_variable
from analytics_lib.dashboards.state import FilterError, FilterOptions, validate
from analytics_lib.dashboards.widgets import Dashboard, Unavailable

END = date(2026, 10, 31)
NOW = datetime(2026, 10, 31, 18, 0, tzinfo=UTC)
ROLES_FILE = PROJECT_ROOT / "parameters" / "dashboards" / "roles.yaml"


@pytest.fixture(scope="module")
def warehouse_path(tmp_path_factory) -> Path:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    root = tmp_path_factory.mktemp("dash") / "warehouse"
    generate(Warehouse(root), customers=600, months=3, seed=5, end=END)
    return root


def _board(name: str, warehouse_path: Path, role: str | None = None, **kwargs) -> Dashboard:
    board = open_dashboard(name, role=role, warehouse=str(warehouse_path), roles_file=str(ROLES_FILE),
                           clock=lambda: NOW, **kwargs)
    assert isinstance(board, Dashboard), getattr(board, "text", board)
    return board


# -- roles ---------------------------------------------------------------------------------------------


def test_roles_file_maps_roles_to_dashboards_widgets_and_exports():
    roles = load_roles(ROLES_FILE)
    assert roles.names() == ["executive", "operations", "finance", "developer"]
    assert roles["operations"].widgets("operations") == DASHBOARDS["operations"].widgets
    assert "fraud_alerts" not in roles["developer"].widgets("operations")
    assert roles["executive"].export == ("pdf", "xlsx")
    assert not roles["developer"].may_export("pdf")
    with pytest.raises(RoleError, match="has no 'finance' dashboard"):
        roles["operations"].widgets("finance")
    assert token_variable("finance") == "PAYMENT_ANALYTICS_DASHBOARD_TOKEN_FINANCE"


@pytest.mark.parametrize(("text", "message"), [
    ("roles: {ops: {dashboards: {nope: all}}}", "field 'roles.ops.dashboards': unknown dashboard 'nope'"),
    ("roles: {ops: {dashboards: {operations: [kpis, pie]}}}", "unknown widget 'pie' of 'operations'"),
    ("roles: {ops: {dashboards: {operations: all}, export: [docx]}}", "unknown export format 'docx'"),
    ("roles: {Ops: {dashboards: {operations: all}}}", "role name 'Ops' must be lower-case"),
    ("roles: {ops: {dashboards: {operations: all}, tokens: x}}", "field 'roles.ops.tokens'"),
    ("roles: [1, 2", "not valid YAML"),
    ("", "field 'roles'"),
])
def test_bad_roles_files_are_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "roles.yaml"
    path.write_text(text)
    with pytest.raises(RoleError) as err:
        load_roles(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_tokens_must_be_set_long_and_different_per_role():
    roles = load_roles(ROLES_FILE)
    ops, dev = roles["operations"], roles["developer"]
    good = {ops.token_variable: "a" * 20, dev.token_variable: "b" * 20}
    assert role_tokens([ops, dev], good) == {"operations": "a" * 20, "developer": "b" * 20}
    with pytest.raises(RoleError, match="set PAYMENT_ANALYTICS_DASHBOARD_TOKEN_DEVELOPER"):
        role_tokens([ops, dev], {ops.token_variable: "a" * 20})
    with pytest.raises(RoleError, match="too short"):
        role_tokens([ops], {ops.token_variable: "short"})
    with pytest.raises(RoleError, match="same token"):
        role_tokens([ops, dev], {ops.token_variable: "a" * 20, dev.token_variable: "a" * 20})


# -- filters ---------------------------------------------------------------------------------------------


OPTIONS = FilterOptions(currencies=("EUR", "USD"), countries=("DE", "TR"), methods=("card", "paypal"),
                        default_currency="USD", timezone="Europe/Istanbul", today=date(2026, 10, 31),
                        earliest=date(2026, 8, 1))


def test_valid_filters_become_metric_filters():
    state = validate({"start": "2026-10-01", "end": date(2026, 10, 31), "hours": 24, "currency": "EUR",
                      "country": "all", "method": "card"}, OPTIONS)
    assert state.metric_filters().to_dict() == {"currency": ["EUR"], "payment_method": ["card"]}
    assert state.reporting_currency("USD") == "EUR"
    assert state.period("Europe/Istanbul").days == 31


@pytest.mark.parametrize(("change", "message"), [
    ({"end": date(2026, 11, 1)}, "after today"),
    ({"start": date(2026, 10, 31), "end": date(2026, 10, 1)}, "before the start"),
    ({"start": date(2023, 1, 1)}, "at most 731 days"),
    ({"start": None}, "start date is missing"),
    ({"start": "yesterday"}, "start date is missing or not a date"),
    ({"hours": 10_000}, "live window"),
    ({"hours": True}, "live window"),
    ({"currency": "XXX"}, "currency 'XXX' is not one of the choices"),
    ({"country": "'; DROP TABLE transactions; --"}, "is not one of the choices"),
    ({"method": ["card"]}, "payment method"),
])
def test_invalid_filters_are_refused_with_a_short_message(change, message):
    raw = {"start": date(2026, 10, 1), "end": date(2026, 10, 31), "hours": 24} | change
    with pytest.raises(FilterError, match=message):
        validate(raw, OPTIONS)


def test_regions_group_countries_without_a_map():
    assert (region("TR"), region("us"), region("BR"), region("JP"), region("ZZ"), region(None)) == (
        "Europe", "North America", "Latin America", "Asia-Pacific", "Other", "Other")
    frame = pd.DataFrame({"country_code": ["DE", "FR", "US", "ZZ"], "revenue": [10.0, 5.0, 7.0, 1.0]})
    assert by_region(frame).to_dict("records") == [
        {"region": "Europe", "revenue": 15.0}, {"region": "North America", "revenue": 7.0},
        {"region": "Other", "revenue": 1.0}]


def test_provider_status_from_the_success_rate():
    frame = pd.DataFrame({"provider": ["a", "b", "c", "d"], "transactions": [100, 100, 100, 3],
                          "successful": [90, 75, 50, 3], "failed": [10, 25, 50, 0],
                          "success_rate": [0.90, 0.75, 0.50, 1.0]})
    assert dash_data.provider_status(frame)["status"].tolist() == ["ok", "degraded", "failing", "low volume"]


# -- what each dashboard loads -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_each_dashboard_loads_every_widget_from_one_snapshot(warehouse_path, name):
    board = _board(name, warehouse_path)
    view = board.refresh()
    assert board.error is None
    assert list(view.panels) == list(DASHBOARDS[name].widgets)
    for wid, panel in view.panels.items():
        assert panel.kpis or panel.figure is not None or panel.table is not None, wid
    assert view.meta["warehouse_versions"]["transactions"] >= 0
    assert 'data-kpi="' in "".join(t.html.value for t in board.tiles.values())
    # charts wait until the page says it is on screen (its script clicks a hidden button)
    assert not any(t.chart.outputs for t in board.tiles.values())
    board.page_shown.click()
    charts_shown = [t for t in board.tiles.values() if t.chart.outputs]
    assert charts_shown and "application/vnd.plotly.v1+json" in charts_shown[0].chart.outputs[0]["data"]


def test_operations_numbers_are_the_metric_layers(warehouse_path):
    board = _board("operations", warehouse_path)
    view = board.refresh()
    with metrics.MetricSession.open(str(warehouse_path)) as session:
        live = metrics.realtime(session, now=NOW, hours=24, currency="USD", timezone=get_settings().timezone)
    kpis = dict(view.panels["kpis"].kpis)
    assert kpis["transactions"].value == live.summary["transactions"] > 0
    assert kpis["success_rate"].value == pytest.approx(live.summary["success_rate"])
    assert kpis["revenue_per_hour"].value == pytest.approx(live.summary["revenue_per_hour"])
    assert view.data["hourly"]["transactions"].sum() == live.summary["transactions"]
    statuses = set(view.panels["providers"].table["status"])
    assert statuses <= {"ok", "degraded", "failing", "low volume"}


def test_a_role_sees_only_its_widgets_and_dashboards(warehouse_path):
    board = _board("operations", warehouse_path, role="developer")
    view = board.refresh()
    assert "fraud_alerts" not in view.panels and "fraud_alerts" not in view.data
    assert "open_fraud_alerts" not in dict(view.panels["kpis"].kpis)
    assert not hasattr(board, "export_button") or board.export_formats == ("csv", "json")
    refused = open_dashboard("finance", role="operations", roles_file=str(ROLES_FILE), warehouse=str(warehouse_path))
    assert isinstance(refused, Unavailable) and "has no Finance dashboard" in refused.text
    no_export = _board("executive", warehouse_path, role="executive")
    assert no_export.export_formats == ("pdf", "xlsx")


def test_a_dashboard_that_cannot_start_says_so_in_one_line(monkeypatch):
    monkeypatch.setenv("PAYMENT_ANALYTICS_TIMEZONE", "Mars/Olympus_Mons")
    board = open_dashboard("operations", clock=lambda: NOW)
    assert isinstance(board, Unavailable)
    assert "cannot start" in board.text and "Mars/Olympus_Mons" in board.text
    assert "Traceback" not in board.text and "\n" not in board.text


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_an_empty_warehouse_shows_zeros_not_errors(tmp_path, name):
    board = _board(name, tmp_path / "empty")
    board.refresh()
    assert board.error is None, board.error


def test_filters_change_what_is_shown(warehouse_path):
    board = _board("operations", warehouse_path)
    before = board.refresh()
    method = before.data["payment_methods"]["payment_method"].iloc[0]
    board.method.value = method  # what the browser's dropdown does
    assert board.state.method == method
    after = board.refresh()
    assert after.data["payment_methods"]["payment_method"].tolist() == [method]
    assert dict(after.panels["kpis"].kpis)["transactions"].value < dict(before.panels["kpis"].kpis)["transactions"].value


def test_hostile_widget_values_from_a_browser_are_refused(warehouse_path):
    board = _board("executive", warehouse_path)
    state = board.state
    # a browser sends trait updates; set_state is what ipywidgets runs on such a message
    board.end.set_state({"value": {"year": 2099, "month": 0, "date": 1}})
    assert board.state == state and board.end.value == state.end
    assert "Filter not applied" in board.message.value and "after today" in board.message.value
    with pytest.raises(Exception, match="index out of bounds"):
        board.country.set_state({"index": 10_000})
    assert board.state == state
    board.interval.set_state({"index": 0})  # a listed choice is fine
    assert board.refresh_seconds == 2.0
    board.clock_widget.set_state({"interval": 1})  # the clock cannot be made to spin
    assert board.clock_widget.interval == 2000
    board.start.set_state({"value": None})
    assert board.state == state and "start date is missing" in board.message.value


def test_charts_go_out_a_few_seconds_after_the_page_exists_at_the_latest(warehouse_path, monkeypatch):
    monkeypatch.setattr("analytics_lib.dashboards.widgets.CHART_RELEASE_FALLBACK_S", 0.2)
    board = _board("developer", warehouse_path)
    board.refresh()
    board.clock_widget._view_count = 1  # the browser drew the clock: the page exists
    assert board.clock_widget.playing
    deadline = time.monotonic() + 5
    while not all(t.chart.outputs for t in board.tiles.values() if t.chart.layout.display is None):
        assert time.monotonic() < deadline, "charts were never sent"
        time.sleep(0.05)


def test_a_failed_refresh_shows_one_line_and_keeps_the_last_data(warehouse_path, monkeypatch):
    board = _board("operations", warehouse_path)
    board.refresh()
    shown = board.tiles["kpis"].html.value

    def broken(*args, **kwargs):
        raise RuntimeError("the snapshot went away\nTraceback (most recent call last): ...")

    monkeypatch.setattr("analytics_lib.dashboards.widgets.load_view", broken)
    board.refresh()
    assert "Could not refresh: the snapshot went away" in board.message.value
    assert "Traceback" not in board.message.value
    assert board.tiles["kpis"].html.value == shown


def test_the_live_window_follows_new_payments(warehouse_path, tmp_path):
    import shutil

    from analytics_lib.warehouse import Warehouse

    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse_path, copy)
    board = _board("operations", copy)
    before = dict(board.refresh().panels["kpis"].kpis)["transactions"].value
    append_payments(Warehouse(copy), 3, NOW - timedelta(minutes=5))
    after = dict(board.refresh().panels["kpis"].kpis)["transactions"].value
    assert after == before + 3


def append_payments(wh, n: int, at: datetime, prefix: str = "live") -> list[str]:
    """Add ``n`` completed payments created at ``at`` (copies of the latest completed one)."""
    import uuid

    with wh.snapshot(tables=["transactions"]) as snap:
        row = snap.arrow("SELECT * FROM transactions WHERE status = 'completed' ORDER BY created_at DESC LIMIT 1").to_pylist()[0]
    rows, ids = [], []
    for i in range(n):
        created = at + timedelta(milliseconds=i)
        ids.append(f"{prefix}-{uuid.uuid4().hex[:12]}")
        rows.append(row | {"transaction_id": ids[-1], "created_at": created, "completed_at": created + timedelta(seconds=1),
                           "failed_at": None, "failure_reason": None, "status": "completed",
                           "outcome_type": "authorized", "attempt_number": 1, "original_transaction_id": None,
                           "billing_reason": "purchase", "created_month": f"{created.astimezone(UTC):%Y-%m}"})
    wh.upsert("transactions", rows)
    return ids


# -- exports ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finance_view(warehouse_path):
    board = _board("finance", warehouse_path, role="finance")
    return board.refresh()


def test_exports_hold_the_data_shown(finance_view):
    allowed = ("csv", "xlsx", "json", "pdf")
    doc = json.loads(export(finance_view, "json", allowed, "finance").content)
    assert doc["meta"]["dashboard"] == "finance" and doc["meta"]["role"] == "finance"
    assert doc["summary"]["net_revenue"] == pytest.approx(finance_view.summary["net_revenue"])
    assert set(doc["sections"]["finance"]["tables"]) == set(finance_view.data)
    xlsx = export(finance_view, "xlsx", allowed, "finance")
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames[0] == "Summary" and len(book.sheetnames) > 3
    csv = export(finance_view, "csv", allowed, "finance")
    assert csv.filename.endswith(".zip")
    names = zipfile.ZipFile(io.BytesIO(csv.content)).namelist()
    assert "summary.csv" in names and "finance__fees_by_provider.csv" in names
    link = download_link(csv)
    assert link.startswith('<a class="pa-download" download="finance-') and "data:application/zip;base64," in link


def test_exports_a_role_may_not_have_are_refused(finance_view):
    with pytest.raises(ExportRefused, match="not available to this role"):
        export(finance_view, "pdf", ("csv",), "developer")
    with pytest.raises(ExportRefused):
        export(finance_view, "../../etc/passwd", ("csv", "pdf"), "finance")


def test_the_pdf_page_has_every_chart_and_no_network_reference(finance_view):
    from analytics_lib.reporting.html import external_references

    page = page_html(finance_view)
    assert page.count('class="pa-chart"') == sum(p.figure is not None for p in finance_view.panels.values())
    assert external_references(page) == []


@pytest.mark.slow
@pytest.mark.browser
def test_pdf_export_prints_the_current_view(finance_view):
    pdf = export(finance_view, "pdf", ("pdf",), "finance")
    assert pdf.filename.endswith(".pdf") and pdf.content.startswith(b"%PDF") and len(pdf.content) > 20_000


# -- refresh loop, culling, servers ---------------------------------------------------------------------------


def test_refresher_coalesces_requests_and_keeps_a_minimum_gap():
    runs: list[float] = []
    started = threading.Event()

    def work():
        runs.append(time.monotonic())
        started.set()
        time.sleep(0.2)

    refresher = Refresher(work, min_interval=1.0)
    refresher.start()
    for _ in range(50):  # a browser ticking every few milliseconds
        refresher.request()
        time.sleep(0.01)
    assert started.wait(5)
    time.sleep(1.5)
    refresher.request(force=True)
    time.sleep(1.5)
    refresher.stop()
    assert 2 <= len(runs) <= 3, runs
    assert all(b - a >= 0.99 for a, b in zip(runs, runs[1:], strict=False))


def test_kernels_are_culled_when_no_browser_is_connected(monkeypatch):
    from analytics_lib.dashboards.server import CullingKernelManager

    manager = CullingKernelManager(cull_unconnected_after=30, cull_interval=10)
    kernels = {k: SimpleNamespace(execution_state="idle") for k in ("watched", "abandoned", "busy")}
    manager._kernels = kernels
    manager._kernel_connections = {"watched": 1, "abandoned": 0, "busy": 0}
    kernels["busy"].execution_state = "busy"
    stopped: list[str] = []

    async def shutdown(kernel_id, *args, **kwargs):
        stopped.append(kernel_id)

    manager.shutdown_kernel = shutdown
    clock = [1000.0]
    monkeypatch.setattr("analytics_lib.dashboards.server.time.monotonic", lambda: clock[0])

    async def sweep():
        for kid in list(kernels):
            if kid not in stopped:
                await manager.cull_kernel_if_idle(kid)

    for _ in range(4):  # 4 sweeps 10 s apart: the abandoned kernel passes 30 s unconnected
        asyncio.run(sweep())
        clock[0] += 10
    assert stopped == ["abandoned"]


def test_role_servers_listen_on_localhost_with_the_token_only_in_their_environment(tmp_path):
    from analytics_lib.dashboards import serve

    roles = load_roles(ROLES_FILE)
    ops = roles["operations"]
    options = serve.ServeOptions(port_base=9100, cell_timeout=77, cull_after=45, warehouse=str(tmp_path))
    assert serve.plan(roles, ["developer", "operations"], 9100) == [(roles["developer"], 9103), (ops, 9101)]
    args = serve.command(ops, tmp_path, 9101, options)
    text = " ".join(args)
    for expected in ("--Voila.ip=127.0.0.1", "--Voila.port=9101", "--VoilaConfiguration.show_tracebacks=False",
                     "--VoilaExecutor.timeout=77", "--CullingKernelManager.cull_unconnected_after=45.0",
                     "--VoilaConfiguration.template=pa-dashboard", "--VoilaConfiguration.preheat_kernel=True",
                     "--DashboardVoila.role=operations"):
        assert expected in text
    env = serve.environment(ops, "t" * 20, options, {"PAYMENT_ANALYTICS_DASHBOARD_TOKEN_FINANCE": "f" * 20, "PATH": "/bin"})
    assert env[ops.token_variable] == "t" * 20 and "t" * 20 not in text
    assert "PAYMENT_ANALYTICS_DASHBOARD_TOKEN_FINANCE" not in env
    assert env["PAYMENT_ANALYTICS_DASHBOARD_ROLE"] == "operations"
    folder, names = serve.prepare_folder(roles["finance"], tmp_path / "rt")
    assert names == ["finance", "executive"]
    assert sorted(p.name for p in folder.iterdir()) == ["executive.ipynb", "finance.ipynb"]
    with pytest.raises(RoleError, match="set PAYMENT_ANALYTICS_DASHBOARD_TOKEN_OPERATIONS"):
        serve.start(roles, ["operations"], options, environ={})


def test_the_dashboard_template_loads_nothing_from_a_cdn():
    from analytics_lib.dashboards.server import JUPYTER_DATA

    for path in (JUPYTER_DATA / "voila" / "templates" / "pa-dashboard").iterdir():
        assert "http" not in path.read_text(), path


def test_cli_lists_roles_and_refuses_bad_input_in_one_line(monkeypatch):
    from analytics_lib.cli import main

    for key in ("EXECUTIVE", "OPERATIONS", "FINANCE", "DEVELOPER"):
        monkeypatch.delenv(f"PAYMENT_ANALYTICS_DASHBOARD_TOKEN_{key}", raising=False)
    runner = CliRunner()
    listed = runner.invoke(main, ["dashboards", "list", "--widgets"])
    assert listed.exit_code == 0, listed.output
    assert "operations  port 8867  $PAYMENT_ANALYTICS_DASHBOARD_TOKEN_OPERATIONS (NOT SET)" in listed.output
    doc = json.loads(runner.invoke(main, ["dashboards", "list", "--format", "json"]).output)
    assert [r["role"] for r in doc["roles"]] == ["executive", "operations", "finance", "developer"]
    for args, message in ((["--role", "nope"], "unknown role 'nope'"),
                          (["--role", "operations"], "set PAYMENT_ANALYTICS_DASHBOARD_TOKEN_OPERATIONS")):
        result = runner.invoke(main, ["dashboards", "serve", *args])
        assert result.exit_code == 1 and message in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# -- the notebooks ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_dashboard_notebook_executes_without_error(warehouse_path, name, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PAYMENT_ANALYTICS_WAREHOUSE", str(warehouse_path))
    monkeypatch.delenv("PAYMENT_ANALYTICS_DASHBOARD_ROLE", raising=False)
    nb = nbformat.read(PROJECT_ROOT / "notebooks" / "dashboards" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert not any("Traceback" in str(o.get("text", "")) for o in outputs)
