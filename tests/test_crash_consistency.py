"""Crash consistency: SIGKILL the ingest process at random points, check, re-run, compare.

A fixed sequence of small input files, one per source and spanning most tables (FX rates and
refunds through the ``csv`` source, platform JSON payments with fees, a Stripe export with fees,
refunds and disputes, an Online Retail extract with cancellations, and a newer platform export
that updates earlier payments), is ingested twice:

* a **reference** run: every file ingested once, uninterrupted (its wall time per file is the
  measured duration the kill delays are drawn from);
* **killed** runs: each file's ingest (``payment-analytics ingest``, run in a child process that
  imported everything beforehand, so the clock starts when the command starts) is killed with
  SIGKILL after a random delay drawn from the measured duration D of the uninterrupted ingest
  (half uniform over [0, D], half over [D/2, D] where the commits are); sometimes the re-run is
  killed too. A compaction (``maintain``) between the ingests is killed the same way. After every kill: no writer lock is left held, every table opens in a snapshot
  (counts, sums, no duplicate key, no fee/refund/dispute without its payment), and then the
  ingest is re-run to completion and its accounting balances.

At the end every data table of a killed run equals the reference: row counts, sums of
``amount_minor``, the set of (key, content hash), and the metric layer's gross and net revenue of
May 2024 in USD. No loss, no double count. The numbers (kills, where they landed, wall time) are
printed and summarised in docs/reliability.md.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from analytics_lib import metrics
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import ingest
from analytics_lib.warehouse.schema import TABLES
from tests.conftest import payment, write_jsonl
from tests.test_sources_stripe import charge, write_export

#: tables compared between a killed and the reference run (ingest_batches legitimately differs:
#: a batch killed after its last commit leaves its row, and every re-run adds one)
DATA_TABLES = [t for t in TABLES if t != "ingest_batches"]
MONEY_TABLES = ("transactions", "fees", "refunds", "disputes")
CHILDREN = {"fees": "transactions", "refunds": "transactions", "disputes": "transactions"}

FX_MAPPING = """
table: fx_rates
columns:
  rate_date: day
  currency: currency
  usd_per_unit: usd
"""


@dataclass(frozen=True)
class Step:
    """One ingest of the sequence."""

    file: Path
    source: str
    mapping: Path | None = None

    def cli_args(self, warehouse: Path) -> list[str]:
        if self.source == MAINTAIN:
            return ["--warehouse", str(warehouse), "maintain", "--retention-hours", "0"]
        args = ["--warehouse", str(warehouse), "ingest", str(self.file), "--source", self.source]
        return [*args, "--mapping", str(self.mapping)] if self.mapping else args

    def complete(self, wh: Warehouse) -> None:
        """Run the step to completion in this process (the re-run after a kill)."""
        if self.source == MAINTAIN:
            wh.compact(retention_hours=0)
            return
        res = ingest(
            self.file, self.source, wh, **({"mapping": self.mapping} if self.mapping else {})
        )
        assert res.balanced, res.summary()


#: not a source: the step that compacts, checkpoints and vacuums every table (the other writer)
MAINTAIN = "maintain"


# -- the input files ---------------------------------------------------------------------------


def build_inputs(folder: Path, scale: int = 1, seed: int = 11) -> list[Step]:
    """Six small files, a few thousand rows in all at ``scale=1``; deterministic for a seed."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []

    # 1. FX rates (csv source): every day of April-June 2024 for the currencies used below
    days = [date(2024, 4, 1) + timedelta(days=i) for i in range(91)]
    fx = ["day,currency,usd"]
    for d in days:
        for cur, base_rate in (("EUR", 1.08), ("GBP", 1.26), ("JPY", 0.0064)):
            fx.append(f"{d.isoformat()},{cur},{base_rate * (1 + rnd.uniform(-0.02, 0.02)):.6f}")
    (folder / "fx.csv").write_text("\n".join(fx) + "\n", encoding="utf-8")
    (folder / "fx.yaml").write_text(FX_MAPPING, encoding="utf-8")
    steps.append(Step(folder / "fx.csv", "csv", folder / "fx.yaml"))

    # 2. platform JSON: payments with fees (customers derived), a few bad rows and duplicates
    n_pay = 1200 * scale
    statuses = ["completed"] * 8 + ["failed", "pending"]
    amounts = {"USD": (5, 500), "EUR": (5, 400), "JPY": (500, 60000)}
    records: list = []
    paid: list[tuple[str, str, str, int, datetime]] = []  # (id, user, currency, minor, created)
    for i in range(n_pay):
        cur = rnd.choice(["USD", "USD", "EUR", "JPY"])
        low, high = amounts[cur]
        major = rnd.randint(low, high) if cur == "JPY" else round(rnd.uniform(low, high), 2)
        created = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(
            minutes=rnd.randint(0, 30 * 24 * 60 - 1)
        )
        status = rnd.choice(statuses)
        rec = payment(
            f"pay_{i}",
            userId=f"user_{rnd.randint(0, 300 * scale)}",
            amount=major,
            currency=cur,
            status=status,
            createdAt=created.isoformat().replace("+00:00", "Z"),
            completedAt=(created + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
            if status == "completed"
            else None,
            failedAt=(created + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
            if status == "failed"
            else None,
            fees=[
                {
                    "type": "processing",
                    "amount": round(major * 0.03, 0 if cur == "JPY" else 2),
                    "currency": cur,
                }
            ],
            **{"metadata.countryCode": rnd.choice(["US", "DE", "TR", "JP", "GB"])},
        )
        records.append(rec)
        if status == "completed":
            minor = int(round(major * (1 if cur == "JPY" else 100)))
            paid.append((rec["id"], rec["userId"], cur, minor, created))
    for j in range(0, n_pay, 97):  # bad rows: rejected, stored once in ingest_rejects
        records.insert(j, payment(f"bad_{j}", amount=-1) if j % 2 else "{not json")
    for j in range(5, n_pay, 251):  # the same id twice: the later row wins
        records.append(
            dict(records[j], riskScore=77.0) if isinstance(records[j], dict) else records[j]
        )
    write_jsonl(folder / "payments.jsonl", records)
    steps.append(Step(folder / "payments.jsonl", "platform-json"))

    # 3. refunds of some of those payments (csv source, the docs example mapping)
    out = ["Refund ID,Order ID,Customer,Amount,Currency,Refunded At,Reason,Result"]
    for k, (pid, user, cur, minor, created) in enumerate(
        rnd.sample(paid, min(len(paid), 150 * scale))
    ):
        part = minor if k % 3 == 0 else max(1, minor // 3)
        major = f"{part}" if cur == "JPY" else f"{part / 100:.2f}"
        at = (created + timedelta(days=2)).isoformat().replace("+00:00", "Z")
        out.append(f"rf_{k},{pid},{user},{major},{cur},{at},requested_by_customer,done")
    out.append("rf_unknown,pay_nope,user_1,5.00,USD,2024-05-20T10:00:00Z,other,done")  # rejected
    (folder / "refunds.csv").write_text("\n".join(out) + "\n", encoding="utf-8")
    steps.append(Step(folder / "refunds.csv", "csv", _example("csv-mapping-refunds.yaml")))

    # 4. a Stripe export: charges with fees, partial/full refunds and disputes
    rows = []
    for i in range(500 * scale):
        created = datetime(2024, 5, 1) + timedelta(minutes=rnd.randint(0, 30 * 24 * 60 - 1))
        amount = rnd.randint(500, 30000)
        values: dict[str, str] = {
            "Amount": f"{amount / 100:.2f}",
            "Fee": f"{amount * 0.029 / 100 + 0.3:.2f}",
            "Created (UTC)": created.strftime("%Y-%m-%d %H:%M:%S"),
            "Customer_ID": f"cus_{rnd.randint(0, 200)}",
            "Currency": rnd.choice(["usd", "eur"]),
        }
        kind = rnd.random()
        if kind < 0.1:
            values.update(Status="Refunded", Amount_Refunded=f"{amount / 200:.2f}")
        elif kind < 0.15:
            values.update(Status="Refunded", Amount_Refunded=f"{amount / 100:.2f}")
        elif kind < 0.2:
            values.update(
                {
                    "Disputed Amount": f"{amount / 100:.2f}",
                    "Dispute Status": "lost",
                    "Dispute Reason": "fraudulent",
                    "Dispute Date (UTC)": (created + timedelta(days=3)).strftime("%Y-%m-%d %H:%M"),
                }
            )
        elif kind < 0.3:
            values.update(Status="Failed", Fee="0", Seller_Message="insufficient funds")
        rows.append(charge(f"ch_{i}", **values))
    rows.append(charge("ch_bad", Amount="-3.00"))  # rejected
    write_export(folder / "stripe.csv", rows)
    steps.append(Step(folder / "stripe.csv", "stripe"))
    # compaction between ingests: later batches merge into compacted, checkpointed tables
    steps.append(Step(folder / "maintain", MAINTAIN))

    # 5. an Online Retail extract (GBP, UK time): invoices and cancellations of earlier lines
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "InvoiceNo",
            "StockCode",
            "Description",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
            "CustomerID",
            "Country",
        ]
    )
    bought: list[
        tuple[str, int, str, int, datetime]
    ] = []  # (stock, quantity, customer, invoice, when)
    for inv in range(200 * scale):
        when = datetime(2024, 5, 1, 8) + timedelta(minutes=inv * 100 + rnd.randint(0, 50))
        customer = f"{12000 + rnd.randint(0, 80)}.0"
        country = rnd.choice(["United Kingdom", "France", "Germany"])
        for line in range(rnd.randint(1, 6)):
            stock, qty = f"2{inv % 50:03d}{line}", rnd.randint(1, 12)
            writer.writerow(
                [
                    500000 + inv,
                    stock,
                    "THING",
                    qty,
                    when.strftime("%Y-%m-%d %H:%M:%S"),
                    f"{rnd.randint(50, 1500) / 100:.2f}",
                    customer,
                    country,
                ]
            )
            bought.append((stock, qty, customer, 500000 + inv, when))
    for c, (stock, qty, customer, _invoice, when) in enumerate(
        rnd.sample(bought, min(len(bought), 60 * scale))
    ):
        later = when + timedelta(hours=1)
        writer.writerow(
            [
                f"C{600000 + c}",
                stock,
                "THING",
                -max(1, qty // 2),
                later.strftime("%Y-%m-%d %H:%M:%S"),
                "1.00",
                customer,
                "United Kingdom",
            ]
        )
    writer.writerow(
        [
            "C699999",
            "POST",
            "POSTAGE",
            -1,
            "2024-05-20 10:00:00",
            "18.00",
            "12000.0",
            "United Kingdom",
        ]
    )  # rejected: nothing to refund
    (folder / "retail.csv").write_text(buf.getvalue(), encoding="utf-8")
    steps.append(Step(folder / "retail.csv", "online-retail"))

    # 6. a newer platform export: some payments changed state (updates), some are new
    newer: list = []
    for rec in rnd.sample(
        [r for r in records if isinstance(r, dict) and r["id"].startswith("pay_")], 300 * scale
    ):
        if rec["status"] == "pending":
            newer.append(dict(rec, status="completed", completedAt=rec["createdAt"]))
        else:
            newer.append(dict(rec, riskScore=round(rnd.uniform(0, 100), 1)))
    for i in range(200 * scale):
        newer.append(
            payment(
                f"pay_new_{i}",
                userId=f"user_{i}",
                amount=round(rnd.uniform(5, 300), 2),
                createdAt=f"2024-05-{rnd.randint(1, 30):02d}T12:00:00Z",
                completedAt=f"2024-05-{31:02d}T12:00:00Z",
            )
        )
    write_jsonl(folder / "payments_newer.jsonl", newer)
    steps.append(Step(folder / "payments_newer.jsonl", "platform-json"))
    return steps


def _example(name: str) -> Path:
    from analytics_lib.config import PROJECT_ROOT

    return PROJECT_ROOT / "docs" / "examples" / name


# -- the ingest processes ------------------------------------------------------------------------

#: A fork server: imports the CLI once (about 10 s of imports on a busy 2-core machine, most of it
#: the CLI error handler's runner and model registry), then forks one process per command. Each
#: forked process runs ``payment-analytics ...`` and is the process that gets killed; the server
#: only imported modules (no Delta or DuckDB runtime exists yet), so forking it is safe.
FORK_SERVER = textwrap.dedent("""
    import json, os, signal, sys, time, traceback
    import analytics_lib.cli as cli
    import analytics_lib.warehouse.ingest  # noqa: F401
    from analytics_lib.warehouse.sources import get_source, source_names
    for name in source_names():
        try:
            get_source(name)
        except Exception:
            pass
    for module in ("analytics_lib.runner", "analytics_lib.models.registry"):  # the CLI error handler's
        __import__(module)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            code = 0
            try:
                cli.main(req["args"], prog_name="payment-analytics")
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 70
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        killed = False
        if req.get("kill_after") is not None:
            deadline = started + req["kill_after"]
            while time.perf_counter() < deadline:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.002)
            else:
                os.kill(pid, signal.SIGKILL)
                killed = True
                _, status = os.waitpid(pid, 0)
            if not killed:
                status = 0
        else:
            _, status = os.waitpid(pid, 0)
        print(json.dumps({"killed": killed, "seconds": time.perf_counter() - started,
                          "status": os.waitstatus_to_exitcode(status) if status else 0}), flush=True)
""")


class ForkServer:
    """Runs ``payment-analytics`` commands in forked processes, optionally SIGKILLed after a delay."""

    def __init__(self, cwd: Path, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.strip().startswith('{"ready"'):
            self.proc.kill()
            raise RuntimeError(
                f"fork server did not start: {line!r} {self.proc.stderr.read()[-2000:]}"
            )  # type: ignore[union-attr]

    def run(self, args: list[str], kill_after: float | None = None) -> dict:
        """{"killed": bool, "seconds": float, "status": exit code}"""
        self.proc.stdin.write(
            json.dumps({"args": args, "kill_after": kill_after, "log": str(self.log)}) + "\n"
        )  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def project_root() -> Path:
    import analytics_lib

    return Path(analytics_lib.__file__).resolve().parent.parent


# -- checks ------------------------------------------------------------------------------------


def no_lock_held(location: Path) -> None:
    """Every writer lock can be taken at once: a killed writer leaves no stale lock."""
    lock_dir = location / "_locks"
    if not lock_dir.exists():
        return
    for lock in lock_dir.glob("*.lock"):
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pytest.fail(f"writer lock {lock.name} is still held after the writer was killed")
            fcntl.flock(handle, fcntl.LOCK_UN)


def readable_state(wh: Warehouse) -> dict[str, tuple]:
    """Open a snapshot of every table and read it: counts, money sums, key uniqueness, parents."""
    state: dict[str, tuple] = {}
    with wh.snapshot() as snap:
        for name in TABLES:
            spec = TABLES[name]
            keys = ", ".join(f'"{k}"' for k in spec.keys)
            n, distinct = snap.con.sql(
                f'SELECT count(*), count(DISTINCT ({keys})) FROM "{name}"'
            ).fetchall()[0]
            assert n == distinct, f"{name}: {n - distinct} duplicate keys after a kill"
            total = (
                snap.scalar(f'SELECT coalesce(sum(amount_minor), 0) FROM "{name}"')
                if name in MONEY_TABLES
                else 0
            )
            state[name] = (n, int(total))
        for child, parent in CHILDREN.items():
            orphans = snap.scalar(
                f'SELECT count(*) FROM "{child}" c ANTI JOIN "{parent}" p USING (transaction_id)'
            )
            assert orphans == 0, f"{orphans} {child} rows without their payment in one snapshot"
    return state


def final_state(wh: Warehouse) -> dict:
    """What must be equal to the reference: per data table the rows, money and (key, hash) set,
    and the metric layer's May 2024 revenue in USD."""
    out: dict = {"tables": {}}
    with wh.snapshot() as snap:
        for name in DATA_TABLES:
            spec = TABLES[name]
            keys = ", ".join(f'CAST("{k}" AS VARCHAR)' for k in spec.keys)
            content = "_row_hash" if "_row_hash" in spec.column_names else "reason"
            rows = snap.con.sql(
                f"SELECT concat_ws('|', {keys}, {content}) FROM \"{name}\" ORDER BY 1"
            ).fetchall()
            total = (
                snap.scalar(f'SELECT coalesce(sum(amount_minor), 0) FROM "{name}"')
                if name in MONEY_TABLES
                else 0
            )
            out["tables"][name] = {
                "rows": len(rows),
                "amount_minor": int(total),
                "content": hashlib.md5("\n".join(r[0] for r in rows).encode()).hexdigest(),
            }
    with metrics.MetricSession.open(wh) as session:
        period = metrics.Period.month(2024, 5, "UTC")
        rev = metrics.revenue_analytics(session, period, None, "USD", with_growth=False).summary
    out["revenue"] = {
        k: round(float(rev[k]), 6)
        for k in ("gross_revenue", "net_revenue", "refunds", "chargebacks", "fees")
    }
    return out


# -- the runs ----------------------------------------------------------------------------------


@dataclass
class Tally:
    kills: int = 0
    exited_before_kill: int = 0
    landed: Counter = field(default_factory=Counter)
    reruns: int = 0
    seconds: float = 0.0


def reference_run(
    server: ForkServer, steps: list[Step], location: Path
) -> tuple[dict, dict[Path, float]]:
    """Every file ingested once, uninterrupted, by the CLI in a forked process; the duration of each
    ingest (fork to exit) is the range kill delays are drawn from."""
    durations: dict[Path, float] = {}
    for step in steps:
        res = server.run(step.cli_args(location))
        assert res["status"] == 0, server.log.read_text()[-3000:]
        durations[step.file] = res["seconds"]
    return final_state(Warehouse(location)), durations


def killed_run(
    server: ForkServer,
    steps: list[Step],
    location: Path,
    durations: dict[Path, float],
    rnd: random.Random,
    tally: Tally,
    kills_per_step: tuple[int, int] = (1, 2),
) -> dict:
    """Each step killed 1-2 times at random delays (a second kill hits the re-run of a partial
    batch), checked after each kill, then completed."""
    wh = Warehouse(location)
    for step in steps:
        for _ in range(rnd.randint(*kills_per_step)):
            before = wh.versions()
            # half the delays over the whole run, half over its second half, where the commits are
            low = 0.0 if rnd.random() < 0.5 else 0.5 * durations[step.file]
            res = server.run(
                step.cli_args(location), kill_after=rnd.uniform(low, durations[step.file])
            )
            if res["killed"]:
                tally.kills += 1
            else:
                tally.exited_before_kill += 1
            after = wh.versions()
            changed = [t for t in TABLES if after[t] != before[t]]
            if not changed:
                tally.landed["before any commit"] += 1
            elif "ingest_batches" in changed:
                tally.landed["after the last commit"] += 1
            else:
                tally.landed["between table commits"] += 1
            no_lock_held(location)
            readable_state(wh)
        step.complete(wh)
        tally.reruns += 1
        readable_state(wh)
    return final_state(wh)


def assert_same(got: dict, want: dict, context: str) -> None:
    for name in DATA_TABLES:
        assert got["tables"][name] == want["tables"][name], f"{context}: table {name} differs"
    assert got["revenue"] == want["revenue"], context


def crash_campaign(
    tmp_path: Path, min_kills: int, seed: int, kills_per_step: tuple[int, int], max_rounds: int = 40
) -> Tally:
    """Rounds of killed runs, each compared with the reference, until ``min_kills`` kills."""
    steps = build_inputs(tmp_path / "in")
    started = time.perf_counter()
    server = ForkServer(project_root(), tmp_path / "ingest.log")
    rounds = 0
    try:
        reference, durations = reference_run(server, steps, tmp_path / "reference")
        assert (
            reference["tables"]["transactions"]["rows"] > 1000
            and reference["revenue"]["gross_revenue"] > 0
        )
        tally = Tally()
        rnd = random.Random(seed)
        while tally.kills < min_kills and rounds < max_rounds:
            got = killed_run(
                server, steps, tmp_path / f"killed_{rounds}", durations, rnd, tally, kills_per_step
            )
            assert_same(got, reference, f"round {rounds}")
            rounds += 1
    finally:
        server.close()
    tally.seconds = time.perf_counter() - started
    print(
        f"\ncrash consistency: {rounds} rounds x {len(steps)} steps, {tally.kills} SIGKILLs "
        f"({tally.exited_before_kill} more runs exited before their kill), "
        f"landed {dict(tally.landed)}, {tally.reruns} completed re-runs; uninterrupted durations "
        f"{ {s.file.name: round(d, 2) for s, d in zip(steps, durations.values(), strict=True)} } s; "
        f"wall {tally.seconds:.0f} s"
    )
    return tally


def test_a_killed_ingest_is_recovered_by_rerunning_it(tmp_path: Path) -> None:
    """Quick version: one round, each step killed once."""
    tally = crash_campaign(tmp_path, min_kills=1, seed=1, kills_per_step=(1, 1), max_rounds=1)
    assert tally.kills + tally.exited_before_kill == 7


@pytest.mark.slow
def test_random_sigkills_lose_and_double_nothing(tmp_path: Path) -> None:
    """At least 100 SIGKILLs at random points of six ingests and a compaction; every round's
    totals equal those of the uninterrupted run."""
    min_kills = int(os.environ.get("CRASH_MIN_KILLS", "100"))
    tally = crash_campaign(tmp_path, min_kills=min_kills, seed=2024, kills_per_step=(1, 3))
    assert tally.kills >= min_kills, tally
    assert tally.landed["between table commits"] >= min_kills // 10, tally
