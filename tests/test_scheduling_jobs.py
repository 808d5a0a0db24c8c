"""Built-in jobs and the scheduler's housekeeping: the inbox ingestion job (new files loaded and
moved, refused ones set aside, unfinished ones left), compaction, a report run left 'running' by
a stopped job process, and the resident scheduler reloading changed schedules."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from analytics_lib.scheduling.config import Job, load_config
from analytics_lib.scheduling.dispatch import Dispatcher
from analytics_lib.scheduling.jobs import get_kind
from analytics_lib.scheduling.jobs.ingest import pending_files
from analytics_lib.scheduling.state import StateDir
from tests.conftest import payment, write_jsonl
from tests.test_scheduling_support import command_job, fake_run, settings_for, write_config

FIRE = datetime(2026, 11, 2, 22, 30, tzinfo=UTC)


def job(builtin: str, **options) -> Job:
    return Job(name=f"test_{builtin}", builtin=builtin, options=options, cron="30 1 * * *", timezone="UTC")


def test_ingest_job_loads_new_files_and_sets_refused_ones_aside(tmp_path):
    settings = settings_for(tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    old = time.time() - 3600
    good = write_jsonl(inbox / "payments-1.jsonl", [payment("pay_1"), payment("pay_2", amount=10.0)])
    empty = inbox / "payments-2.jsonl"
    empty.write_text("")
    writing = write_jsonl(inbox / "payments-3.jsonl.part", [payment("pay_3")])
    fresh = write_jsonl(inbox / "payments-4.jsonl", [payment("pay_4")])
    for path in (good, empty, writing):
        os.utime(path, (old, old))
    assert [p.name for p in pending_files(inbox, "*.jsonl", 60)] == ["payments-1.jsonl", "payments-2.jsonl"]
    said: list[str] = []
    result = get_kind("ingest").run(job("ingest", inbox=str(inbox), source="platform-json", pattern="*.jsonl"),
                                    FIRE, settings, said.append)
    assert result.status == "failed" and "1 of 2 file(s) refused: payments-2.jsonl:" in result.error
    assert "empty file" in result.error
    [loaded] = result.detail["loaded"]
    assert loaded["file"] == "payments-1.jsonl"
    assert list((inbox / "processed").glob("*/payments-1.jsonl"))
    assert (inbox / "failed" / "payments-2.jsonl").is_file()
    assert "empty file" in (inbox / "failed" / "payments-2.jsonl.error.txt").read_text()
    assert writing.exists() and fresh.exists()  # not finished, or too new: left for the next run
    from analytics_lib.warehouse import Warehouse

    with Warehouse(settings.warehouse).snapshot() as snap:
        assert snap.count("transactions") == 2


def test_ingest_job_with_an_empty_or_missing_inbox_succeeds_quietly(tmp_path):
    settings = settings_for(tmp_path)
    result = get_kind("ingest").run(job("ingest", inbox=str(tmp_path / "new-inbox"), source="platform-json"), FIRE,
                                    settings, lambda m: None)
    assert result.ok and result.detail["loaded"] == [] and (tmp_path / "new-inbox").is_dir()


def test_maintain_job_compacts_the_warehouse(tmp_path):
    settings = settings_for(tmp_path)
    from analytics_lib.warehouse import Warehouse
    from analytics_lib.warehouse.ingest import ingest

    for n in range(3):  # three small commits: files to compact
        ingest(write_jsonl(tmp_path / f"p{n}.jsonl", [payment(f"pay_{n}")]), "platform-json",
               Warehouse(settings.warehouse))
    result = get_kind("maintain").run(job("maintain", retention_hours=0), FIRE, settings, lambda m: None)
    assert result.ok
    tx = result.detail["tables"]["transactions"]
    assert tx["files_before"] >= tx["files_after"] >= 1


def test_a_report_run_left_running_by_a_stopped_attempt_is_marked_failed(tmp_path):
    schedules, audiences = write_config(tmp_path, command_job("weekly", "pass"))
    d = Dispatcher(load_config(schedules, audiences, settings_for(tmp_path)), state=StateDir(tmp_path / "state"))
    record = fake_run(tmp_path / "outputs", period="2026-W45", mark_good=False)
    record.status, record.finished_at = "running", None
    record.save()
    log = tmp_path / "attempt.log"
    log.write_text(f"running weekly_business for 2026-W45 (run {record.run_id})\n")
    detail = d._close_abandoned_run(str(log), "timed out after 2100 s")
    assert detail["run_id"] == record.run_id and detail["run_status"] == "failed"
    from analytics_lib.runner.runs import RunRecord

    again = RunRecord.load(record.path)
    assert again.status == "failed" and again.error == "stopped by the scheduler: timed out after 2100 s"
    assert record.run_id in (tmp_path / "outputs" / "index.html").read_text()


def test_serve_reloads_changed_schedules_and_keeps_running_ones_when_a_change_is_bad(tmp_path, caplog):
    from analytics_lib.scheduling.serve import ResidentScheduler

    schedules, audiences = write_config(tmp_path, command_job("weekly", "pass"))
    settings = settings_for(tmp_path)
    resident = ResidentScheduler(lambda: load_config(schedules, audiences, settings),
                                 lambda cfg: Dispatcher(cfg, state=StateDir(tmp_path / "state")))
    resident._install()
    resident.scheduler.start(paused=True)
    try:
        assert set(resident.next_fire_times()) == {"weekly"}
        write_config(tmp_path, command_job("weekly", "pass") + command_job("daily", "pass", cron="0 8 * * *"))
        os.utime(schedules, (time.time() + 5, time.time() + 5))
        resident._sweep()
        assert set(resident.next_fire_times()) == {"weekly", "daily"}
        schedules.write_text("jobs:\n  weekly: {notebook: nope, cron: '0 9 * * 1'}\n")
        os.utime(schedules, (time.time() + 10, time.time() + 10))
        resident._sweep()
        assert set(resident.next_fire_times()) == {"weekly", "daily"}
        assert "schedules not reloaded, keeping the running ones" in caplog.text
        assert "job 'weekly', field 'notebook'" in caplog.text
    finally:
        resident.scheduler.shutdown(wait=False)


@pytest.mark.parametrize("builtin, options, field", [
    ("ingest", {"inbox": "x", "source": "platform-json", "settle_seconds": -1}, "options.settle_seconds"),
    ("command", {"argv": []}, "options.argv"),
    ("maintain", {"retention_hours": -1}, "options.retention_hours"),
])
def test_builtin_options_are_checked(tmp_path, builtin, options, field):
    problems = get_kind(builtin).check(job(builtin, **options), settings_for(tmp_path), {})
    assert [f for f, _ in problems] == [field]
