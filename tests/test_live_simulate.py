"""The live simulator: appends payments that move the counts, keeps every child with its parent,
replays the lifecycle (settlement, refunds, disputes, reviews), validates its options, and the
``simulate --live`` command stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from analytics_lib.cli import main
from analytics_lib.live.simulate import (
    LiveSimulator,
    SimulationError,
    SimulationOptions,
    load_templates,
    parse_rate,
)
from analytics_lib.metrics import MetricSession, realtime
from analytics_lib.synth import generate
from analytics_lib.warehouse import Warehouse

CHILDREN = ("fees", "refunds", "disputes", "fraud_alerts", "checkout_events")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A small demo warehouse whose history ends today (built once per module)."""
    path = tmp_path_factory.mktemp("live") / "demo"
    generate(Warehouse(path), customers=400, months=5, seed=7, end=datetime.now(UTC).date())
    return path


@pytest.fixture
def wh(demo, tmp_path) -> Warehouse:
    copy = tmp_path / "warehouse"
    shutil.copytree(demo, copy)
    return Warehouse(copy)


def orphans(snap) -> dict[str, int]:
    """Children whose payment the same snapshot cannot see (must always be zero)."""
    out = {}
    for table in CHILDREN:
        out[table] = int(snap.scalar(
            f'SELECT count(*) FROM "{table}" c WHERE c.transaction_id IS NOT NULL AND NOT EXISTS '
            "(SELECT 1 FROM transactions t WHERE t.transaction_id = c.transaction_id)"))
    return out


def test_steps_append_payments_that_move_the_counts(wh):
    start = datetime.now(UTC).replace(microsecond=0)
    with wh.snapshot() as snap:
        before = snap.count("transactions")
    sim = LiveSimulator(wh, SimulationOptions(rate=20, seed=1))
    sim.prepare(start)
    results = [sim.step(start + timedelta(seconds=4 * k)) for k in range(1, 16)]  # one simulated minute
    sim.step(start + timedelta(seconds=62), flush=True)
    sim.record(finished=True)
    payments = sim.summary.payments
    assert 1000 <= payments <= 1400  # 20 per second for 60 s (Poisson)
    assert all(r.rows.get("transactions", 0) >= r.payments for r in results)
    with wh.snapshot() as snap:
        assert snap.count("transactions") == before + payments
        live = snap.sql("SELECT * FROM transactions WHERE transaction_id LIKE 'txn_live%'")
        assert len(live) == payments and live.transaction_id.is_unique
        assert live.created_at.min() >= start - timedelta(minutes=5)  # retries of a session follow it
        assert live.created_at.max() <= start + timedelta(seconds=62)
        assert (live.created_month == live.created_at.dt.strftime("%Y-%m")).all()
        assert orphans(snap) == dict.fromkeys(CHILDREN, 0)
        assert snap.scalar("SELECT count(*) - count(DISTINCT transaction_id) FROM transactions") == 0
        # a realistic mix: mostly successful card payments in several countries and currencies
        assert 0.75 <= (live.status == "completed").mean() <= 0.97
        assert live.country_code.nunique() >= 4 and live.currency.nunique() >= 2
        assert snap.scalar("SELECT count(*) FROM fees WHERE fee_id LIKE 'fee_live%'") > payments
        assert snap.scalar("SELECT count(*) FROM checkout_events WHERE event_id LIKE 'chk_live%'") > payments
        # today's FX rates exist, so the metric layer can convert live payments
        assert snap.scalar("SELECT count(*) FROM fx_rates WHERE rate_date = ?", [start.date()]) >= 3
        record = snap.sql("SELECT * FROM ingest_batches WHERE source = 'live-simulator'")
        assert len(record) == 1 and record.inserted[0] >= payments
    with MetricSession.open(wh) as session:
        window = realtime(session, now=start + timedelta(seconds=63), hours=1, currency="USD")
    with wh.snapshot() as snap:
        in_window = snap.scalar("SELECT count(*) FROM transactions WHERE created_at >= ? AND created_at < ?",
                                [start + timedelta(seconds=63) - timedelta(hours=1), start + timedelta(seconds=63)])
    assert window.summary["transactions"] == in_window >= payments


def test_the_lifecycle_is_replayed(wh):
    """Refunds, disputes and reviews of the templates happen, compressed, and change the payment."""
    start = datetime.now(UTC)
    sim = LiveSimulator(wh, SimulationOptions(rate=40, seed=3, lifecycle_speedup=100_000, update_seconds=0))
    sim.prepare(start)
    for k in range(1, 7):
        sim.step(start + timedelta(seconds=10 * k))
    for k in range(1, 6):  # no new sessions: the lifecycle of the minute's payments catches up
        sim.step(start + timedelta(seconds=60 + 600 * k), arrivals=False)
    assert sim.summary.rows.get("refunds", 0) > 0
    with wh.snapshot() as snap:
        assert orphans(snap) == dict.fromkeys(CHILDREN, 0)
        over = snap.scalar("""
            SELECT count(*) FROM (
                SELECT r.transaction_id, sum(r.amount_minor) AS refunded, any_value(t.amount_minor) AS amount
                FROM refunds r JOIN transactions t USING (transaction_id)
                WHERE r.refund_id LIKE 're_live%' AND r.status = 'succeeded' GROUP BY ALL)
            WHERE refunded > amount""")
        assert over == 0
        statuses = dict(snap.con.execute("""
            SELECT status, count(*) FROM transactions WHERE transaction_id LIKE 'txn_live%' GROUP BY ALL""").fetchall())
        assert statuses.get("refunded", 0) + statuses.get("partially_refunded", 0) > 0
        # every payment with a succeeded refund says so (unless a dispute came first)
        wrong = snap.scalar("""
            SELECT count(*) FROM transactions t WHERE t.transaction_id LIKE 'txn_live%'
              AND t.status NOT IN ('refunded', 'partially_refunded', 'disputed')
              AND EXISTS (SELECT 1 FROM refunds r WHERE r.transaction_id = t.transaction_id AND r.status = 'succeeded')""")
        assert wrong == 0
        pending = snap.scalar("""SELECT count(*) FROM transactions WHERE transaction_id LIKE 'txn_live%'
                                 AND status = 'pending' AND completed_at IS NOT NULL""")
        assert pending == 0


def test_templates_come_from_the_warehouse_history(wh):
    now = datetime.now(UTC)
    templates = load_templates(wh, now, SimulationOptions(seed=5, template_groups=200))
    first, last = templates.window
    assert last <= now - timedelta(days=89) and last - first == timedelta(days=14)
    assert 50 <= len(templates.groups) <= 200  # the small demo has fewer sessions than asked for
    assert 0.2 < templates.attempts_per_group < 2
    for group in templates.groups:
        times = [t["created_at"] for t in group.transactions] or [e["occurred_at"] for e in group.checkout]
        assert group.anchor == min(times)


def test_an_empty_warehouse_is_refused(tmp_path):
    with pytest.raises(SimulationError, match="no payments to learn from"):
        LiveSimulator(Warehouse(tmp_path / "empty"), SimulationOptions()).prepare()


@pytest.mark.parametrize(("text", "rate"), [("5", 5.0), (5, 5.0), ("5/s", 5.0), ("300/min", 5.0),
                                            ("7200/h", 2.0), (" 0.5 ", 0.5)])
def test_rates(text, rate):
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize(("text", "message"), [("0", "above 0"), ("-1", "is not a number"),
                                               ("fast", "is not a number"), ("1e9", "limit of 10000/s"),
                                               ("5/day", "is not a number")])
def test_bad_rates_are_refused(text, message):
    with pytest.raises(SimulationError, match=message):
        parse_rate(text)


@pytest.mark.parametrize(("kwargs", "message"), [({"batch_seconds": 0}, "batch seconds"),
                                                 ({"duration": -1}, "duration"),
                                                 ({"lifecycle_speedup": 0.5}, "speedup"),
                                                 ({"compact_every": 1}, "compact every")])
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(SimulationError, match=message):
        SimulationOptions(**kwargs)


@pytest.mark.parametrize(("args", "message"), [
    (["simulate", "--rate", "5"], "simulate needs --live"),
    (["simulate", "--live", "--rate", "0"], "rate must be above 0"),
    (["simulate", "--live", "--rate", "lots"], "is not a number of payments per second"),
    (["simulate", "--live", "--batch-seconds", "0"], "batch seconds must be between"),
])
def test_cli_errors_are_one_line(wh, args, message):
    result = CliRunner().invoke(main, ["--warehouse", wh.location, *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_cli_runs_for_a_duration(wh):
    with wh.snapshot() as snap:
        before = snap.count("transactions")
    result = CliRunner().invoke(main, ["--warehouse", wh.location, "simulate", "--live", "--rate", "20",
                                       "--duration", "3", "--batch-seconds", "0.5", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "stopped:" in result.output
    with wh.snapshot() as snap:
        assert snap.count("transactions") > before


def test_sigterm_stops_cleanly(wh):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics_lib.cli", "--warehouse", wh.location, "simulate", "--live",
         "--rate", "20", "--batch-seconds", "0.5", "--seed", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        moved = False
        while time.monotonic() < deadline and not moved:
            time.sleep(1)
            with wh.snapshot(tables=["transactions"]) as snap:
                moved = snap.scalar("SELECT count(*) FROM transactions WHERE transaction_id LIKE 'txn_live%'") > 0
        assert moved, "no live payment within a minute"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped:" in out
    with wh.snapshot() as snap:
        assert orphans(snap) == dict.fromkeys(CHILDREN, 0)
        record = snap.sql("SELECT * FROM ingest_batches WHERE source = 'live-simulator'")
        assert len(record) == 1
        live = snap.scalar("SELECT count(*) FROM transactions WHERE transaction_id LIKE 'txn_live%'")
        assert record.inserted[0] >= live > 0
