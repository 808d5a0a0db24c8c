"""Readers never block writers: a process ingests batches (and compacts) while another process
keeps opening snapshots and querying them. Neither sees an error; a reader never sees part of a
batch or a fee without its payment."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import payment, write_jsonl

BATCHES = 12
BATCH_ROWS = 150

WRITER = textwrap.dedent("""
    import sys
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.ingest import ingest
    wh = Warehouse(sys.argv[1])
    files = sys.argv[2:]
    for i, f in enumerate(files):
        res = ingest(f, "platform-json", wh)
        assert res.inserted == {rows}, res.summary()
        if i == len(files) // 2:
            wh.compact(retention_hours=168)
    print("writer done", flush=True)
""")

READER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from analytics_lib.warehouse import Warehouse
    wh = Warehouse(sys.argv[1])
    done = Path(sys.argv[2])
    seen, last, errors = [], -1, []
    deadline = time.time() + 240
    while time.time() < deadline:
        finished = done.exists()
        try:
            with wh.snapshot(tables=["transactions", "fees"]) as snap:
                t = snap.count("transactions")
                f = snap.count("fees")
                orphans = snap.scalar(
                    "SELECT count(*) FROM fees WHERE transaction_id NOT IN (SELECT transaction_id FROM transactions)")
                dupes = snap.scalar("SELECT count(*) - count(DISTINCT transaction_id) FROM transactions")
            if t % {rows} or f % {rows} or orphans or dupes or t < last:
                errors.append(dict(t=t, f=f, orphans=orphans, dupes=dupes, last=last))
            last = t
            seen.append(t)
        except Exception as exc:  # any error on the reader side fails the test
            errors.append(repr(exc))
        if finished:
            break
    print(json.dumps(dict(reads=len(seen), distinct=sorted(set(seen)), errors=errors[:5], n_errors=len(errors))))
""")


def test_ingest_while_another_process_reads(tmp_path: Path):
    files = []
    for b in range(BATCHES):
        records = [payment(f"pay_{b}_{i}", userId=f"user_{i % 40}") for i in range(BATCH_ROWS)]
        files.append(str(write_jsonl(tmp_path / f"batch_{b:02d}.jsonl", records)))
    wh = tmp_path / "warehouse"
    done = tmp_path / "writer-done"
    # create the tables first so the reader starts on an existing (empty) warehouse
    subprocess.run([sys.executable, "-c", f"from analytics_lib.warehouse import Warehouse; Warehouse({str(wh)!r}).ensure_tables()"], check=True)
    reader = subprocess.Popen([sys.executable, "-c", READER.replace("{rows}", str(BATCH_ROWS)), str(wh), str(done)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = subprocess.run([sys.executable, "-c", WRITER.replace("{rows}", str(BATCH_ROWS)), str(wh), *files],
                            capture_output=True, text=True, timeout=300)
    done.touch()
    out, err = reader.communicate(timeout=300)
    assert writer.returncode == 0, writer.stderr[-2000:]
    assert reader.returncode == 0, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["n_errors"] == 0, report["errors"]
    assert report["reads"] >= 5, "the reader should have queried many times while the writer ran"
    assert len(report["distinct"]) >= 3, f"the reader should have seen the data grow: {report}"
    assert report["distinct"][-1] == BATCHES * BATCH_ROWS
