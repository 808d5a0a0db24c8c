"""Hostile input at the command line and at the warehouse/metric API: refused or harmless.

Extends tests/test_metrics_properties.py (hostile filter values bound in every metric family, at
the API) to what a person or a scheduler can type: SQL fragments in ``--filter`` values, keys,
currency, time zone and period; path traversal and special files in ``ingest`` paths, sources
and mappings; huge and inverted date ranges; wrong types. "Refused" means a non-zero exit with
one line of error and no traceback; "harmless" means the command runs, counts no more than the
unfiltered run, and no table changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from analytics_lib import metrics
from analytics_lib.cli import main
from analytics_lib.warehouse import Warehouse, WarehouseError
from analytics_lib.warehouse.ingest import ingest
from analytics_lib.warehouse.sources import IngestError
from tests import metric_fixtures
from tests.conftest import payment, write_jsonl

SQL_FRAGMENTS = [
    "TR' OR 1=1 --",
    "TR' OR '1'='1",
    "'; DROP TABLE transactions; --",
    "card' UNION SELECT * FROM fx_rates --",
    '" OR ""="',
    "TR); DELETE FROM refunds; --",
    "$1",
    "?",
    "%",
]
FILTER_KEYS = [
    "currency",
    "country",
    "payment_method",
    "provider",
    "plan_type",
    "product",
    "campaign",
    "discount_code",
]


def cli(*args: str, warehouse: Path | None = None):
    base = ["--warehouse", str(warehouse)] if warehouse else []
    return CliRunner().invoke(main, [*base, *args], catch_exceptions=True)


def assert_refused(res, *words: str) -> None:
    """Non-zero exit, one error line, no traceback, and the expected words. (Click's own usage
    errors, such as a --format outside its choices, add its two usage lines above the error.)"""
    assert res.exit_code != 0, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [line for line in res.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output[-2000:]
    assert len(lines) == 1 or lines[0].startswith("Usage:"), res.output[-2000:]
    for word in words:
        assert word in res.output, (word, res.output)


@pytest.fixture(scope="module")
def fixture_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    location = tmp_path_factory.mktemp("hostile") / "warehouse"
    metric_fixtures.build(Warehouse(location))
    return location


def analytics_json(warehouse: Path, *args: str) -> dict:
    res = cli(
        "analytics",
        "--period",
        "2024-05",
        "--timezone",
        "UTC",
        "--currency",
        "USD",
        "--format",
        "json",
        *args,
        warehouse=warehouse,
    )
    assert res.exit_code == 0, res.output[-2000:]
    return json.loads(res.output)["summary"]


# -- SQL fragments ---------------------------------------------------------------------------------


def test_sql_fragments_in_filter_values_match_nothing_and_change_nothing(
    fixture_warehouse: Path,
) -> None:
    """``--filter "country=TR' OR 1=1 --"`` is one value compared as a whole: it matches no
    payment, and no table gets a new version."""
    versions = Warehouse(fixture_warehouse).versions()
    baseline = analytics_json(fixture_warehouse)
    assert baseline["transactions"] == 10 and baseline["gross_revenue"] == 339.0
    assert analytics_json(fixture_warehouse, "--filter", "country=TR")["transactions"] > 0
    # every fragment on one filter (a --filter with several values), then one on every filter
    cases = [["--filter", "country=" + ",".join(v for v in SQL_FRAGMENTS if "," not in v)]]
    cases += [["--filter", f"country={value}"] for value in SQL_FRAGMENTS[:3]]
    cases += [[arg for key in FILTER_KEYS for arg in ("--filter", f"{key}={SQL_FRAGMENTS[0]}")]]
    for args in cases:
        got = analytics_json(fixture_warehouse, *args)
        assert got["transactions"] == 0 and got["gross_revenue"] == 0, (args, got)
    # a fragment beside a real value: exactly the real value's rows, no more
    got = analytics_json(fixture_warehouse, "--filter", f"country=TR,{SQL_FRAGMENTS[0]}")
    assert got == analytics_json(fixture_warehouse, "--filter", "country=TR")
    assert Warehouse(fixture_warehouse).versions() == versions


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--filter", "country' OR 1=1 --=TR"], ["unknown filter"]),
        (["--filter", "1=1; DROP TABLE transactions"], ["unknown filter"]),
        (["--currency", "USD'; DROP TABLE fx_rates; --"], ["currency"]),
        (["--currency", "123"], ["currency"]),
        (["--timezone", "UTC'; --"], ["time zone"]),
        (["--timezone", "../../../etc/localtime"], []),  # zoneinfo refuses keys outside TZPATH
        (["--period", "2024-05'; DROP TABLE transactions; --"], ["cannot read period"]),
        (["--period", "2024-05; SELECT 1"], ["cannot read period"]),
        (["--format", "xml"], ["xml"]),
    ],
)
def test_sql_fragments_elsewhere_are_refused(
    fixture_warehouse: Path, args: list[str], words: list[str]
) -> None:
    versions = Warehouse(fixture_warehouse).versions()
    base = [] if "--period" in args or "--timezone" in args else ["--period", "2024-05"]
    base += [] if "--timezone" in args else ["--timezone", "UTC"]
    assert_refused(cli("analytics", *base, *args, warehouse=fixture_warehouse), *words)
    assert Warehouse(fixture_warehouse).versions() == versions


# -- date ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--start", "1970-01-01", "--end", "2100-12-31"], ["longer than"]),
        (["--start", "2024-05-31", "--end", "2024-05-01"], ["before start"]),
        (["--start", "2024-02-30", "--end", "2024-03-01"], ["not a date"]),
        (["--start", "24-05-01", "--end", "2024-05-02"], ["not a date"]),
        (["--start", "2024-05-01"], ["go together"]),
        (["--period", "last-99999999-days"], ["period"]),
        (["--period", "9999-12"], []),
        (["--period", "0001-01"], []),
    ],
)
def test_huge_and_inverted_date_ranges_are_refused(
    fixture_warehouse: Path, args: list[str], words: list[str]
) -> None:
    assert_refused(
        cli("analytics", "--timezone", "UTC", *args, warehouse=fixture_warehouse), *words
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--start", "0001-01-01", "--end", "9999-12-31"],
        ["--start", "9999-12-31", "--end", "9999-12-31"],
        ["--period", "9999-12-31"],
        ["--period", "0001-01-01"],
    ],
)
def test_dates_at_the_calendars_edge_are_refused(fixture_warehouse: Path, args: list[str]) -> None:
    assert_refused(cli("analytics", "--timezone", "UTC", *args, warehouse=fixture_warehouse))


# -- wrong types at the metric API -------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        {"country": None},
        {"country": ""},
        {"country": []},
        {"country": {"TR": 1}},
        {"country": 5},
        {"country": 1.5},
        {"country": True},
        {"country": b"TR"},
        {"country": [["TR"]]},
        {5: "TR"},
        {"country": "TR\x00"},
        {"colour": "red"},
        "country=TR",
        ["country=TR"],
        42,
    ],
)
def test_wrong_filter_types_are_refused_or_harmless(
    fixture_warehouse: Path, filters: object
) -> None:
    """Each wrong type either raises (MetricError, or a TypeError naming the type) or counts no
    more than the unfiltered call; nothing is written."""
    wh = Warehouse(fixture_warehouse)
    versions = wh.versions()
    period = metrics.Period.month(2024, 5, "UTC")
    with metrics.MetricSession.open(wh) as session:
        everything = metrics.transaction_analytics(session, period, None, "USD")[
            "total_transactions"
        ]
        try:
            got = metrics.transaction_analytics(session, period, filters, "USD")[
                "total_transactions"
            ]
        except (ValueError, TypeError) as exc:  # MetricError is a ValueError
            assert str(exc) and "\n" not in str(exc)
        else:
            assert got <= everything
        # the session still answers after a refused call
        assert (
            metrics.transaction_analytics(session, period, None, "USD")["total_transactions"]
            == everything
        )
    assert wh.versions() == versions


@pytest.mark.parametrize(
    "args", [(12, 13), (None, None), ("2024-05-01", 5), (b"2024-05-01", "2024-05-02")]
)
def test_wrong_period_types_are_refused(args: tuple) -> None:
    with pytest.raises(metrics.PeriodError):
        metrics.Period.between(*args, "UTC")


# -- ingest: paths, sources, mappings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "../../etc/passwd",
        "platform-json/../stripe",
        "analytics_lib.warehouse.sources.platform_json:PlatformJsonSource",
        "os:system",
        "PLATFORM-JSON",
        "platform-json\x00",
        "",
        "csv; rm -rf /",
    ],
)
def test_unknown_sources_are_refused_and_write_nothing(tmp_path: Path, source: str) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [payment()])
    assert_refused(
        cli("ingest", str(path), "--source", source, warehouse=tmp_path / "wh"), "unknown source"
    )
    assert not (tmp_path / "wh").exists()


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    """A named pipe, a device or a folder is not read (reading a FIFO with no writer would hang)."""
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    good = write_jsonl(tmp_path / "a.jsonl", [payment()])
    for args in (
        [str(fifo), "--source", "platform-json"],
        ["/dev/zero", "--source", "online-retail"],
        ["/dev/null", "--source", "stripe"],
        [str(tmp_path), "--source", "platform-json"],
        [str(good), "--source", "csv", "--mapping", str(fifo)],
        [str(good), "--source", "csv", "--mapping", str(tmp_path)],
        [str(good), "--source", "csv", "--mapping", "/etc/passwd"],
    ):
        assert_refused(cli("ingest", *args, warehouse=tmp_path / "wh"))
    assert not (tmp_path / "wh").exists()


def test_a_path_with_traversal_stores_only_the_file_name(tmp_path: Path) -> None:
    """``ingest ../x/./a.jsonl`` reads the file the path names (the user's own access) and the
    warehouse keeps only the base name, never the folders it came through."""
    (tmp_path / "deep" / "er").mkdir(parents=True)
    write_jsonl(tmp_path / "deep" / "a.jsonl", [payment("p1"), payment("p2", amount=-1)])
    twisted = tmp_path / "deep" / "er" / ".." / "." / "a.jsonl"
    wh = Warehouse(tmp_path / "wh")
    result = ingest(twisted, "platform-json", wh)
    assert (result.file, result.inserted, result.rejected) == ("a.jsonl", 1, 1)
    with wh.snapshot(tables=["ingest_batches", "ingest_rejects"]) as snap:
        stored = snap.con.sql(
            "SELECT file FROM ingest_batches UNION ALL SELECT file FROM ingest_rejects"
        ).fetchall()
    assert stored == [("a.jsonl",), ("a.jsonl",)]


@pytest.mark.parametrize(
    "name",
    [
        "-starts-with-dash.jsonl",
        "sp ace.jsonl",
        "ünï çødé.jsonl",
        "new\nline.jsonl",
        "semi;colon'quote.jsonl",
        "x" * 200 + ".jsonl",
    ],
)
def test_odd_file_names_are_ingested_or_refused_in_one_line(tmp_path: Path, name: str) -> None:
    path = write_jsonl(tmp_path / name, [payment()])
    res = cli("ingest", "--source", "platform-json", "--", str(path), warehouse=tmp_path / "wh")
    assert res.exit_code == 0, res.output
    assert "1 rows read = 1 inserted" in res.output
    with Warehouse(tmp_path / "wh").snapshot(tables=["ingest_batches"]) as snap:
        assert snap.scalar("SELECT file FROM ingest_batches") == name


def test_mapping_files_that_attack_the_parser_are_refused(tmp_path: Path) -> None:
    """A YAML alias bomb, a Python-object tag, a table name with traversal, a bookkeeping table:
    one-line IngestError, quickly, nothing written."""
    data = tmp_path / "a.csv"
    data.write_text("id,amount\n1,2\n", encoding="utf-8")
    bomb = (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "table: *i\n"
    )
    mappings = {
        "bomb": bomb,
        "python-tag": "table: !!python/object/apply:os.system ['echo pwned']\ncolumns: {}\n",
        "traversal": "table: ../../etc/passwd\ncolumns: {id: id}\n",
        "bookkeeping": "table: ingest_batches\ncolumns: {batch_id: id}\n",
        "not-a-mapping": "- table\n- columns\n",
        "binary": "\udcff",
    }
    wh = Warehouse(tmp_path / "wh")
    for name, text in mappings.items():
        mapping = tmp_path / f"{name}.yaml"
        mapping.write_text(text, encoding="utf-8", errors="surrogateescape")
        with pytest.raises(IngestError) as info:
            ingest(data, "csv", wh, mapping=mapping)
        assert "\n" not in str(info.value), name
    assert not (tmp_path / "wh").exists()
    assert not Path("pwned").exists()


def test_a_warehouse_location_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """Found here: ``--warehouse some-file`` made reads see an empty warehouse and the first
    write fail with a NotADirectoryError traceback."""
    afile = tmp_path / "afile"
    afile.write_text("not a warehouse", encoding="utf-8")
    path = write_jsonl(tmp_path / "a.jsonl", [payment()])
    assert_refused(
        cli("ingest", str(path), "--source", "platform-json", warehouse=afile), "not a folder"
    )
    assert_refused(cli("info", warehouse=afile), "not a folder")
    assert_refused(
        cli("ingest", str(path), "--source", "platform-json", warehouse=afile / "sub"),
        "cannot create the warehouse folder",
    )
    with pytest.raises(WarehouseError, match="not a folder"):
        Warehouse(afile)
    assert afile.read_text(encoding="utf-8") == "not a warehouse"


@pytest.mark.parametrize(
    "name", ["../transactions", "transactions/../../x", "transactions; DROP", "TRANSACTIONS", ""]
)
def test_table_names_outside_the_schema_are_refused(tmp_path: Path, name: str) -> None:
    wh = Warehouse(tmp_path / "wh")
    with pytest.raises((KeyError, ValueError)):
        wh.table(name)
    with pytest.raises((KeyError, ValueError)):
        wh.upsert(name, [{"x": 1}])
    with wh.snapshot(tables=["transactions"]) as snap, pytest.raises(KeyError):
        snap.count(name)
    created = list((tmp_path / "wh").glob("*")) if (tmp_path / "wh").exists() else []
    assert [p.name for p in created if p.name != "_locks"] == []
