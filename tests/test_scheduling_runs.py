"""Running what is due, with quick ``command`` jobs standing in for reports: catch-up and misfire
rules, one run at a time across processes, timeouts that stop the whole process tree, retries
with backoff, history that survives restarts, recovery after a scheduler dies mid-run, failure
notices, the resident scheduler and the crontab."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from analytics_lib.cli import main
from analytics_lib.config import PROJECT_ROOT
from analytics_lib.scheduling.config import load_config
from analytics_lib.scheduling.dispatch import Dispatcher, backoff_delay
from analytics_lib.scheduling.due import decide
from analytics_lib.scheduling.history import History
from analytics_lib.scheduling.process import alive
from analytics_lib.scheduling.state import StateDir
from tests.test_scheduling_support import (
    command_job,
    running_smtp_server,
    settings_for,
    write_config,
)


@pytest.fixture
def smtp_server(monkeypatch):
    with running_smtp_server(monkeypatch) as server:
        yield server


MONDAY_0905 = datetime(2026, 11, 2, 6, 5, tzinfo=UTC)  # 09:05 in Istanbul
APPEND = "import os, pathlib; p = pathlib.Path({path!r}); p.open('a').write(os.environ['PAYMENT_ANALYTICS_FIRE_TIME'] + '\\n')"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def dispatcher_for(tmp_path: Path, jobs: str, **kwargs) -> Dispatcher:
    schedules, audiences = write_config(tmp_path, jobs, **kwargs)
    config = load_config(schedules, audiences, settings_for(tmp_path))
    return Dispatcher(config, state=StateDir(tmp_path / "state"))


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMENT_ANALYTICS_")}
    return {**env, "PAYMENT_ANALYTICS_OUTPUTS": str(tmp_path / "outputs"),
            "PAYMENT_ANALYTICS_WAREHOUSE": str(tmp_path / "warehouse"),
            "PAYMENT_ANALYTICS_SCHEDULER_STATE": str(tmp_path / "state")}


def cli_args(tmp_path: Path, *args: str) -> list[str]:
    folder = tmp_path / "scheduling"
    return [sys.executable, "-m", "analytics_lib.cli", "schedule", "--schedules", str(folder / "schedules.yaml"),
            "--audiences", str(folder / "audiences.yaml"), *args]


# -- the rules, as a pure function ----------------------------------------------------------------


def test_due_rules(tmp_path):
    d = dispatcher_for(tmp_path, command_job("weekly", "pass", misfire_grace=3600) +
                       command_job("strict", "pass", catch_up=False, misfire_grace=3600))
    weekly, strict = d.config.jobs["weekly"], d.config.jobs["strict"]
    monday_9 = datetime(2026, 11, 2, 6, tzinfo=UTC)
    # a new job runs its latest fire time only within misfire_grace
    assert decide(weekly, None, monday_9 + timedelta(minutes=5)).action == "run"
    late = decide(weekly, None, monday_9 + timedelta(hours=2))
    assert (late.action, late.fire_time) == ("baseline", monday_9)
    # nothing new since the cursor
    assert decide(weekly, monday_9, monday_9 + timedelta(days=6)).action == "wait"
    # on time
    on_time = decide(weekly, monday_9 - timedelta(days=7), monday_9 + timedelta(seconds=30))
    assert (on_time.action, on_time.trigger, on_time.missed) == ("run", "on-time", 0)
    # down for three weeks: one run, for the latest fire time, with two earlier ones folded in
    back = decide(weekly, monday_9 - timedelta(days=21), monday_9 + timedelta(days=2))
    assert (back.action, back.fire_time, back.trigger, back.missed) == ("run", monday_9, "catch-up", 2)
    # catch_up: false skips what is older than the grace, and still runs what is on time
    assert decide(strict, monday_9 - timedelta(days=7), monday_9 + timedelta(days=2)).action == "skip"
    assert decide(strict, monday_9 - timedelta(days=7), monday_9 + timedelta(minutes=30)).action == "run"


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(60, n) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert backoff_delay(60, 20) == 3600


# -- run-due --------------------------------------------------------------------------------------


def test_a_scheduler_that_was_down_runs_a_missed_job_once(tmp_path):
    out = tmp_path / "fires.txt"
    d = dispatcher_for(tmp_path, command_job("daily", APPEND.format(path=str(out)), cron="0 8 * * *"))
    first = datetime(2026, 11, 2, 5, 1, tzinfo=UTC)  # 08:01 Monday in Istanbul
    [outcome] = d.run_due(first)
    assert (outcome.status, outcome.trigger, outcome.attempts) == ("succeeded", "on-time", 1)
    assert lines(out) == ["2026-11-02T05:00:00+00:00"]
    # down from Monday to Thursday 10:00: Tuesday, Wednesday and Thursday were missed
    thursday = datetime(2026, 11, 5, 7, 0, tzinfo=UTC)
    [outcome] = d.run_due(thursday)
    assert (outcome.status, outcome.trigger, outcome.detail["missed"]) == ("succeeded", "catch-up", 2)
    assert lines(out)[1:] == ["2026-11-05T05:00:00+00:00"]  # once, for the latest fire time
    assert d.run_due(thursday + timedelta(minutes=1)) == []  # nothing more until Friday 08:00
    assert len(lines(out)) == 2


def test_a_new_job_does_not_replay_old_fire_times(tmp_path):
    out = tmp_path / "fires.txt"
    d = dispatcher_for(tmp_path, command_job("board", APPEND.format(path=str(out)), cron="0 10 1 1,4,7,10 *"))
    assert d.run_due(datetime(2026, 11, 26, tzinfo=UTC)) == []  # last fire was 1 October: not replayed
    assert not out.exists()
    assert d.history.cursor("board") == datetime(2026, 10, 1, 7, tzinfo=UTC)
    [outcome] = d.run_due(datetime(2027, 1, 1, 7, 2, tzinfo=UTC))
    assert outcome.status == "succeeded" and lines(out) == ["2027-01-01T07:00:00+00:00"]


def test_history_survives_a_restart_and_the_cli_shows_it(tmp_path):
    out = tmp_path / "fires.txt"
    jobs = command_job("weekly", APPEND.format(path=str(out))) + command_job("broken", "import sys; sys.exit('no data')",
                                                                             retries=0)
    d = dispatcher_for(tmp_path, jobs)
    outcomes = {o.job: o for o in d.run_due(MONDAY_0905)}
    assert outcomes["weekly"].status == "succeeded" and outcomes["broken"].status == "failed"
    assert "exited with 1: no data" in outcomes["broken"].error
    # a new process: new objects over the same state folder
    again = History(StateDir(tmp_path / "state").history_path)
    rows = {r.job: r for r in again.rows()}
    assert rows["weekly"].status == "succeeded" and rows["weekly"].fire_time == datetime(2026, 11, 2, 6, tzinfo=UTC)
    assert rows["broken"].error.endswith("no data") and rows["broken"].duration_s is not None
    assert Path(rows["weekly"].detail["log"]).is_file()
    fresh = dispatcher_for(tmp_path, jobs)
    assert fresh.run_due(MONDAY_0905 + timedelta(minutes=10)) == []  # the cursors survived too
    result = subprocess.run(cli_args(tmp_path, "history"), env=cli_env(tmp_path), capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "weekly" in result.stdout and "succeeded" in result.stdout and "no data" in result.stdout
    result = subprocess.run(cli_args(tmp_path, "history", "--job", "broken", "--format", "json"), env=cli_env(tmp_path),
                            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    [row] = json.loads(result.stdout)
    assert row["status"] == "failed" and row["fire_time"] == "2026-11-02T06:00:00+00:00"
    listed = subprocess.run(cli_args(tmp_path, "list", "--now", "2026-11-02T09:05"), env=cli_env(tmp_path),
                            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert "Mon 2026-11-09 09:00 +03" in listed.stdout and "failed" in listed.stdout


def test_retries_with_backoff_then_success(tmp_path):
    counter = tmp_path / "count.txt"
    code = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); n = len(p.read_text()) if p.exists() else 0; "
            "p.write_text('x' * (n + 1)); sys.exit('flaky' if n < 2 else 0)")
    d = dispatcher_for(tmp_path, command_job("flaky", code, retries=3, retry_backoff=0.3))
    started = time.monotonic()
    [outcome] = d.run_due(MONDAY_0905)
    assert (outcome.status, outcome.attempts) == ("succeeded", 3)
    assert time.monotonic() - started >= 0.3 + 0.6  # waited 0.3 s, then 0.6 s
    assert counter.read_text() == "xxx"


def test_retries_run_out_and_the_failure_contacts_are_told(tmp_path, smtp_server):
    d = dispatcher_for(tmp_path, command_job("broken", "import sys; sys.exit('warehouse unreachable')", retries=1,
                                             retry_backoff=0.1, on_failure=["oncall"]))
    [outcome] = d.run_due(MONDAY_0905)
    assert (outcome.status, outcome.attempts) == ("failed", 2)
    [mail] = smtp_server.to("oncall@example.com")
    assert mail.subject == "[Payment analytics] FAILED: broken (2026-11-02 09:00 +03)"
    assert "warehouse unreachable" in mail.text() and "Attempts:      2" in mail.text()
    assert mail.message["Auto-Submitted"] == "auto-generated"
    notices = list((tmp_path / "notices" / "failures").glob("*.txt"))
    assert len(notices) == 1 and "warehouse unreachable" in notices[0].read_text()
    sent = d.history.get(outcome.history_id).detail["notifications"]
    assert {(n["target"], n["status"]) for n in sent} == {("email", "sent"), ("folder", "sent")}


def test_a_job_over_its_timeout_is_stopped_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, pathlib; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            f" pathlib.Path({str(pid_file)!r}).write_text(str(c.pid)); c.wait()")
    d = dispatcher_for(tmp_path, command_job("hangs", code, timeout=2, retries=0, on_failure=["oncall"]))
    started = time.monotonic()
    [outcome] = d.run_due(MONDAY_0905)
    assert time.monotonic() - started < 30
    assert outcome.status == "failed" and outcome.error.startswith("timed out after 2 s")
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(grandchild), "the job's own child process was left running"
    assert len(list((tmp_path / "notices" / "failures").glob("*.txt"))) == 1


def test_two_concurrent_run_due_processes_run_a_job_once(tmp_path):
    out = tmp_path / "fires.txt"
    code = APPEND.format(path=str(out)) + "; import time; time.sleep(3)"
    write_config(tmp_path, command_job("weekly", code))
    procs = [subprocess.Popen(cli_args(tmp_path, "run-due", "--now", "2026-11-02T09:05+03:00"), env=cli_env(tmp_path),
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert lines(out) == ["2026-11-02T06:00:00+00:00"]
    rows = History(tmp_path / "state" / "history.sqlite3").rows(job="weekly")
    assert [r.status for r in rows] == ["succeeded"]
    outputs = " ".join(o for o, _ in results)
    assert "weekly: succeeded" in outputs
    # the other one either found it running or found it already done: both say so, or nothing at all
    assert outputs.count("weekly: running") == 1
    # and a third call afterwards has nothing to do (silent: nothing for cron to mail)
    late = subprocess.run(cli_args(tmp_path, "run-due", "--now", "2026-11-02T09:06+03:00"), env=cli_env(tmp_path),
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert (late.returncode, late.stdout, late.stderr) == (0, "", "")


def test_a_scheduler_killed_mid_run_is_recovered_notified_and_rerun(tmp_path):
    """SIGKILL the run-due process: its job process follows it (parent-death signal), the next
    run-due marks the run interrupted, tells the failure contacts and runs the job again."""
    started, out, pid_file = tmp_path / "started.txt", tmp_path / "fires.txt", tmp_path / "job.pid"
    code = (f"import os, pathlib, time, sys; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
            f"s = pathlib.Path({str(started)!r}); first = not s.exists(); s.open('a').write('x');"
            " time.sleep(60 if first else 0); " + APPEND.format(path=str(out)))
    write_config(tmp_path, command_job("weekly", code, on_failure=["oncall"], retries=2))
    proc = subprocess.Popen(cli_args(tmp_path, "run-due", "--now", "2026-11-02T09:05+03:00"), env=cli_env(tmp_path),
                            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), "the job never started"
    job_pid = int(pid_file.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while alive(job_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(job_pid), "the job process outlived its scheduler"
    history = History(tmp_path / "state" / "history.sqlite3")
    assert [r.status for r in history.rows(job="weekly")] == ["running"]
    result = subprocess.run(cli_args(tmp_path, "run-due", "--now", "2026-11-02T09:20+03:00"), env=cli_env(tmp_path),
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "was interrupted" in result.stderr
    assert lines(out) == ["2026-11-02T06:00:00+00:00"]  # run again, for the same fire time
    assert [r.status for r in history.rows(job="weekly")] == ["succeeded", "interrupted"]
    [notice] = (tmp_path / "notices" / "failures").glob("*.txt")
    assert "was interrupted" in notice.read_text()


def test_locked_job_is_reported_not_run(tmp_path):
    from analytics_lib.scheduling.locks import JobLock

    out = tmp_path / "fires.txt"
    d = dispatcher_for(tmp_path, command_job("weekly", APPEND.format(path=str(out))))
    with JobLock(tmp_path / "state" / "locks", "weekly") as held:
        assert held.acquired
        assert not JobLock(tmp_path / "state" / "locks", "weekly").acquire()  # same process, another thread's view
        [outcome] = d.run_due(MONDAY_0905)
        assert outcome.status == "locked" and "already running (pid" in outcome.error
    assert not out.exists()
    assert d.run_due(MONDAY_0905)[0].status == "succeeded"


def test_dry_run_says_what_is_due_and_changes_nothing(tmp_path):
    out = tmp_path / "fires.txt"
    write_config(tmp_path, command_job("weekly", APPEND.format(path=str(out)))
                 + command_job("daily", APPEND.format(path=str(out)), cron="0 8 * * *"))
    folder = tmp_path / "scheduling"
    result = CliRunner().invoke(main, ["schedule", "--schedules", str(folder / "schedules.yaml"), "--audiences",
                                       str(folder / "audiences.yaml"), "run-due", "--dry-run", "--now",
                                       "2026-11-02T09:05"], env=cli_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "weekly" in result.output and "first run of a new job" in result.output
    assert "baseline" in result.output and "65 min old" in result.output
    assert not out.exists() and not (tmp_path / "state" / "history.sqlite3").exists()


# -- serve ----------------------------------------------------------------------------------------


def test_resident_scheduler_wakes_at_croniter_fire_times(tmp_path):
    from analytics_lib.scheduling.serve import ResidentScheduler

    schedules, audiences = write_config(tmp_path, command_job("weekdays", "pass", cron="0 9 * * 1-5")
                                        + command_job("mondays", "pass", cron="0 9 * * 1"))
    settings = settings_for(tmp_path)
    resident = ResidentScheduler(lambda: load_config(schedules, audiences, settings),
                                 lambda cfg: Dispatcher(cfg, state=StateDir(tmp_path / "state")))
    resident._install()
    resident.scheduler.start(paused=True)
    try:
        jobs = {j.id: j for j in resident.scheduler.get_jobs()}
        now = datetime(2026, 10, 31, tzinfo=UTC)
        prev, days = None, []
        for _ in range(6):
            prev = jobs["weekdays"].trigger.get_next_fire_time(prev, now)
            days.append(prev.astimezone(resident.config.jobs["weekdays"].schedule.zone).strftime("%a %H:%M"))
        assert days == ["Mon 09:00", "Tue 09:00", "Wed 09:00", "Thu 09:00", "Fri 09:00", "Mon 09:00"]
        for name, job in jobs.items():
            assert job.next_run_time == resident.config.jobs[name].schedule.next_after(datetime.now(UTC))
    finally:
        resident.scheduler.shutdown(wait=False)


def test_serve_catches_up_at_start_and_stops_cleanly_on_sigterm(tmp_path):
    out = tmp_path / "fires.txt"
    # every minute: its latest fire time is always within the grace, so the start-up pass runs it
    write_config(tmp_path, command_job("minutely", APPEND.format(path=str(out)), cron="* * * * *"))
    proc = subprocess.Popen(cli_args(tmp_path, "serve"), env=cli_env(tmp_path), cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not lines(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lines(out), "serve did not run the due job at start"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "scheduler started: 1 job(s)" in err and "scheduler stopped" in err
    rows = History(tmp_path / "state" / "history.sqlite3").rows(job="minutely")
    assert rows and rows[-1].status == "succeeded"


def test_serve_restarted_mid_run_runs_the_interrupted_fire_time_once_and_keeps_history(tmp_path):
    """SIGTERM ``schedule serve`` while a job runs, then start it again: the run is recorded as
    interrupted, its process tree is stopped, the new scheduler runs the same fire time once, and
    the history of both schedulers is there."""
    started, out, pid_file = tmp_path / "started.txt", tmp_path / "fires.txt", tmp_path / "job.pid"
    code = (f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
            f"s = pathlib.Path({str(started)!r}); first = not s.exists(); s.open('a').write('x');"
            " time.sleep(120 if first else 0); " + APPEND.format(path=str(out)))
    minute = (datetime.now(UTC) - timedelta(minutes=1)).minute  # hourly, last fired a minute or so ago
    write_config(tmp_path, command_job("hourly", code, cron=f"{minute} * * * *", timezone="UTC", retries=2,
                                       misfire_grace=3600, on_failure=["oncall"]))
    history = History(tmp_path / "state" / "history.sqlite3")
    first = subprocess.Popen(cli_args(tmp_path, "serve"), env=cli_env(tmp_path), cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid_file.exists(), "serve did not start the due job"
        job_pid = int(pid_file.read_text())
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=90)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert not alive(job_pid), "the job outlived the scheduler that stopped"
    [row] = history.rows(job="hourly")
    assert row.status == "interrupted" and not lines(out)
    fire_time = row.fire_time
    second = subprocess.Popen(cli_args(tmp_path, "serve"), env=cli_env(tmp_path), cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not lines(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # a second run of the same fire time would have started by now
    finally:
        second.send_signal(signal.SIGTERM)
        _, err2 = second.communicate(timeout=90)
    assert second.returncode == 0, err2
    assert lines(out) == [fire_time.isoformat()]  # run again, once, for the same fire time
    rows = history.rows(job="hourly")
    assert [(r.status, r.fire_time) for r in rows] == [("succeeded", fire_time), ("interrupted", fire_time)]


# -- crontab --------------------------------------------------------------------------------------


def test_crontab_lines(tmp_path):
    schedules, audiences = write_config(tmp_path, command_job("weekly", "pass", cron="0 9 * * 1")
                                        + command_job("nightly", "pass", cron="30 1 * * *", timezone="UTC"))
    base = ["schedule", "--schedules", str(schedules), "--audiences", str(audiences)]
    result = CliRunner().invoke(main, [*base, "crontab"], env=cli_env(tmp_path))
    assert result.exit_code == 0, result.output
    text = result.output
    assert "CRON_TZ=Europe/Istanbul\n# weekly: command\n0 9 * * 1 cd " in text
    assert "CRON_TZ=UTC\n# nightly: command\n30 1 * * * cd " in text
    assert f"schedule --schedules {schedules.resolve()} --audiences {audiences.resolve()} run-due --job weekly" in text
    assert "PASSWORD=" not in text
    poll = CliRunner().invoke(main, [*base, "crontab", "--poll", "--log", "/var/log/pa.log"], env=cli_env(tmp_path))
    entries = [ln for ln in poll.output.splitlines() if ln and not ln.startswith(("#", "SHELL"))]
    assert len(entries) == 1 and entries[0].startswith("* * * * * cd ")
    assert entries[0].endswith("run-due >> /var/log/pa.log 2>&1")
