"""Scheduler faults of issue 9 not covered elsewhere, with real report runs on a small warehouse:

- a report whose notebook kills its own kernel mid-way (a cell calls ``os._exit``): the attempt
  fails, is retried, and the last good output (latest.json, the run folder, the portal's entry)
  stays until a run succeeds; when every attempt crashes the failure is recorded and the failure
  contacts are told;
- a full disk for outputs (a 2 MB tmpfs mounted over the outputs folder; a report's HTML alone is
  several MB): the run fails with a one-line ``No space left on device`` reason, the previous good
  output stays, the history records it and the failure contacts are told through the targets that
  still work.

Covered elsewhere: a hanging job (tests/test_scheduling_runs.py, timeout stops the tree), a kernel
killed from outside (tests/test_scheduling.py), SMTP refusing (451 retried, 554 permanent), stalling
past its timeout and down (tests/test_scheduling_distribution.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import nbformat
import pytest

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.scheduling.config import load_config
from analytics_lib.scheduling.dispatch import Dispatcher
from analytics_lib.scheduling.state import StateDir
from tests.test_scheduling_support import fake_run, running_smtp_server, settings_for, write_config

pytestmark = pytest.mark.slow

MONDAY_0905 = datetime(2026, 11, 2, 6, 5, tzinfo=UTC)  # 09:05 in Istanbul; the data ends 2026-10-31
REPORT = "crashing_weekly"


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory) -> Path:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    root = tmp_path_factory.mktemp("reliability-scheduler") / "warehouse"
    generate(Warehouse(root), customers=250, months=3, seed=5, end=date(2026, 10, 31))
    return root


@pytest.fixture
def smtp_server(monkeypatch):
    with running_smtp_server(monkeypatch) as server:
        yield server


def crashing_project(root: Path, marker: Path, always: bool) -> Path:
    """A project folder whose only report is the weekly review with a cell, after the overview,
    that kills its own kernel (``os._exit``): every time, or only while ``marker`` is absent."""
    nb = nbformat.read(str(PROJECT_ROOT / "notebooks" / "reports" / "weekly_business.ipynb"), as_version=4)
    code = (f"import os, pathlib\n_marker = pathlib.Path({str(marker)!r})\n"
            f"if {always!r} or not _marker.exists():\n    _marker.touch()\n    os._exit(3)\n")
    position = next(i for i, c in enumerate(nb.cells) if "sections.overview" in c.source) + 1
    nb.cells.insert(position, nbformat.v4.new_code_cell(code))
    reports = root / "notebooks" / "reports"
    reports.mkdir(parents=True)
    nbformat.write(nb, str(reports / f"{REPORT}.ipynb"))
    (root / "parameters").mkdir()
    return root


def dispatcher(tmp_path: Path, warehouse: Path, project: Path, outputs: Path, retries: int) -> Dispatcher:
    jobs = (f"{REPORT}:\n  notebook: {REPORT}\n  cron: '0 9 * * 1'\n  formats: [html]\n  audience: management_team\n"
            f"  retries: {retries}\n  retry_backoff: 0.2\n  timeout: 600\n  on_failure: [oncall]\n")
    settings = replace(settings_for(tmp_path, warehouse), project_root=project, outputs=outputs)
    schedules, audiences = write_config(tmp_path, jobs)
    return Dispatcher(load_config(schedules, audiences, settings), state=StateDir(tmp_path / "state"))


def runs(outputs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(outputs.glob(f"{REPORT}/*/*/run.json"))]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_kernel_that_crashes_once_is_retried_and_replaces_the_good_output_only_when_it_works(
        tmp_path, small_warehouse, smtp_server):
    outputs = tmp_path / "outputs"
    good = fake_run(outputs, report=REPORT, period="2026-W43")
    latest = outputs / REPORT / "latest.json"
    assert json.loads(latest.read_text())["run_id"] == good.run_id
    project = crashing_project(tmp_path / "project", tmp_path / "crashed-once", always=False)
    d = dispatcher(tmp_path, small_warehouse, project, outputs, retries=1)
    [outcome] = d.run_due(MONDAY_0905)
    assert (outcome.status, outcome.attempts) == ("succeeded", 2), outcome
    done = runs(outputs)
    crashed = [r for r in done if r["status"] == "failed"]
    ok = [r for r in done if r["status"] == "succeeded" and r["run_id"] != good.run_id]
    assert len(crashed) == 1 and len(ok) == 1, done
    assert crashed[0]["error"]  # the kernel's death is recorded in its run
    assert json.loads(latest.read_text())["run_id"] == ok[0]["run_id"]
    assert [sorted(m.rcpt_tos) for m in smtp_server.messages] == [["head-of-finance@example.com",
                                                                   "head-of-growth@example.com"]]
    assert not list((tmp_path / "notices").glob("failures/*.txt"))  # a retried success tells no one


def test_a_kernel_that_always_crashes_fails_reported_and_the_last_good_output_stays(
        tmp_path, small_warehouse, smtp_server):
    outputs = tmp_path / "outputs"
    good = fake_run(outputs, report=REPORT, period="2026-W43")
    latest = outputs / REPORT / "latest.json"
    latest_before, good_files = latest.read_text(), files(good.path)
    project = crashing_project(tmp_path / "project", tmp_path / "crashed", always=True)
    d = dispatcher(tmp_path, small_warehouse, project, outputs, retries=1)
    [outcome] = d.run_due(MONDAY_0905)
    assert (outcome.status, outcome.attempts) == ("failed", 2), outcome
    assert outcome.error.startswith("report run ") and "\n" not in outcome.error
    assert latest.read_text() == latest_before and files(good.path) == good_files
    failed = [r for r in runs(outputs) if r["run_id"] != good.run_id]
    assert [r["status"] for r in failed] == ["failed", "failed"]
    row = d.history.get(outcome.history_id)
    assert row.status == "failed" and row.attempts == 2
    [mail] = smtp_server.to("oncall@example.com")
    assert "FAILED: crashing_weekly" in mail.subject
    assert f"Last good output (still in place): 2026-W43, run {good.run_id}" in mail.text()
    assert not smtp_server.to("head-of-finance@example.com")  # nothing reached the audience
    [notice] = (tmp_path / "notices" / "failures").glob("*.txt")
    assert outcome.error in notice.read_text()
    portal = (outputs / "index.html").read_text()
    assert good.run_id in portal


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MB tmpfs (root only); the test is skipped where mounting is not permitted."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_for_outputs_fails_cleanly_and_the_last_good_output_stays(
        tmp_path, small_warehouse, smtp_server, full_disk):
    outputs = full_disk / "outputs"
    good = fake_run(outputs, report="weekly_business", period="2026-W43")
    latest = outputs / "weekly_business" / "latest.json"
    latest_before, good_files = latest.read_text(), files(good.path)
    jobs = ("weekly_business:\n  notebook: weekly_business\n  cron: '0 9 * * 1'\n  formats: [html]\n"
            "  audience: management_team\n  retries: 1\n  retry_backoff: 0.2\n  timeout: 600\n  on_failure: [oncall]\n")
    settings = replace(settings_for(tmp_path, small_warehouse), outputs=outputs)
    schedules, audiences = write_config(tmp_path, jobs)
    d = Dispatcher(load_config(schedules, audiences, settings), state=StateDir(tmp_path / "state"))
    [outcome] = d.run_due(MONDAY_0905)
    usage = shutil.disk_usage(full_disk)
    assert outcome.status == "failed", outcome
    assert outcome.attempts == 2  # a full disk may be freed: retried like any failure
    assert "No space left on device" in outcome.error and "\n" not in outcome.error, outcome.error
    # the last good output is untouched and still the one readers get
    assert latest.read_text() == latest_before and files(good.path) == good_files
    assert json.loads(latest.read_text())["run_id"] == good.run_id
    row = d.history.get(outcome.history_id)
    assert row.status == "failed" and "No space left on device" in row.error
    # the failure contacts are told (e-mail and the notices folder, which are elsewhere)
    [mail] = smtp_server.to("oncall@example.com")
    assert "No space left on device" in mail.text()
    assert f"Last good output (still in place): 2026-W43, run {good.run_id}" in mail.text()
    assert not smtp_server.to("head-of-finance@example.com")
    assert len(list((tmp_path / "notices" / "failures").glob("*.txt"))) == 1
    print(f"\nfull disk: {usage.used} of {usage.total} bytes used after the run; error: {outcome.error}")
