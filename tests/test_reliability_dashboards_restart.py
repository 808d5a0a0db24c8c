"""The dashboards server stopped and started again mid-session (issue 9): ``payment-analytics
dashboards serve --role operations`` on a free 127.0.0.1 port, a real browser (Debian chromium
through playwright) showing the live dashboard; the server is stopped with SIGTERM while the page
is open, and started again on the same port with the same token.

Checked: stopping leaves no kernel process behind (every kernel seen while serving is gone); the
open page says it lost its server without a traceback; the same browser tab reloaded reconnects and
shows live numbers again; the new server holds only its preheated kernel plus the reconnected
page's kernel (no stale kernel of the old session is adopted or restarted). Every process is
stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics_lib.config import PROJECT_ROOT
from tests.test_dashboards_browser import (  # noqa: F401 - chromium and context are fixtures
    KPI,
    _free_port_base,
    _open,
    _stop_pids,
    chromium,
    context,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def start_server(warehouse: Path, runtime: Path, port: int, token: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMENT_ANALYTICS_DASHBOARD_")}
    env["PAYMENT_ANALYTICS_DASHBOARD_TOKEN_OPERATIONS"] = token
    runtime.mkdir(parents=True, exist_ok=True)
    log = runtime / "serve.out"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "analytics_lib.cli", "--warehouse", str(warehouse), "dashboards", "serve",
             "--role", "operations", "--port-base", str(port), "--runtime-dir", str(runtime), "--cull-after", "20",
             "--pool-size", "1", "--cell-timeout", "180"],
            env=env, cwd=str(PROJECT_ROOT), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while "Ctrl-C stops every server" not in log.read_text():
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "the dashboard server did not start in 240 s"
        time.sleep(0.5)
    return process


def kernels(process: subprocess.Popen) -> set[int]:
    import psutil

    found = set()
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return found
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "ipykernel_launcher" in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def settled(process: subprocess.Popen, at_least: int, timeout: float = 180) -> set[int]:
    """The kernel set once it has at least ``at_least`` kernels and has not changed for 4 s."""
    deadline = time.monotonic() + timeout
    last, since = kernels(process), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = kernels(process)
        if now != last:
            last, since = now, time.monotonic()
        elif len(now) >= at_least and time.monotonic() - since >= 4:
            return now
    return last


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def warehouse_dir(tmp_path_factory) -> Path:
    from datetime import UTC, datetime, timedelta

    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    root = tmp_path_factory.mktemp("dash-restart") / "warehouse"
    generate(Warehouse(root), customers=300, months=2, seed=5, end=datetime.now(UTC).date() - timedelta(days=1))
    return root


def test_a_dashboards_server_restarted_mid_session_leaves_no_kernel_and_the_page_reconnects(
        warehouse_dir, context, tmp_path):  # noqa: F811 - the imported fixture
    import psutil

    port = _free_port_base(4)  # operations listens on port-base + 1 (its place in roles.yaml)
    token = secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port + 1}/voila/render/operations.ipynb?token={token}"
    first = start_server(warehouse_dir, tmp_path / "run1", port, token)
    second = None
    try:
        settled(first, 1)
        page, _ = _open(context, url)
        assert page.locator(KPI).first.inner_text().strip()
        before = settled(first, 2)  # the page's kernel and the refilled pool
        assert len(before) >= 2, before
        everything = [c.pid for c in psutil.Process(first.pid).children(recursive=True)]
        # stop mid-session, the page still open
        started = time.monotonic()
        _stop_pids([first.pid], grace=45)
        stop_s = time.monotonic() - started
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in before) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in before if alive(pid)], "kernels outlived their server"
        assert not [pid for pid in everything if alive(pid)], "processes of the server outlived it"
        page.wait_for_timeout(3000)
        text = page.inner_text("body")
        assert "Traceback" not in text
        # start again on the same port; the same tab reloads and is live again
        second = start_server(warehouse_dir, tmp_path / "run2", port, token)
        settled(second, 1)
        started = time.monotonic()
        page.reload(wait_until="commit")
        page.wait_for_selector(KPI, timeout=180_000)
        reconnect_s = time.monotonic() - started
        assert page.locator(KPI).first.inner_text().strip()
        after = settled(second, 2)
        assert not (after & before)
        assert len(after) == len(before), (before, after)  # one page, one pool kernel: nothing stale
        assert "Traceback" not in page.inner_text("body")
        print(f"\nrestart: stopped in {stop_s:.1f} s, {len(before)} kernels before and after, "
              f"page live again {reconnect_s:.1f} s after reload; load {os.getloadavg()}")
    finally:
        leftovers = []
        for proc in (first, second):
            if proc is None:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                leftovers += [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            _stop_pids([proc.pid], grace=45)
        _stop_pids(leftovers, grace=10)
