"""Report data exports: Excel, CSV and JSON round trips, formula neutralisation, time zones,
missing values, sheet names, hostile file names and the format registry."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import openpyxl  # reads the workbooks back (the dev extra installs it)
import pandas as pd
import pytest
from openpyxl.utils.escape import unescape

from analytics_lib.reporting.exports import (
    EXPORTERS,
    CsvExporter,
    ExcelExporter,
    Exporter,
    ExporterRegistry,
    ExportError,
    JsonExporter,
    ReportData,
    UnknownFormatError,
    column_kind,
    export,
    neutralise_formula,
    safe_name,
)

FORMULA_STARTS = ["=", "+", "-", "@", "\t", "\r"]


def by_provider() -> pd.DataFrame:
    return pd.DataFrame({
        "provider": ["stripe", "iyzico", "paypal"],
        "country": ["Türkiye", "Deutschland", "日本"],
        "transactions": [120, 45, 7],
        "gross_revenue": [12345.678, -250.5, np.nan],
        "success_rate": [0.9512, 0.5, None],
        # 21:30 UTC on 24 Nov is 00:30 on 25 Nov in Istanbul (UTC+3)
        "last_payment_at": pd.to_datetime(["2026-11-24T21:30:00Z", "2026-11-25T06:00:00Z", None], utc=True),
        "day": pd.to_datetime(["2026-11-25", "2026-11-24", "2026-11-23"]),
    })


def sample(**meta) -> ReportData:
    return ReportData(
        title="Daily operations 2026-11-25",
        summary={"gross_revenue": 12095.18, "success_rate": 0.93, "transactions": 172,
                 "ltv_to_cac": 3.4, "note": None},
        sections={
            "transactions": {"summary": {"failed": 12, "failure_rate": 0.07},
                             "tables": {"by_provider": by_provider(),
                                        "failure_reasons": pd.DataFrame({"failure_reason": ["insufficient_funds"],
                                                                         "failures": [9]})}},
            "fraud": {"summary": {"fraud_alerts": 2}, "tables": {}},
        },
        meta={"period": {"start": "2026-11-25", "end": "2026-11-25"}, "currency": "USD",
              "generated_at": datetime(2026, 11, 26, 5, 0, tzinfo=UTC), **meta},
    )


def read_workbook(content: bytes):
    return openpyxl.load_workbook(io.BytesIO(content))


def header_and_rows(ws) -> tuple[list, list[list]]:
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    return rows[0], rows[1:]


def read_csv_text(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


# -- Excel ------------------------------------------------------------------------------------


def test_excel_round_trip_layout_formats_and_values():
    wb = read_workbook(EXPORTERS["xlsx"].to_bytes(sample(timezone="Europe/Istanbul")))
    assert wb.sheetnames == ["Summary", "transactions.by_provider", "transactions.failure_reasons"]

    ws = wb["transactions.by_provider"]
    header, rows = header_and_rows(ws)
    assert header == ["provider", "country", "transactions", "gross_revenue", "success_rate",
                      "last_payment_at", "day"]
    assert all(ws.cell(1, c).font.b for c in range(1, len(header) + 1))
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:G4"
    assert rows[0][:5] == ["stripe", "Türkiye", 120, pytest.approx(12345.678), pytest.approx(0.9512)]
    assert ws["D2"].number_format == "#,##0.00"
    assert ws["E2"].number_format == "0.00%"
    assert ws["C2"].number_format == "General"
    assert ws["G2"].number_format == "yyyy-mm-dd"
    assert ws["F2"].number_format == "yyyy-mm-dd hh:mm:ss"
    # fitted widths: the country column is wider than the default, none beyond the cap
    widths = {k: d.width for k, d in ws.column_dimensions.items()}
    assert widths["B"] >= len("Deutschland")
    assert max(widths.values()) <= ExcelExporter.max_width

    summary = wb["Summary"]
    assert summary["A1"].value == "Daily operations 2026-11-25"
    values = {(r[0], r[1]): r[2] for r in summary.iter_rows(min_row=4, values_only=True) if r[0]}
    assert values[("summary", "gross_revenue")] == pytest.approx(12095.18)
    assert values[("transactions", "failure_rate")] == pytest.approx(0.07)
    assert values[("report", "currency")] == "USD"
    assert values[("report", "period.start")] == "2026-11-25"
    assert ("summary", "note") in values and values[("summary", "note")] is None
    cells = {(r[0].value, r[1].value): r[2] for r in summary.iter_rows(min_row=4) if r[0].value}
    assert cells[("summary", "gross_revenue")].number_format == "#,##0.00"
    assert cells[("summary", "success_rate")].number_format == "0.00%"
    assert cells[("summary", "ltv_to_cac")].number_format == "0.00"
    # the contents block links to every table sheet
    links = [c.hyperlink.location for row in summary.iter_rows() for c in row if c.hyperlink]
    assert links == ["'transactions.by_provider'!A1", "'transactions.failure_reasons'!A1"]


def test_excel_tz_aware_datetimes_are_wall_clock_in_the_report_zone():
    local = read_workbook(EXPORTERS["xlsx"].to_bytes(sample(timezone="Europe/Istanbul")))
    utc = read_workbook(EXPORTERS["xlsx"].to_bytes(sample()))
    assert local["transactions.by_provider"]["F2"].value == datetime(2026, 11, 25, 0, 30)
    assert local["transactions.by_provider"]["F3"].value == datetime(2026, 11, 25, 9, 0)
    assert utc["transactions.by_provider"]["F2"].value == datetime(2026, 11, 24, 21, 30)
    # naive datetimes are already wall-clock times: unchanged
    assert local["transactions.by_provider"]["G2"].value == datetime(2026, 11, 25)
    generated = {r[1]: r[2] for r in local["Summary"].iter_rows(min_row=4, values_only=True)}["generated_at"]
    assert generated == datetime(2026, 11, 26, 8, 0) and generated.tzinfo is None


def test_time_zone_also_comes_from_the_period():
    data = sample()
    data.meta["period"] = {"timezone": "Europe/Istanbul"}
    wb = read_workbook(EXPORTERS["xlsx"].to_bytes(data))
    assert wb["transactions.by_provider"]["F2"].value == datetime(2026, 11, 25, 0, 30)


def test_missing_values_are_empty_cells_null_and_empty_strings():
    frame = pd.DataFrame({
        "amount": [1.5, np.nan, None, math.inf],
        "label": ["a", None, pd.NA, "d"],
        "count": pd.array([1, None, 3, 4], dtype="Int64"),
        "at": pd.to_datetime(["2026-01-01", None, "2026-01-03", "2026-01-04"]),
    })
    data = ReportData("t", sections={"s": {"tables": {"t": frame}}})
    ws = read_workbook(EXPORTERS["xlsx"].to_bytes(data))["s.t"]
    _, rows = header_and_rows(ws)
    assert rows[1] == [None, None, None, None]
    assert rows[2][0] is None and rows[2][1] is None and rows[2][2] == 3
    assert rows[3][0] is None  # infinity has no Excel value: empty like NaN

    lines = read_csv_text(EXPORTERS["csv"].to_bytes(data))
    assert lines[2] == ["", "", "", ""]
    assert lines[1] == ["1.5", "a", "1", "2026-01-01T00:00:00"]

    doc = json.loads(EXPORTERS["json"].to_bytes(data))
    records = doc["sections"]["s"]["tables"]["t"]
    assert records[1] == {"amount": None, "label": None, "count": None, "at": None}
    assert records[3]["amount"] is None


def test_excel_numbers_stay_numbers_and_no_cell_is_a_formula():
    frame = pd.DataFrame({"refunds": [-12.5, -3.0], "delta": [-7, 0], "note": ["-7", "=1+1"]})
    data = ReportData("t", summary={"net_revenue": -99.5}, sections={"s": {"tables": {"t": frame}}})
    wb = read_workbook(EXPORTERS["xlsx"].to_bytes(data))
    _, rows = header_and_rows(wb["s.t"])
    assert rows == [[-12.5, -7, "'-7"], [-3, 0, "'=1+1"]]
    assert wb["s.t"]["A2"].data_type == "n"
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            assert all(cell.data_type != "f" for cell in row)


def test_huge_integers_are_text_in_excel_and_exact_elsewhere():
    big = 2**60 + 1
    data = ReportData("t", sections={"s": {"tables": {"t": pd.DataFrame({"id": [big]}, dtype=object)}}})
    assert read_workbook(EXPORTERS["xlsx"].to_bytes(data))["s.t"]["A2"].value == str(big)
    assert json.loads(EXPORTERS["json"].to_bytes(data))["sections"]["s"]["tables"]["t"][0]["id"] == big


def test_excel_refuses_a_table_larger_than_a_sheet(monkeypatch):
    import analytics_lib.reporting.exports as exports

    monkeypatch.setattr(exports, "EXCEL_MAX_ROWS", 3)
    data = ReportData("t", sections={"s": {"tables": {"big": pd.DataFrame({"x": range(5)})}}})
    with pytest.raises(ExportError, match="'big'.*export it as CSV"):
        EXPORTERS["xlsx"].to_bytes(data)


# -- formula neutralisation --------------------------------------------------------------------


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_formula_text_is_neutralised_in_csv_and_excel(start):
    payload = f"{start}HYPERLINK(\"http://evil.example\",\"x\")"
    frame = pd.DataFrame({f"{start}header": [payload, "plain"], "value": [-5, 5]})
    data = ReportData(f"{start}title", summary={"tag": payload},
                      sections={f"{start}section": {"tables": {f"{start}table": frame}}})

    wb = read_workbook(EXPORTERS["xlsx"].to_bytes(data))
    sheet = wb.sheetnames[1]
    # a sheet name may not start with a quote: formula characters get "_", control ones go
    assert sheet == ("section.table" if start in "\t\r" else f"_{start}section.{start}table")
    ws = wb[sheet]
    # xlsx stores a carriage return as _x000D_ (Excel reads it back as CR; openpyxl does not)
    assert unescape(ws["A1"].value) == "'" + f"{start}header"
    assert unescape(ws["A2"].value) == "'" + payload and ws["A2"].data_type == "s"
    assert ws["A3"].value == "plain"
    assert ws["B2"].value == -5
    assert unescape(wb["Summary"]["A1"].value) == "'" + f"{start}title"
    summary_cells = [c for row in wb["Summary"].iter_rows() for c in row
                     if isinstance(c.value, str) and unescape(c.value) == "'" + payload]
    assert len(summary_cells) == 1

    csv_exporter = EXPORTERS["csv"]
    table_csv = read_csv_text(csv_exporter.table_csv(data, frame))
    assert table_csv[0] == ["'" + f"{start}header", "value"]
    assert table_csv[1] == ["'" + payload, "-5"]
    summary_csv = read_csv_text(csv_exporter.summary_csv(data))
    assert ["summary", "tag", "'" + payload] in summary_csv
    assert ["report", "title", "'" + f"{start}title"] in summary_csv


def test_neutralise_formula_touches_only_text():
    for start in FORMULA_STARTS:
        assert neutralise_formula(f"{start}1") == f"'{start}1"
    assert neutralise_formula("\uff1dcmd") == "'\uff1dcmd"  # full-width equals sign
    assert neutralise_formula(-5) == -5
    assert neutralise_formula(-5.25) == -5.25
    assert neutralise_formula("") == ""
    assert neutralise_formula("Türkiye") == "Türkiye"
    assert neutralise_formula(" =1") == " =1"
    assert neutralise_formula(None) is None


def test_negative_numbers_stay_numbers_in_csv_and_json():
    frame = pd.DataFrame({"net_revenue": [-120.25, 3.5], "delta": [-1, 2]})
    data = ReportData("t", sections={"s": {"tables": {"t": frame}}})
    lines = read_csv_text(EXPORTERS["csv"].to_bytes(data))
    assert lines[1] == ["-120.25", "-1"]
    back = pd.read_csv(io.BytesIO(EXPORTERS["csv"].to_bytes(data)))
    assert back["net_revenue"].tolist() == [-120.25, 3.5] and back["delta"].tolist() == [-1, 2]
    records = json.loads(EXPORTERS["json"].to_bytes(data))["sections"]["s"]["tables"]["t"]
    assert records[0] == {"net_revenue": -120.25, "delta": -1}


def test_json_keeps_text_as_it_is():
    data = ReportData("=t", sections={"s": {"tables": {"t": pd.DataFrame({"x": ["=1+1", "-2"]})}}})
    doc = json.loads(EXPORTERS["json"].to_bytes(data))
    assert doc["meta"]["title"] == "=t"
    assert doc["sections"]["s"]["tables"]["t"] == [{"x": "=1+1"}, {"x": "-2"}]


# -- CSV and JSON ------------------------------------------------------------------------------


def test_csv_folder_round_trip_iso_dates_and_unicode(tmp_path):
    paths = export(sample(timezone="Europe/Istanbul"), tmp_path, formats="csv", basename="daily")
    assert [p.name for p in paths] == ["daily__summary.csv", "daily__transactions__by_provider.csv",
                                       "daily__transactions__failure_reasons.csv"]
    raw = paths[1].read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM by default
    back = pd.read_csv(paths[1])
    assert back["country"].tolist() == ["Türkiye", "Deutschland", "日本"]
    assert back["gross_revenue"].tolist()[:2] == [12345.678, -250.5]
    assert back["last_payment_at"].tolist()[:2] == ["2026-11-25T00:30:00+03:00", "2026-11-25T09:00:00+03:00"]
    assert back["day"].tolist()[0] == "2026-11-25T00:00:00"
    parsed = pd.to_datetime(back["last_payment_at"], utc=True)
    assert parsed.iloc[0] == pd.Timestamp("2026-11-24T21:30:00Z")
    summary = pd.read_csv(paths[0])
    assert list(summary.columns) == ["section", "metric", "value"]
    assert summary.iloc[0].tolist() == ["report", "title", "Daily operations 2026-11-25"]
    assert ["fraud", "fraud_alerts", "2"] in summary.astype(str).values.tolist()


def test_csv_bom_option_for_excel_users():
    data = ReportData("t", sections={"s": {"tables": {"t": pd.DataFrame({"country": ["Türkiye"]})}}})
    raw = CsvExporter(bom=True).to_bytes(data)
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.decode("utf-8-sig").splitlines() == ["country", "Türkiye"]
    assert CsvExporter(delimiter=";").to_bytes(ReportData("t", sections={"s": {"tables": {
        "t": pd.DataFrame({"a": [1], "b": [2]})}}})).decode() == "a;b\r\n1;2\r\n"
    with pytest.raises(ExportError):
        CsvExporter(delimiter='"')


def test_csv_to_bytes_is_one_csv_for_one_table_and_a_zip_for_more():
    one = ReportData("t", sections={"s": {"tables": {"t": pd.DataFrame({"a": [1]})}}})
    assert EXPORTERS["csv"].to_bytes(one) == b"a\r\n1\r\n"
    download = EXPORTERS["csv"].download(one, "my table")
    assert (download.filename, download.media_type) == ("my_table.csv", "text/csv; charset=utf-8")

    many = sample()
    content = EXPORTERS["csv"].to_bytes(many)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.namelist() == ["summary.csv", "transactions__by_provider.csv",
                                      "transactions__failure_reasons.csv"]
        assert archive.read("transactions__failure_reasons.csv") == b"failure_reason,failures\r\ninsufficient_funds,9\r\n"
    download = EXPORTERS["csv"].download(many, "daily")
    assert (download.filename, download.media_type) == ("daily.zip", "application/zip")

    only_summary = ReportData("t", summary={"x": 1})
    assert read_csv_text(EXPORTERS["csv"].to_bytes(only_summary))[-1] == ["summary", "x", "1"]


def test_json_document_shape_nan_and_dates():
    doc = json.loads(EXPORTERS["json"].to_bytes(sample(timezone="Europe/Istanbul")).decode("utf-8"))
    assert set(doc) == {"meta", "summary", "sections"}
    assert doc["meta"]["title"] == "Daily operations 2026-11-25"
    assert doc["meta"]["generated_at"] == "2026-11-26T08:00:00+03:00"
    assert doc["summary"] == {"gross_revenue": 12095.18, "success_rate": 0.93, "transactions": 172,
                              "ltv_to_cac": 3.4, "note": None}
    assert doc["sections"]["fraud"] == {"summary": {"fraud_alerts": 2}, "tables": {}}
    records = doc["sections"]["transactions"]["tables"]["by_provider"]
    assert records[0]["country"] == "Türkiye"
    assert records[0]["last_payment_at"] == "2026-11-25T00:30:00+03:00"
    assert records[0]["day"] == "2026-11-25T00:00:00"
    assert records[2]["gross_revenue"] is None and records[2]["success_rate"] is None
    assert records[2]["last_payment_at"] is None
    raw = EXPORTERS["json"].to_bytes(sample())
    assert "Türkiye".encode() in raw and b"NaN" not in raw


def test_tables_with_index_multiindex_columns_duplicates_and_odd_values():
    pivot = pd.DataFrame({"m0": [1.0], "m1": [0.5]}, index=pd.Index(["2026-01"], name="cohort_month"))
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("revenue", "TRY"), ("revenue", "USD")]))
    dupes = pd.DataFrame([[1, 2]], columns=["x", "x"])
    odd = pd.DataFrame({"v": [date(2026, 1, 2), {"a": 1}, [1, 2], b"bytes", "a\x00b\ud800c", np.int64(4), True]})
    data = ReportData("t", sections={"s": {"tables": {"pivot": pivot, "multi": multi, "dupes": dupes, "odd": odd}}})
    doc = json.loads(EXPORTERS["json"].to_bytes(data))["sections"]["s"]["tables"]
    assert doc["pivot"] == [{"cohort_month": "2026-01", "m0": 1.0, "m1": 0.5}]
    assert doc["multi"] == [{"revenue / TRY": 1, "revenue / USD": 2}]
    assert doc["dupes"] == [{"x": 1, "x_2": 2}]
    assert [r["v"] for r in doc["odd"]] == ["2026-01-02", {"a": 1}, [1, 2], "bytes", "a\x00b\ufffdc", 4, True]
    wb = read_workbook(EXPORTERS["xlsx"].to_bytes(data))
    assert [c.value for c in wb["s.odd"]["A"]][1:4] == [datetime(2026, 1, 2), '{"a": 1}', "[1, 2]"]
    assert read_csv_text(EXPORTERS["csv"].table_csv(data, odd))[1:3] == [["2026-01-02"], ['{"a": 1}']]


# -- names -------------------------------------------------------------------------------------


def test_sheet_names_unique_short_and_valid():
    frame = pd.DataFrame({"a": [1]})
    sections = {
        "a/b": {"tables": {"t": frame}},
        "a:b": {"tables": {"t": frame}},
        "A?B": {"tables": {"t": frame}},
        "Summary": {"tables": {}},
        "s": {"tables": {"Summary": frame, "history": frame, "'quoted'": frame, "[x]*": frame,
                         "x" * 40: frame, "x" * 40 + "y": frame, "Türkiye 🇹🇷" * 4: frame}},
        "very_long_section_name_for_testing": {"tables": {"failures_by_payment_method": frame,
                                                          "failures_by_payment_method_and_country": frame,
                                                          "failures_by_payment_method_and_country_2": frame}},
    }
    data = ReportData("t", sections=sections)
    names = read_workbook(EXPORTERS["xlsx"].to_bytes(data)).sheetnames
    assert names[0] == "Summary" and len(names) == 14
    assert len({n.casefold() for n in names}) == len(names)
    assert "history" not in {n.casefold() for n in names}
    for name in names:
        assert len(name.encode("utf-16-le")) // 2 <= 31
        assert not set(name) & set("[]:*?/\\")
        assert not name.startswith("'") and not name.endswith("'")
    assert names[1:4] == ["a_b.t", "a_b.t~2", "A_B.t~3"]
    assert "failures_by_payment_method" in names  # the table alone when section.table is too long


def test_safe_name_never_leaves_the_folder():
    for hostile in ["../x", "../../etc/passwd", "/etc/passwd", "..", ".", "a\x00b", "C:\\Windows\\x",
                    "~/.ssh/id", "-rf", " ", "", "con", "a/../../b"]:
        name = safe_name(hostile)
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert name not in ("", ".", "..") and not name.startswith((".", "-"))
        assert Path(name).name == name
    assert safe_name("") == "report"
    assert safe_name("con") == "_con"
    assert safe_name("Türkiye raporu") == "Türkiye_raporu"
    assert len(safe_name("ü" * 500).encode()) <= 72


def test_hostile_names_cannot_write_outside_out_dir(tmp_path):
    out = tmp_path / "out"
    frame = pd.DataFrame({"a": [1]})
    data = ReportData(
        "../../title",
        sections={
            "../../../escape": {"tables": {"../../t": frame, "/etc/passwd": frame}},
            "/abs/olute": {"tables": {"a\x00b": frame, "..\\..\\win": frame}},
            "..": {"tables": {"..": frame}},
        },
    )
    for basename in ["../../../pwned", "/tmp/pwned", "..", "a/../../b", "x\x00y", ""]:
        paths = export(data, out, formats=("xlsx", "csv", "json"), basename=basename)
        for path in paths:
            assert path.resolve().parent == out.resolve()
            assert path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert all(p.parent == out for p in out.rglob("*"))
    assert not list(out.glob(".*"))  # no temporary files left behind
    names = {p.name for p in out.iterdir()}
    assert "pwned.xlsx" in names and "report.json" in names
    assert "pwned__escape__t.csv" in names and "pwned__section__table.csv" in names


# -- registry and export() ------------------------------------------------------------------------


def test_unknown_format_is_a_clear_error_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"unknown export format 'pdf'; known formats: csv, json, xlsx"):
        export(sample(), tmp_path / "out", formats=("xlsx", "pdf"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(UnknownFormatError) as info:
        EXPORTERS["../../etc/passwd"]
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert "'../../etc/passwd'" in str(info.value)
    assert EXPORTERS.get("pdf") is None and "pdf" not in EXPORTERS
    with pytest.raises(ExportError, match="no export format"):
        export(sample(), tmp_path, formats=())
    with pytest.raises(TypeError, match="ReportData"):
        export({"title": "x"}, tmp_path)


def test_format_names_are_forgiving_and_deduplicated(tmp_path):
    paths = export(sample(), tmp_path, formats=["XLSX", ".json", "json", "xlsx,json"], basename="r")
    assert [p.name for p in paths] == ["r.xlsx", "r.json"]
    paths = export(sample(), tmp_path / "bom", formats=[CsvExporter(bom=True)], basename="r")
    assert all(p.read_bytes().startswith(b"\xef\xbb\xbf") for p in paths)


def test_a_new_format_registers_in_one_line(tmp_path):
    class Html(Exporter):
        name = "html"
        extension = "html"
        media_type = "text/html"

        def to_bytes(self, data):
            return f"<h1>{data.title}</h1>".encode()

    registry = ExporterRegistry()
    registry.register(JsonExporter())
    registry.register(Html())
    assert sorted(registry) == ["html", "json"]
    with pytest.raises(ExportError, match="already registered"):
        registry.register(Html())
    registry.register(Html(), replace=True)

    class Bad(Html):
        name = "../x"

    with pytest.raises(ExportError, match="format name"):
        registry.register(Bad())
    path = registry["html"].write(sample(), tmp_path, "r")[0]
    assert path.read_text() == "<h1>Daily operations 2026-11-25</h1>"
    assert export(sample(), tmp_path, formats=[Html()], basename="x")[0].name == "x.html"
    assert registry["HTML"] is registry["html"]


def test_report_data_validation():
    with pytest.raises(ExportError, match="unknown keys"):
        ReportData("t", sections={"s": {"summary": {}, "table": {}}})
    with pytest.raises(ExportError, match="mapping"):
        ReportData("t", sections={"s": pd.DataFrame()})
    with pytest.raises(ExportError, match="time zone"):
        ReportData("t", meta={"timezone": "Mars/Olympus"})
    data = ReportData("t", sections={"s": {"tables": {"records": [{"a": 1}], "series": pd.Series([1], name="b")}}})
    assert [list(f.columns) for _, _, f in data.tables()] == [["a"], ["b"]]


def test_column_kinds():
    money = ["gross_revenue", "total_volume", "disputed_amount", "fees", "refunds", "chargebacks", "mrr",
             "new_mrr", "arr", "average_transaction_value", "marketing_spend", "cac", "ltv", "historical_clv",
             "arpa", "revenue_per_customer"]
    percent = ["success_rate", "share_of_revenue", "processing_cost_ratio", "refund_rate_amount",
               "revenue_growth_vs_previous", "net_revenue_retention", "fee_per_net_revenue", "change_percent",
               "international_share"]
    assert {n: column_kind(n) for n in money} == dict.fromkeys(money, "money")
    assert {n: column_kind(n) for n in percent} == dict.fromkeys(percent, "percent")
    assert column_kind("ltv_to_cac") == column_kind("quick_ratio") == "multiple"
    for plain in ["transactions", "carrier", "p_value", "amount_minor", "hour", "latency_p50_ms"]:
        assert column_kind(plain) is None, plain


# -- from a real metric result --------------------------------------------------------------------


def test_from_analytics_on_a_small_real_result(warehouse, tmp_path):
    from analytics_lib import metrics
    from analytics_lib.synth import generate

    generate(warehouse, customers=300, months=6, seed=1, end=date(2026, 10, 31))
    period = metrics.Period.parse("last-month", timezone="Europe/Istanbul", today=date(2026, 11, 5))
    result = metrics.comprehensive_analytics(period, warehouse=warehouse)
    data = ReportData.from_analytics(result)

    assert data.title == "Comprehensive analytics 2026-10"
    assert data.timezone == "Europe/Istanbul"
    assert data.meta["currency"] == result.currency
    assert data.meta["warehouse_versions"] == result.versions
    assert set(data.sections) == set(result.sections) | {"trends"}
    n_tables = sum(len(s.tables) for s in result.sections.values()) + 1

    paths = export(data, tmp_path / "out", basename="comprehensive")
    assert len(paths) == 1 + (1 + n_tables) + 1

    wb = openpyxl.load_workbook(tmp_path / "out" / "comprehensive.xlsx")
    assert wb.sheetnames[0] == "Summary" and len(wb.sheetnames) == 1 + n_tables
    summary = {(r[0], r[1]): r[2] for r in wb["Summary"].iter_rows(min_row=4, values_only=True) if r[0]}
    assert summary[("summary", "gross_revenue")] == pytest.approx(result.summary["gross_revenue"])
    assert summary[("report", "period.label")] == "2026-10"
    assert summary[("recurring_revenue", "conventions.cancel_at")] == "period_end"
    movements = wb["recurring_revenue.movements"]
    header, rows = header_and_rows(movements)
    # interval bounds are tz-aware UTC in the metric layer; Excel shows Istanbul wall-clock time
    assert rows[0][header.index("interval_start")] == datetime(2026, 10, 1)
    trends = wb["trends.trends"]
    assert header_and_rows(trends)[0][:3] == ["metric", "current_value", "previous_value"]

    doc = json.loads((tmp_path / "out" / "comprehensive.json").read_text(encoding="utf-8"))
    assert doc["summary"]["transactions"] == result.summary["transactions"]
    assert doc["meta"]["period"]["timezone"] == "Europe/Istanbul"
    providers = doc["sections"]["transactions"]["tables"]["by_provider"]
    assert len(providers) == len(result.sections["transactions"].tables["by_provider"])
    assert doc["sections"]["recurring_revenue"]["tables"]["movements"][0]["interval_start"] == "2026-10-01T00:00:00+03:00"
    assert len(doc["sections"]["trends"]["tables"]["trends"]) == len(result.trends)

    by_provider_csv = pd.read_csv(tmp_path / "out" / "comprehensive__transactions__by_provider.csv")
    expected = result.sections["transactions"].tables["by_provider"]
    assert by_provider_csv["transactions"].tolist() == expected["transactions"].tolist()
    assert by_provider_csv["volume"].tolist() == pytest.approx(expected["volume"].tolist())
