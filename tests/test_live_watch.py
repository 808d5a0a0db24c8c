"""Watch-folder ingestion: complete files only, each loaded once (also across restarts and as a
copy), moved to done/ or failed/ with the ingest result, and the CLI stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics_lib.live.watch import FolderWatcher, WatchOptions, is_candidate
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import ingest
from tests.conftest import payment, write_jsonl

FAST = WatchOptions(source="platform-json", interval=0.05, settle_seconds=0.0)


def payments_file(path: Path, ids: list[str]) -> Path:
    return write_jsonl(path, [payment(i, userId=f"user_{i}") for i in ids])


def count(wh: Warehouse, table: str = "transactions") -> int:
    with wh.snapshot(tables=[table]) as snap:
        return snap.count(table)


def batches(wh: Warehouse) -> int:
    return count(wh, "ingest_batches")


def drain(watcher: FolderWatcher, scans: int = 3) -> list:
    outcomes = []
    for _ in range(scans):
        outcomes += watcher.scan_once()
        time.sleep(0.02)
    return outcomes


def test_a_dropped_file_is_loaded_once_and_moved(tmp_path, warehouse):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = FolderWatcher(inbox, warehouse, FAST)
    payments_file(inbox / "export-1.jsonl", ["pay_1", "pay_2", "pay_3"])
    assert watcher.scan_once() == []  # first sighting: not yet known to be complete
    [outcome] = drain(watcher)
    assert outcome.status == "loaded" and outcome.result.inserted == 3
    assert not (inbox / "export-1.jsonl").exists()
    assert (inbox / "done" / "export-1.jsonl").exists()
    report = json.loads((inbox / "done" / "export-1.jsonl.result.json").read_text())
    assert report["status"] == "loaded" and report["result"]["rows_read"] == 3
    assert count(warehouse) == 3 and batches(warehouse) == 1
    assert drain(watcher) == []  # nothing left to do


def test_a_copy_of_a_loaded_file_is_not_loaded_again(tmp_path, warehouse):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = FolderWatcher(inbox, warehouse, FAST)
    payments_file(inbox / "a.jsonl", ["pay_1", "pay_2"])
    drain(watcher)
    payments_file(inbox / "a-again.jsonl", ["pay_1", "pay_2"])  # same bytes, other name
    payments_file(inbox / "a.jsonl", ["pay_1", "pay_2"])  # same name and bytes as the first
    outcomes = drain(watcher)
    assert sorted(o.status for o in outcomes) == ["duplicate", "duplicate"]
    assert batches(warehouse) == 1  # loaded once
    done = sorted(p.name for p in (inbox / "done").iterdir() if not p.name.endswith(".result.json"))
    assert len(done) == 3 and "a.jsonl" in done  # the second a.jsonl kept under another name


def test_a_restart_after_loading_does_not_load_again(tmp_path, warehouse):
    """The watcher stopped between loading a file and moving it: the next one moves it only."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = payments_file(inbox / "b.jsonl", ["pay_1"])
    ingest(path, "platform-json", warehouse)  # loaded, but still in the inbox
    [outcome] = drain(FolderWatcher(inbox, warehouse, FAST))
    assert outcome.status == "duplicate" and batches(warehouse) == 1
    assert (inbox / "done" / "b.jsonl").exists()


def test_a_bad_file_goes_to_failed_with_the_reason(tmp_path, warehouse):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = FolderWatcher(inbox, warehouse, FAST)
    (inbox / "broken.jsonl").write_bytes(b"\xff\xfe not utf-8 \x00\n")
    (inbox / "empty.jsonl").write_text("")
    payments_file(inbox / "good.jsonl", ["pay_9"])
    outcomes = {o.file: o for o in drain(watcher)}
    assert outcomes["good.jsonl"].status == "loaded"
    for name in ("broken.jsonl", "empty.jsonl"):
        assert outcomes[name].status == "failed"
        assert (inbox / "failed" / name).exists()
        report = json.loads((inbox / "failed" / f"{name}.result.json").read_text())
        assert report["status"] == "failed" and report["error"]
    assert "UTF-8" in outcomes["broken.jsonl"].message
    assert count(warehouse) == 1


def test_rows_rejected_inside_a_file_do_not_fail_it(tmp_path, warehouse):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_jsonl(inbox / "mixed.jsonl", [payment("pay_1"), "{not json", payment("pay_2", amount=-5)])
    [outcome] = drain(FolderWatcher(inbox, warehouse, FAST))
    assert outcome.status == "loaded"
    assert (outcome.result.inserted, outcome.result.rejected) == (1, 2)
    assert (inbox / "done" / "mixed.jsonl").exists()


def test_partial_and_hidden_files_are_left_alone(tmp_path, warehouse):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = FolderWatcher(inbox, warehouse, FAST)
    for name in ("c.jsonl.part", ".c.jsonl", "c.jsonl.tmp", "c.jsonl~", "c.jsonl.crdownload"):
        payments_file(inbox / name, ["pay_1"])
        assert not is_candidate(inbox / name)
    (inbox / "sub").mkdir()
    assert drain(watcher) == []
    assert count(warehouse) == 0
    (inbox / "c.jsonl.part").rename(inbox / "c.jsonl")  # the writer's atomic rename
    [outcome] = drain(watcher)
    assert outcome.file == "c.jsonl" and outcome.status == "loaded"


def test_a_file_still_growing_waits(tmp_path, warehouse):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = FolderWatcher(inbox, warehouse, WatchOptions(interval=0.05, settle_seconds=0.5))
    path = inbox / "growing.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(4):
            handle.write(json.dumps(payment(f"pay_{i}")) + "\n")
            handle.flush()
            assert watcher.scan_once() == []  # changing, or not unchanged for 0.5 s yet
            time.sleep(0.15)
    deadline = time.monotonic() + 10
    outcomes: list = []
    while not outcomes and time.monotonic() < deadline:
        outcomes = watcher.scan_once()
        time.sleep(0.1)
    assert [o.result.inserted for o in outcomes] == [4]


def test_unknown_source_and_missing_folder_are_refused(tmp_path, warehouse):
    with pytest.raises(ValueError, match="unknown source"):
        WatchOptions(source="fax")
    with pytest.raises(ValueError, match="does not exist"):
        FolderWatcher(tmp_path / "nowhere", warehouse, FAST)


def test_cli_watches_until_sigterm(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wh = Warehouse(tmp_path / "warehouse")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics_lib.cli", "--warehouse", wh.location, "ingest", "--watch", str(inbox),
         "--source", "platform-json", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        payments_file(inbox / "live.jsonl.part", ["pay_1", "pay_2"]).rename(inbox / "live.jsonl")
        deadline = time.monotonic() + 60
        while not (inbox / "done" / "live.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (inbox / "done" / "live.jsonl").exists()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "loaded    live.jsonl: 2 rows read = 2 inserted" in out
    assert "stopped after 1 file(s)" in err
    assert count(wh) == 2


def test_cli_refuses_a_missing_folder(tmp_path):
    from click.testing import CliRunner

    from analytics_lib.cli import main

    result = CliRunner().invoke(main, ["--warehouse", str(tmp_path / "wh"), "ingest", "--watch",
                                       str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: watch folder {tmp_path / 'nope'} does not exist or is "
                                                  "not a folder"]
