"""Concurrency with N viewers (issue 9): N dashboard viewers refresh over and over (the dashboards'
own refresh code, one Dashboard object per viewer as each viewer's kernel holds it, in N threads
of one process: DuckDB and Delta reads release the GIL) and a scheduled report runs
(``schedule run-due`` in its own process, a real notebook), all reading while three writers
write the same warehouse: the live simulator (its own process), ingests of platform JSON files
that add payments and update the previous file's ones (``payment-analytics ingest`` processes) and
compaction (``payment-analytics maintain`` in a loop).

Every refresh must succeed (no error shown on the dashboard), and every snapshot a viewer showed
must be internally consistent: net = gross - refunds - chargebacks - fees on the finance view;
the operations KPIs equal the sums of their own hourly table; and, reopened at the exact table
versions the view recorded, no payment appears twice and no fee/refund/dispute lacks its payment.
The test prints N, the duration, refreshes per dashboard, the writers' work and the errors."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.warehouse import Warehouse
from tests.conftest import payment, write_jsonl

CHILDREN = ("fees", "refunds", "disputes")
DASHBOARD_CYCLE = ("operations", "finance", "executive", "developer")
MIN_REFRESHES = 3
MAX_SECONDS = 150


def cli(location: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "analytics_lib.cli", "--warehouse", str(location), *args]


def check_view(name: str, view, wh: Warehouse) -> None:
    """The consistency a viewer relies on, for one refresh."""
    if name == "finance":
        s = view.summary
        assert s["net_revenue"] == pytest.approx(s["gross_revenue"] - s["refunds"] - s["chargebacks"] - s["fees"],
                                                 abs=1e-6), s
    if name == "operations":
        kpis = dict(view.panels["kpis"].kpis)
        assert kpis["transactions"].value == view.data["hourly"]["transactions"].sum()
    versions = view.meta["warehouse_versions"]
    tables = [t for t in ("transactions", *CHILDREN) if t in versions]
    with wh.snapshot(as_of={t: versions[t] for t in tables}, tables=tables) as snap:
        dupes = snap.scalar("SELECT count(*) - count(DISTINCT transaction_id) FROM transactions")
        assert dupes == 0, f"{dupes} payments twice at versions {versions}"
        for table in CHILDREN:
            if table in tables:
                orphans = snap.scalar(f'SELECT count(*) FROM "{table}" c WHERE NOT EXISTS '
                                      "(SELECT 1 FROM transactions t WHERE t.transaction_id = c.transaction_id)")
                assert orphans == 0, f"{orphans} {table} rows without their payment at versions {versions}"


def run_viewers(n: int, seconds: float, location: Path, tmp_path: Path) -> dict:
    from analytics_lib.dashboards import open_dashboard
    from analytics_lib.dashboards.widgets import Dashboard

    wh = Warehouse(location)
    roles_file = str(PROJECT_ROOT / "parameters" / "dashboards" / "roles.yaml")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stop = threading.Event()
    errors: list[str] = []
    refreshes: Counter[str] = Counter()
    lock = threading.Lock()
    # -- writers -----------------------------------------------------------------------------------
    simulator = subprocess.Popen(cli(location, "simulate", "--live", "--rate", "20", "--batch-seconds", "0.5",
                                     "--seed", "9", "--lifecycle-speedup", "500000"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    writes: dict[str, list[subprocess.CompletedProcess]] = {"maintain": [], "ingest": []}

    def compact_loop() -> None:
        while not stop.is_set():
            writes["maintain"].append(subprocess.run(cli(location, "maintain"), capture_output=True, text=True,
                                                     env=env, timeout=300))
            stop.wait(0.5)

    def ingest_loop() -> None:
        batch, previous = 0, []
        while not stop.is_set():
            now = datetime.now(UTC)
            fresh = [payment(f"pay_conc_{batch}_{i}", userId=f"user_conc_{i}", amount=10.0 + i,
                             createdAt=(now - timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                             completedAt=(now - timedelta(minutes=i) + timedelta(seconds=1)).isoformat()
                             .replace("+00:00", "Z")) for i in range(25)]
            updated = [dict(p, status="refunded") for p in previous[:10]]  # the same ids again, changed
            path = write_jsonl(tmp_path / f"batch-{batch}.jsonl", fresh + updated)
            writes["ingest"].append(subprocess.run(cli(location, "ingest", "--source", "platform-json", str(path)),
                                                   capture_output=True, text=True, env=env, timeout=300))
            previous, batch = fresh, batch + 1
            stop.wait(0.5)

    # -- the scheduled report ----------------------------------------------------------------------
    sched = tmp_path / "scheduling"
    sched.mkdir()
    (sched / "schedules.yaml").write_text(
        "jobs:\n  daily_operations:\n    notebook: daily_operations\n    cron: '* * * * *'\n    timezone: UTC\n"
        "    formats: [html]\n    retries: 0\n    timeout: 600\n")
    (sched / "audiences.yaml").write_text("audiences: {}\n")
    report_env = {**env, "PAYMENT_ANALYTICS_OUTPUTS": str(tmp_path / "outputs"),
                  "PAYMENT_ANALYTICS_SCHEDULER_STATE": str(tmp_path / "state")}

    def viewer(k: int) -> None:
        name = DASHBOARD_CYCLE[k % len(DASHBOARD_CYCLE)]
        try:
            board = open_dashboard(name, warehouse=str(location), roles_file=roles_file,
                                   clock=lambda: datetime.now(UTC))
            assert isinstance(board, Dashboard), getattr(board, "text", board)
        except Exception as exc:  # noqa: BLE001 - collected and reported
            with lock:
                errors.append(f"viewer {k} ({name}) could not open: {exc!r}")
            return
        while not stop.is_set():
            try:
                view = board.refresh()
                assert board.error is None, board.error
                check_view(name, view, wh)
                with lock:
                    refreshes[name] += 1
            except Exception as exc:  # noqa: BLE001 - collected and reported
                with lock:
                    errors.append(f"viewer {k} ({name}): {exc!r}"[:500])

    writers = [threading.Thread(target=compact_loop, daemon=True), threading.Thread(target=ingest_loop, daemon=True)]
    viewers = [threading.Thread(target=viewer, args=(k,), daemon=True) for k in range(n)]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    report = None
    try:
        for t in writers:
            t.start()
        for t in viewers:
            t.start()
        report = subprocess.Popen(cli(location, "schedule", "--schedules", str(sched / "schedules.yaml"),
                                      "--audiences", str(sched / "audiences.yaml"), "run-due"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=report_env,
                                  cwd=PROJECT_ROOT)
        report_out = report.communicate(timeout=600)
        # the readers keep going for at least `seconds`, until the report is done, and until every
        # dashboard refreshed MIN_REFRESHES times (at most MAX_SECONDS: a loaded machine is slow)
        while time.monotonic() - started < seconds or (
                min((refreshes[d] for d in DASHBOARD_CYCLE[:n]), default=0) < MIN_REFRESHES
                and time.monotonic() - started < MAX_SECONDS and not errors):
            time.sleep(0.5)
    finally:
        stop.set()
        for t in viewers:
            t.join(timeout=300)
        simulator.send_signal(signal.SIGTERM)
        try:
            sim_out, sim_err = simulator.communicate(timeout=120)
        finally:
            if simulator.poll() is None:
                simulator.kill()
        for t in writers:
            t.join(timeout=300)
        if report is not None and report.poll() is None:
            report.kill()
    duration = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    return {"viewers": n, "duration_s": round(duration, 1), "refreshes": dict(refreshes),
            "errors": errors, "report": (report.returncode, *report_out), "simulator": (simulator.returncode, sim_err),
            "maintain": writes["maintain"], "ingest": writes["ingest"],
            "viewer_process_cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime
                                          - cpu_before.ru_utime - cpu_before.ru_stime, 1),
            "load": os.getloadavg()}


@pytest.mark.slow
@pytest.mark.parametrize("n, seconds", [(8, 60)])
def test_n_viewers_and_a_scheduled_report_read_while_simulator_ingest_and_compaction_write(tmp_path, n, seconds):
    from analytics_lib.synth import generate

    location = tmp_path / "warehouse"
    generate(Warehouse(location), customers=400, months=3, seed=13, end=datetime.now(UTC).date())
    result = run_viewers(n, seconds, location, tmp_path)
    summary = {k: v for k, v in result.items() if k not in ("maintain", "ingest", "report", "simulator")}
    summary |= {"maintain_runs": len(result["maintain"]), "ingest_runs": len(result["ingest"]),
                "errors": len(result["errors"])}
    print("\nconcurrency:", json.dumps(summary, default=str))
    assert result["errors"] == [], result["errors"][:5]
    code, out, err = result["report"]
    assert code == 0, (out, err)
    assert "daily_operations: succeeded" in out + err
    [run] = [json.loads(p.read_text()) for p in (tmp_path / "outputs").glob("daily_operations/*/*/run.json")]
    assert run["status"] == "succeeded"
    assert result["simulator"][0] == 0, result["simulator"][1]
    assert result["maintain"] and all(c.returncode == 0 for c in result["maintain"]), \
        [c.stderr for c in result["maintain"] if c.returncode]
    assert len(result["ingest"]) >= 2 and all(c.returncode == 0 for c in result["ingest"]), \
        [c.stderr for c in result["ingest"] if c.returncode]
    # every viewer refreshed, several times
    assert set(result["refreshes"]) == set(DASHBOARD_CYCLE[:n])
    assert all(count >= MIN_REFRESHES for count in result["refreshes"].values()), result["refreshes"]
    # what the writers wrote is there once
    wh = Warehouse(location)
    with wh.snapshot(tables=["transactions"]) as snap:
        assert snap.scalar("SELECT count(*) - count(DISTINCT transaction_id) FROM transactions") == 0
        assert snap.scalar("SELECT count(*) FROM transactions WHERE transaction_id LIKE 'txn_live%'") > 0
        ingested = snap.scalar("SELECT count(*) FROM transactions WHERE transaction_id LIKE '%pay_conc_%'")
    assert ingested == 25 * len(result["ingest"])
