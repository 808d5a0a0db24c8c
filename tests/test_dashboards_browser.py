"""The dashboards in a real browser: ``payment-analytics dashboards serve`` (one Voila process per
role) on free 127.0.0.1 ports over a small fixture warehouse, Debian's chromium driven by
playwright (never ``playwright install``), new payments appended while a page is open.

Checked: every role's dashboards render their KPIs and charts with no request leaving
127.0.0.1; the live counters follow new payments (while the warehouse is compacted); a filter
changes the chart; another role's token is refused on pages, the kernel API and the kernel
websocket; no browser can run code (no kernel API, execute requests dropped); exports
download; closed pages do not leak kernels. Screenshots and timings go to test-artifacts/.
Every process the tests start is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics_lib.config import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "dashboards"
ROLES = ("executive", "operations", "finance", "developer")
PAGES = [("executive", "executive"), ("operations", "operations"), ("finance", "finance"),
         ("finance", "executive"), ("developer", "developer"), ("developer", "operations")]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
CULL_AFTER = 20
KPI = "[data-kpi] .pa-value"
TIMINGS: dict[str, object] = {}


def _free_port_base(count: int = len(ROLES)) -> int:
    for _ in range(200):
        base = 20000 + secrets.randbelow(30000)
        ok = True
        for port in range(base, base + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


def _stop_pids(pids: list[int], grace: float = 30.0) -> None:
    """SIGTERM each PID, wait, SIGKILL what is left (only processes this module started)."""
    import psutil

    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


# -- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warehouse_dir(tmp_path_factory) -> Path:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    root = tmp_path_factory.mktemp("dash-browser") / "warehouse"
    # data up to the end of yesterday: nothing dated in the future enters the live window by itself
    generate(Warehouse(root), customers=600, months=3, seed=5, end=datetime.now(UTC).date() - timedelta(days=1))
    return root


class Servers:
    def __init__(self, process: subprocess.Popen, base: int, tokens: dict[str, str], runtime: Path):
        self.process = process
        self.base = base
        self.tokens = tokens
        self.runtime = runtime

    def port(self, role: str) -> int:
        return self.base + ROLES.index(role)

    def url(self, role: str, dashboard: str, token: str | None = None) -> str:
        query = f"?token={token or self.tokens[role]}" if token != "" else ""
        return f"http://127.0.0.1:{self.port(role)}/voila/render/{dashboard}.ipynb{query}"

    def voila_process(self, role: str):  # type: ignore[no-untyped-def]
        import psutil

        for child in psutil.Process(self.process.pid).children():
            if f"--DashboardVoila.role={role}" in " ".join(child.cmdline()):
                return child
        raise AssertionError(f"no {role} server process")

    def kernels(self, role: str) -> int:
        """Live kernel processes of the role's server (exited ones not yet reaped do not count)."""
        import psutil

        count = 0
        for child in self.voila_process(role).children(recursive=True):
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "ipykernel_launcher" in " ".join(child.cmdline()):
                    count += 1
            except psutil.Error:
                continue
        return count

    def settled_kernels(self, role: str, timeout: float = 60.0) -> int:
        """The kernel count once it has not changed for 4 s (the preheated pool refills)."""
        deadline = time.monotonic() + timeout
        last, since = self.kernels(role), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.kernels(role)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= 4:
                return now
        return last


@pytest.fixture(scope="module")
def servers(warehouse_dir, tmp_path_factory) -> Iterator[Servers]:
    import psutil

    runtime = tmp_path_factory.mktemp("dash-runtime")
    tokens = {role: secrets.token_urlsafe(24) for role in ROLES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMENT_ANALYTICS_DASHBOARD_")}
    env.update({f"PAYMENT_ANALYTICS_DASHBOARD_TOKEN_{r.upper()}": t for r, t in tokens.items()})
    base = _free_port_base()
    log = open(runtime / "serve.out", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "analytics_lib.cli", "--warehouse", str(warehouse_dir), "dashboards", "serve",
         "--port-base", str(base), "--runtime-dir", str(runtime), "--cull-after", str(CULL_AFTER),
         "--pool-size", "1", "--cell-timeout", "180"],
        env=env, cwd=str(PROJECT_ROOT), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C stops every server" not in (runtime / "serve.out").read_text():
            assert process.poll() is None, (runtime / "serve.out").read_text()[-2000:]
            assert time.monotonic() < deadline, "the dashboard servers did not start in 240 s"
            time.sleep(0.5)
        servers = Servers(process, base, tokens, runtime)
        # a warm server: every dashboard's preheated kernel is ready before the first page opens
        for role, dashboards in (("executive", 1), ("operations", 1), ("finance", 2), ("developer", 2)):
            while servers.settled_kernels(role) < dashboards:
                assert time.monotonic() < deadline + 240, f"the {role} kernels were not preheated in time"
        yield servers
    finally:
        try:
            started = [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            started = []
        _stop_pids([process.pid], grace=45)
        _stop_pids(started, grace=10)  # anything the serve command left behind
        log.close()
        for path in runtime.glob("*.log"):  # keep the server logs with the other artefacts
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, ARTIFACTS / path.name)
        (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2, default=str))


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p.chromium


@pytest.fixture
def context(chromium) -> Iterator[object]:
    """A fresh profile; every request that leaves 127.0.0.1 is recorded and refused."""
    profile = tempfile.mkdtemp(prefix="pa-dash-browser-")
    ctx = chromium.launch_persistent_context(profile, executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             headless=True, args=CHROMIUM_FLAGS,
                                             viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    ctx.external = []  # type: ignore[attr-defined]
    ctx.errors = []  # type: ignore[attr-defined]

    def route(r):  # type: ignore[no-untyped-def]
        url = r.request.url
        if url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:", "about:")):
            r.continue_()
        else:
            ctx.external.append(url)  # type: ignore[attr-defined]
            r.abort()

    ctx.route("**/*", route)
    try:
        yield ctx
    finally:
        ctx.close()
        shutil.rmtree(profile, ignore_errors=True)


def _open(context, url: str, timeout_s: float = 120):  # type: ignore[no-untyped-def]
    page = context.new_page()
    page.on("console", lambda m: context.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: context.errors.append(str(e)))
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector(KPI, timeout=timeout_s * 1000)
    return page, time.perf_counter() - started


def _kpi(page, key: str) -> str:  # type: ignore[no-untyped-def]
    return page.locator(f'[data-kpi="{key}"] .pa-value').first.inner_text()


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def _screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("document.body.scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(1000, int(height) + 40), 6000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _charts_drawn(page, timeout_s: float = 60) -> int:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "() => { const c = [...document.querySelectorAll('.pa-chart-out')].filter(e => e.offsetParent !== null);"
        " return c.length > 0 && c.every(e => e.querySelector('.main-svg')); }", timeout=timeout_s * 1000)
    return page.locator(".pa-chart-out .main-svg >> nth=0").count()


def _append_payments(warehouse_dir: Path, n: int, at: datetime, method: str | None = None) -> list[str]:
    """``n`` completed USD payments created at ``at``: copies of the latest completed one."""
    from analytics_lib.warehouse import Warehouse

    wh = Warehouse(warehouse_dir)
    with wh.snapshot(tables=["transactions"]) as snap:
        row = snap.arrow("SELECT * FROM transactions WHERE status = 'completed' ORDER BY created_at DESC LIMIT 1"
                         ).to_pylist()[0]
    rows, ids = [], []
    for i in range(n):
        created = at + timedelta(milliseconds=i)
        ids.append(f"browser-{uuid.uuid4().hex[:12]}")
        rows.append(row | {"transaction_id": ids[-1], "created_at": created, "completed_at": created + timedelta(seconds=1),
                           "failed_at": None, "failure_reason": None, "status": "completed",
                           "outcome_type": "authorized", "attempt_number": 1, "original_transaction_id": None,
                           "billing_reason": "purchase", "created_month": f"{created:%Y-%m}",
                           # in the reporting currency: the fixture has no FX rate for today (a missing
                           # rate is refused by the metric layer, and the page would say so)
                           "currency": "USD",
                           **({"payment_method": method} if method else {})})
    wh.upsert("transactions", rows)
    return ids


# -- every dashboard renders -------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "dashboard"), PAGES, ids=[f"{r}-{d}" for r, d in PAGES])
def test_each_roles_dashboards_render_offline(servers, context, role, dashboard):
    page, first_kpi = _open(context, servers.url(role, dashboard))
    charts = _charts_drawn(page)
    TIMINGS[f"first_kpi_s.{role}.{dashboard}"] = round(first_kpi, 2)
    assert charts > 0
    text = page.inner_text("body")
    assert "Traceback" not in text and "Could not refresh" not in text and "cannot start" not in text
    _screenshot(page, f"{role}-{dashboard}")
    assert context.external == [], context.external  # nothing from a CDN (Font Awesome, mermaid, maps)
    assert not [e for e in context.errors if "favicon" not in e], context.errors


# -- live -----------------------------------------------------------------------------------------------------


def _simulator_available() -> bool:
    try:
        import analytics_lib.live.simulate  # noqa: F401 - the data side's live simulator
    except ImportError:
        return False
    return True


def test_live_counters_follow_new_payments_during_compaction(servers, context, warehouse_dir, tmp_path):
    """The live simulator (``payment-analytics simulate --live``) appends payments; the warehouse
    is compacted meanwhile; the counter must grow and no refresh may show an error."""
    from analytics_lib.warehouse import Warehouse

    page, _ = _open(context, servers.url("operations", "operations"))
    page.locator(".widget-dropdown", has_text="Refresh").locator("select").select_option(label="every 2 s")
    before = _count(_kpi(page, "transactions"))
    errors: list[str] = []
    feed: subprocess.Popen | None = None
    stop = threading.Event()
    if _simulator_available():
        log = open(tmp_path / "simulate.out", "w")  # noqa: SIM115 - closed below
        feed = subprocess.Popen(
            [sys.executable, "-m", "analytics_lib.cli", "--warehouse", str(warehouse_dir), "simulate", "--live",
             "--rate", "4", "--batch-seconds", "1", "--duration", "120", "--seed", "5"],
            cwd=str(PROJECT_ROOT), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    else:  # the data side's simulator is not installed: append payments here
        def append() -> None:
            while not stop.is_set():
                _append_payments(warehouse_dir, 2, datetime.now(UTC) - timedelta(seconds=1))
                time.sleep(1)

        threading.Thread(target=append, daemon=True).start()

    def compact() -> None:  # compaction while the feed writes and the page reads
        time.sleep(6)
        try:
            Warehouse(warehouse_dir).compact()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))

    compactor = threading.Thread(target=compact, daemon=True)
    compactor.start()
    seen_errors = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (_count(_kpi(page, "transactions")) < before + 10 or compactor.is_alive()):
            message = page.locator(".pa-message.bad")
            if message.count():
                seen_errors.append(message.first.inner_text())
            page.wait_for_timeout(250)
    finally:
        stop.set()
        if feed is not None:
            _stop_pids([feed.pid], grace=30)
            log.close()
    compactor.join(60)
    assert not errors, errors
    assert _count(_kpi(page, "transactions")) >= before + 10, "the live counter did not follow the new payments"
    assert not seen_errors, seen_errors  # ingestion and compaction never show an error
    _screenshot(page, "operations-live")
    # payment-to-screen latency: one more payment, timed from its commit to the counter
    page.wait_for_timeout(3000)
    shown = _count(_kpi(page, "transactions"))
    _append_payments(warehouse_dir, 1, datetime.now(UTC) - timedelta(seconds=1))
    committed = time.perf_counter()
    page.wait_for_function(f"() => parseInt(document.querySelector('[data-kpi=\"transactions\"] .pa-value')"
                           f".innerText.replace(/,/g, '')) > {shown}", timeout=30_000)
    TIMINGS["payment_to_screen_s (refresh every 2 s)"] = round(time.perf_counter() - committed, 2)
    TIMINGS["live_feed"] = "payment-analytics simulate --live" if feed is not None else "test appender"


def test_a_filter_changes_the_chart(servers, context, warehouse_dir):
    for method in ("card", "paypal"):  # two methods in the live window, whatever ran before
        _append_payments(warehouse_dir, 2, datetime.now(UTC) - timedelta(minutes=2), method=method)
    page, _ = _open(context, servers.url("operations", "operations"))
    _charts_drawn(page)
    bars = page.locator(".pa-tile-methods g.point")
    page.wait_for_function("() => document.querySelectorAll('.pa-tile-methods g.point').length >= 2", timeout=30_000)
    total = _count(_kpi(page, "transactions"))
    page.locator(".widget-dropdown", has_text="Method").locator("select").select_option(label="card")
    page.wait_for_function("() => document.querySelectorAll('.pa-tile-methods g.point').length === 1", timeout=30_000)
    assert bars.count() == 1
    page.wait_for_function(f"() => parseInt(document.querySelector('[data-kpi=\"transactions\"] .pa-value')"
                           f".innerText.replace(/,/g, '')) < {total}", timeout=30_000)
    _screenshot(page, "operations-filtered-card")
    # a period dashboard: amounts follow the currency filter (euro ticks on the revenue chart)
    page, _ = _open(context, servers.url("executive", "executive"))
    _charts_drawn(page)
    page.locator(".widget-dropdown", has_text="Currency").locator("select").select_option(label="EUR")
    page.wait_for_function("() => [...document.querySelectorAll('.pa-tile-revenue_trend .ytick text')]"
                           ".some(t => t.textContent.includes('€'))", timeout=60_000)
    assert _kpi(page, "gross_revenue").startswith("€")
    _screenshot(page, "executive-in-eur")


# -- access -----------------------------------------------------------------------------------------------------


def _status(url: str, token: str | None = None, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"token {token}")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _in_thread(coroutine_function):  # type: ignore[no-untyped-def]
    """Run a coroutine on its own thread (playwright's sync API keeps an event loop on this one)."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coroutine_function())))
    thread.start()
    thread.join(60)
    assert result, "the websocket probe did not finish"
    return result[0]


def _ws_status(url: str) -> int | str:
    from tornado.httpclient import HTTPClientError
    from tornado.websocket import websocket_connect

    async def connect() -> int | str:
        try:
            conn = await websocket_connect(url)
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return "open"

    return _in_thread(connect)  # type: ignore[return-value]


def test_another_roles_token_is_refused(servers, context):
    ops = servers.tokens["operations"]
    dev_port = servers.port("developer")
    # pages: the developer server sends the operations token to its login page
    page = context.new_page()
    page.goto(servers.url("developer", "developer", token=ops))
    assert "/login" in page.url
    assert page.locator(KPI).count() == 0
    _screenshot(page, "developer-refused-operations-token")
    assert _status(f"http://127.0.0.1:{dev_port}/voila/render/developer.ipynb", ops) in (302, 403)
    assert _status(f"http://127.0.0.1:{dev_port}/voila/render/developer.ipynb", servers.tokens["developer"]) == 200
    # a dashboard of another role is not even in this role's folder
    assert _status(f"http://127.0.0.1:{servers.port('operations')}/voila/render/finance.ipynb", ops) == 404
    # the kernel API and websocket of a developer page refuse the operations token
    own, _ = _open(context, servers.url("developer", "developer"))
    kernel = own.evaluate("JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
    assert _status(f"http://127.0.0.1:{dev_port}/api/kernels/{kernel}", ops) == 403
    assert _ws_status(f"ws://127.0.0.1:{dev_port}/api/kernels/{kernel}/channels?token={ops}") == 403
    assert _status(f"http://127.0.0.1:{dev_port}/api/kernels/{kernel}", servers.tokens["developer"]) == 200


def test_no_browser_can_run_code(servers, context, tmp_path):
    token = servers.tokens["operations"]
    port = servers.port("operations")
    for path, method in (("/api/kernels", "GET"), ("/api/kernels", "POST"), ("/api/sessions", "GET"),
                         ("/api/contents", "GET"), ("/voila/api/contents", "GET"), ("/voila/tree", "GET"),
                         ("/voila/files/operations.ipynb", "GET"), ("/api/terminals", "POST")):
        assert _status(f"http://127.0.0.1:{port}{path}", token, method) in (403, 404, 405), path
    page, _ = _open(context, servers.url("operations", "operations"))
    kernel = page.evaluate("JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
    marker = tmp_path / "executed"
    from tornado.websocket import websocket_connect

    def message(msg_type: str, content: dict) -> str:
        header = {"msg_id": uuid.uuid4().hex, "username": "test", "session": uuid.uuid4().hex, "msg_type": msg_type,
                  "version": "5.3", "date": datetime.now(UTC).isoformat()}
        return json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                           "channel": "shell", "buffers": []})

    async def probe() -> list[str]:
        conn = await websocket_connect(f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}")
        conn.write_message(message("execute_request", {
            "code": f"open({str(marker)!r}, 'w').write('ran')", "silent": False, "store_history": False,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}))
        conn.write_message(message("kernel_info_request", {}))  # allowed: proves the channel works
        seen: list[str] = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(conn.read_message(), timeout=1)
            except TimeoutError:
                continue
            if raw is None:
                break
            if isinstance(raw, str):
                seen.append(json.loads(raw).get("header", {}).get("msg_type", ""))
        conn.close()
        return seen

    seen = _in_thread(probe)
    assert "kernel_info_reply" in seen
    assert "execute_reply" not in seen and "execute_input" not in seen
    assert not marker.exists(), "a browser ran code in a dashboard kernel"


def test_tokens_reach_neither_command_lines_nor_kernels(servers):
    """A token is in its own server's environment only: not on any command line (``ps`` shows
    those to every user) and not in any kernel the dashboards run."""
    import psutil

    tokens = set(servers.tokens.values())
    for role in ROLES:
        server = servers.voila_process(role)
        assert not tokens & set(server.cmdline())
        kernels = [k for k in server.children(recursive=True) if "ipykernel_launcher" in " ".join(k.cmdline())]
        assert kernels, f"no {role} kernel to check"
        for kernel in kernels:
            try:
                env = kernel.environ()
            except psutil.Error:
                continue
            assert not [k for k in env if k.startswith("PAYMENT_ANALYTICS_DASHBOARD_TOKEN")], f"{role} kernel"
            assert not tokens & set(env.values())
            assert env.get("PAYMENT_ANALYTICS_DASHBOARD_ROLE") == role


# -- exports -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "dashboard", "fmt", "magic"), [
    ("operations", "operations", "CSV", b"PK"), ("finance", "finance", "PDF", b"%PDF")])
def test_exports_download(servers, context, tmp_path, role, dashboard, fmt, magic):
    page, _ = _open(context, servers.url(role, dashboard))
    _charts_drawn(page)
    page.locator(".widget-dropdown", has_text="Export").locator("select").select_option(label=fmt)
    page.get_by_role("button", name="Prepare download").click()
    link = page.locator("a.pa-download")
    link.wait_for(timeout=180_000)
    with page.expect_download(timeout=60_000) as info:
        link.click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    assert target.read_bytes().startswith(magic)
    assert target.name.startswith(f"{dashboard}-")


def test_developer_has_no_pdf_export(servers, context):
    page, _ = _open(context, servers.url("developer", "developer"))
    options = page.locator(".widget-dropdown", has_text="Export").locator("option").all_inner_texts()
    assert options == ["CSV", "JSON"]
    page, _ = _open(context, servers.url("executive", "executive"))
    assert page.locator(".widget-dropdown", has_text="Export").locator("option").all_inner_texts() == ["PDF", "XLSX"]


# -- kernels ------------------------------------------------------------------------------------------------------


def test_closed_pages_do_not_leak_kernels(servers, context):
    # the operations server's preheated kernel only (pages of earlier tests closed without a
    # beacon are culled first)
    baseline = 1
    deadline = time.monotonic() + CULL_AFTER + 60
    while servers.settled_kernels("operations") != baseline:
        assert time.monotonic() < deadline, f"{servers.kernels('operations')} kernels, expected {baseline}"
    # a tab closed normally: the close beacon shuts the kernel down at once
    for _ in range(3):
        page, _ = _open(context, servers.url("operations", "operations"))
        page.close(run_before_unload=True)
    started = time.monotonic()
    assert servers.settled_kernels("operations") == baseline
    TIMINGS["kernels_back_to_pool_after_3_closed_tabs_s"] = round(time.monotonic() - started, 1)
    # a browser that vanished (no beacon): culled once no browser was connected for CULL_AFTER s
    page, _ = _open(context, servers.url("operations", "operations"))
    context.close()
    started = time.monotonic()
    deadline = started + CULL_AFTER + 60
    while time.monotonic() < deadline and servers.kernels("operations") > baseline:
        time.sleep(1)
    assert servers.settled_kernels("operations") == baseline
    TIMINGS["vanished_browser_kernel_culled_after_s"] = round(time.monotonic() - started, 1)
