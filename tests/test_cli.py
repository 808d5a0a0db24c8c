"""The command line: counts printed, one-line errors with a non-zero exit for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from analytics_lib.cli import main
from tests.conftest import payment, write_jsonl


def run(*args: str, warehouse=None):
    runner = CliRunner()
    base = ["--warehouse", str(warehouse)] if warehouse else []
    return runner.invoke(main, [*base, *args], catch_exceptions=False)


def test_ingest_prints_the_accounting(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [payment("p1"), payment("p2"), payment("p3", amount=0)])
    res = run("ingest", str(path), "--source", "platform-json", warehouse=tmp_path / "wh")
    assert res.exit_code == 0, res.output
    assert "3 rows read = 2 inserted + 0 updated + 0 unchanged + 1 rejected" in res.output
    assert "amount must be positive" in res.output
    res = run("ingest", str(path), "--source", "platform-json", "--format", "json", warehouse=tmp_path / "wh")
    data = json.loads(res.output)
    assert (data["unchanged"], data["rejected"]) == (2, 1)


def test_bad_input_is_one_line_and_exit_code(tmp_path):
    wh = tmp_path / "wh"
    cases = [
        (["ingest", str(tmp_path / "missing.jsonl"), "--source", "platform-json"], "file not found"),
        (["ingest", str(tmp_path), "--source", "platform-json"], "not a file"),
        (["ingest", str(tmp_path / "x.jsonl")], "missing --source"),
        (["ingest", "--source", "platform-json"], "missing PATH"),
    ]
    write_jsonl(tmp_path / "x.jsonl", [payment()])
    cases.append((["ingest", str(tmp_path / "x.jsonl"), "--source", "nope"], "unknown source 'nope'"))
    for args, message in cases:
        res = run(*args, warehouse=wh)
        assert res.exit_code != 0, args
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output
        assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output


def test_info_schema_and_maintain(tmp_path):
    wh = tmp_path / "wh"
    path = write_jsonl(tmp_path / "a.jsonl", [payment("p1")])
    run("ingest", str(path), "--source", "platform-json", warehouse=wh)
    res = run("info", warehouse=wh)
    assert "transactions" in res.output and "rows" in res.output
    res = run("maintain", warehouse=wh)
    assert res.exit_code == 0 and "transactions" in res.output
    res = run("schema", "--markdown")
    assert "## transactions" in res.output and "amount_minor" in res.output


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "analytics_lib.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo-data" in out.stdout and "ingest" in out.stdout


def test_analytics_command(tmp_path):
    from analytics_lib.warehouse import Warehouse
    from tests import metric_fixtures

    wh = tmp_path / "wh"
    metric_fixtures.build(Warehouse(wh))
    res = run("analytics", "--period", "2024-05", "--timezone", "UTC", "--currency", "USD", "--format", "json",
              warehouse=wh)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["summary"]["gross_revenue"] == 339.0
    assert data["period"]["label"] == "2024-05"
    res = run("analytics", "--start", "2024-05-01", "--end", "2024-05-31", "--timezone", "UTC",
              "--filter", "country=DE", "--format", "json", warehouse=wh)
    assert json.loads(res.output)["summary"]["transactions"] == 2
    res = run("analytics", "--period", "2024-05", "--timezone", "UTC", warehouse=wh)
    assert "gross_revenue" in res.output and "339.00" in res.output and "significance" in res.output
    for args, message in [
        (["--period", "2024-13"], "no month 13"),
        (["--filter", "colour=red"], "unknown filter 'colour'"),
        (["--filter", "country"], "key=value"),
        (["--period", "2024-05", "--start", "2024-05-01"], "either --period or --start/--end"),
        (["--start", "2024-05-01"], "go together"),
        (["--period", "2024-05", "--timezone", "UTC", "--currency", "GBP"], "no FX rate for GBP"),
        (["--timezone", "Mars/Base"], "time zone"),
    ]:
        res = run("analytics", *args, warehouse=wh)
        assert res.exit_code != 0 and message in res.output, (args, res.output)
        assert "Traceback" not in res.output
