"""Data exports of a report: one Excel workbook, CSV files and one JSON document from a ReportData.

A :class:`ReportData` is what a report shows as data: a title, headline ``summary`` numbers,
named ``sections`` (each with its own ``summary`` and named ``tables``) and ``meta`` (period,
currency, time zone, generation time, warehouse versions). Build one by hand or with
:meth:`ReportData.from_analytics` from :func:`analytics_lib.metrics.comprehensive_analytics`.

Formats are pluggable, keyed by name in :data:`EXPORTERS` (``xlsx``, ``csv``, ``json``; the
renderer registers ``html``/``pdf`` with :meth:`ExporterRegistry.register`)::

    paths = export(data, out_dir, formats=("xlsx", "csv", "json"), basename="report")
    download = EXPORTERS["csv"].download(data, "daily")   # filename, media_type, content

Rules every format follows:

* Spreadsheet-formula text is neutralised (CSV and Excel): a text cell or header that starts
  with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (or their full-width forms) gets a
  leading single quote; numbers, negative ones included, stay numbers. Excel cells are written
  with ``write_string``, never as formulas. JSON is data, not a spreadsheet: it is not altered.
* Missing values (None, NaN, NaT, pd.NA) and infinities are empty cells (CSV, Excel) or
  ``null`` (JSON).
* Time zones: Excel cannot hold tz-aware datetimes, so those are converted to the report's time
  zone (``meta["timezone"]``, else ``meta["period"]["timezone"]``, else UTC) and made naive;
  CSV and JSON write them as ISO 8601 with the UTC offset, in that same zone. Naive datetimes
  are taken to be wall-clock times already and are written unchanged.
* File names: the basename and every section and table name are reduced to letters, digits,
  ``.``, ``-`` and ``_`` (no separators, no leading dots, no NUL), and the resolved target must
  sit directly in ``out_dir``: a hostile name cannot write anywhere else. Files are written to a
  temporary name and renamed, so a failed export never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import secrets
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import xlsxwriter

from analytics_lib.reporting.format import column_kind

__all__ = [
    "EXPORTERS",
    "CsvExporter",
    "Download",
    "ExcelExporter",
    "ExportError",
    "Exporter",
    "ExporterRegistry",
    "JsonExporter",
    "ReportData",
    "UnknownFormatError",
    "column_kind",
    "export",
    "neutralise_formula",
    "safe_name",
]

#: first characters that make a spreadsheet evaluate text (OWASP's list plus full-width forms)
FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")

#: Excel's hard limits
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
EXCEL_MAX_TEXT = 32_767
EXCEL_SHEET_NAME = 31
#: integers beyond this lose digits as Excel doubles; they are written as text
EXCEL_MAX_EXACT_INT = 2**53

#: column-name words that mean money (substrings), and short ones matched as whole words

MONEY_FORMAT = "#,##0.00"
PERCENT_FORMAT = "0.00%"
MULTIPLE_FORMAT = "0.00"
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
TIME_FORMAT = "hh:mm:ss"

_SURROGATES = re.compile("[\ud800-\udfff]")
_UNSAFE_FILENAME = re.compile(r"[^\w.\-]+")
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\']")
_FORMAT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))})
_FILENAME_PART_BYTES = 72  # three parts, separators and a suffix stay under 255 bytes


class ExportError(ValueError):
    """The data cannot be exported as asked; the message says what and why."""


class UnknownFormatError(ExportError, KeyError):
    """No exporter is registered under that name (a ValueError, and a KeyError for mappings)."""

    def __init__(self, name: object, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown export format {name!r}; known formats: {', '.join(self.known) or 'none'}")

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])


# -- values ------------------------------------------------------------------------------------


def neutralise_formula(value: Any) -> Any:
    """Prefix text that a spreadsheet would evaluate with a single quote; other values unchanged.

    Parameters
    ----------
    value : Any
        A cell value. Only ``str`` is ever changed, so ``-5`` (a number) stays ``-5`` while
        ``"-5+A1"`` (text) becomes ``"'-5+A1"``.

    Returns
    -------
    Any
        The value, with a leading ``'`` if it is text starting with ``=``, ``+``, ``-``, ``@``,
        a tab or a carriage return (or the full-width ``＝＋－＠``).
    """
    if isinstance(value, str) and value and value[0] in FORMULA_START:
        return "'" + value
    return value


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return not math.isfinite(value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return False


def _text(value: str) -> str:
    # a lone surrogate cannot be encoded as UTF-8 and would break every format at write time
    return value if value.isascii() else _SURROGATES.sub("\ufffd", value)


def _plain(value: Any) -> Any:
    """One cell as None, bool, int, float, str, datetime, date, time, dict or list."""
    if _is_missing(value):
        return None
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return float(value)  # numpy's float64 is a float too
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime(warn=False)
    if isinstance(value, datetime | date | time):
        return value
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).to_pydatetime(warn=False)
    if isinstance(value, timedelta | np.timedelta64):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, Decimal):
        return _plain(float(value))
    if isinstance(value, bytes | bytearray):
        return _text(bytes(value).decode("utf-8", errors="replace"))
    if isinstance(value, Mapping):
        return {_text(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series):
        return [_plain(v) for v in list(value)]
    return _text(str(value))


def _in_zone(value: datetime, zone: tzinfo) -> datetime:
    """An aware datetime in the report's zone; a naive one unchanged."""
    return value.astimezone(zone) if value.tzinfo is not None else value


def _jsonable(value: Any, zone: ZoneInfo) -> Any:
    value = _plain(value)
    if isinstance(value, datetime):
        return _in_zone(value, zone).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v, zone) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, zone) for v in value]
    return value


def _text_cell(value: Any, zone: ZoneInfo) -> str:
    """A plain value as CSV text: ISO dates, lower-case booleans, formula text neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return _in_zone(value, zone).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(_jsonable(value, zone), ensure_ascii=False)
    return neutralise_formula(value)


# -- names ----------------------------------------------------------------------------------------


def _truncate_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def safe_name(name: Any, fallback: str = "report") -> str:
    """A file-name part that cannot leave its folder.

    Keeps letters and digits of any script, ``_``, ``.`` and ``-``; every other run of characters
    (separators, NUL, spaces, ``..`` segments' slashes) becomes ``_``; leading and trailing dots,
    dashes and underscores are dropped (no hidden files, no ``..``, no option-like names); at most
    72 bytes; Windows device names get a ``_`` prefix; an empty result becomes ``fallback``.
    """
    text = unicodedata.normalize("NFC", _text(str(name)))
    text = _UNSAFE_FILENAME.sub("_", text).strip("._-")
    text = _truncate_bytes(text, _FILENAME_PART_BYTES).rstrip("._-")
    if not text:
        return fallback
    if text.split(".")[0].casefold() in _WINDOWS_RESERVED:
        text = "_" + text
    return text


def _unique(names: Iterable[str], taken: set[str] | None = None, sep: str = "-") -> list[str]:
    """Names made unique ignoring case (file systems and Excel compare that way)."""
    seen = set() if taken is None else taken
    out = []
    for name in names:
        candidate, n = name, 2
        while candidate.casefold() in seen:
            candidate, n = f"{name}{sep}{n}", n + 1
        seen.add(candidate.casefold())
        out.append(candidate)
    return out


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fit_utf16(text: str, limit: int) -> str:
    text = text[:limit]
    while _utf16_len(text) > limit:
        text = text[:-1]
    return text


def _sheet_title(label: str) -> str:
    """Excel's rules: no []:*?/\\ (nor apostrophes, which may not start or end a name), no
    control characters; a formula-like first character gets a ``_`` (a leading quote is
    forbidden in sheet names)."""
    text = unicodedata.normalize("NFC", _text(label))
    text = "".join(ch for ch in text if ch.isprintable())
    text = _SHEET_FORBIDDEN.sub("_", text).strip()
    if text and text[0] in FORMULA_START:
        text = "_" + text
    return text


def _sheet_names(labels: Iterable[str], reserved: Iterable[str]) -> list[str]:
    taken = {r.casefold() for r in reserved} | {"history"}  # Excel reserves "History"
    out = []
    for label in labels:
        base = _sheet_title(label) or "Sheet"
        name, n = _fit_utf16(base, EXCEL_SHEET_NAME).rstrip(), 2
        while name.casefold() in taken:
            suffix = f"~{n}"
            name, n = _fit_utf16(base, EXCEL_SHEET_NAME - len(suffix)).rstrip() + suffix, n + 1
        taken.add(name.casefold())
        out.append(name)
    return out


def _sheet_label(section: str, table: str) -> str:
    """``section.table``, or the table's own name when both do not fit in a sheet name."""
    label = f"{section}.{table}"
    if _utf16_len(_sheet_title(label)) > EXCEL_SHEET_NAME and _sheet_title(table):
        return table
    return label


def _header(column: Any) -> str:
    if isinstance(column, tuple):
        return " / ".join(str(c) for c in column if str(c) != "")
    return str(column)


# -- the data ---------------------------------------------------------------------------------


@dataclass
class _Table:
    """A table as unique text headers and columns of plain values."""

    headers: list[str]
    columns: list[list[Any]]

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def rows(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns, strict=True)

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Table:
        index = frame.index
        named = any(n is not None for n in index.names)
        if named or not (pd.api.types.is_integer_dtype(index.dtype) and index.nlevels == 1):
            frame = frame.reset_index(allow_duplicates=True)  # a meaningful index (names, dates, labels) is data
        headers = _unique([_text(_header(c)) for c in frame.columns], sep="_")
        columns = [[_plain(v) for v in frame.iloc[:, i].tolist()] for i in range(frame.shape[1])]
        return cls(headers, columns)


def _as_frame(table: Any, where: str) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, pd.Series):
        return table.to_frame()
    try:
        return pd.DataFrame(table)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{where} is not a table ({type(table).__name__}): {exc}") from None


def _section(name: str, section: Any) -> dict[str, Any]:
    if isinstance(section, Mapping):
        unknown = sorted(set(map(str, section)) - {"summary", "tables"})
        if unknown:
            raise ExportError(f"section {name!r} has unknown keys {unknown}; a section has "
                              "'summary' and 'tables'")
        summary, tables = section.get("summary"), section.get("tables")
    elif hasattr(section, "summary") and hasattr(section, "tables"):  # a MetricSection
        summary, tables = section.summary, section.tables
    else:
        raise ExportError(f"section {name!r} must be a mapping with 'summary' and 'tables', "
                          f"not {type(section).__name__}")
    if tables is not None and not isinstance(tables, Mapping):
        raise ExportError(f"tables of section {name!r} must be a mapping of name to DataFrame")
    return {
        "summary": {} if summary is None else dict(summary),
        "tables": {str(t): _as_frame(v, f"table {t!r} of section {name!r}") for t, v in (tables or {}).items()},
    }


@dataclass
class ReportData:
    """The data of one report, as exported.

    Parameters
    ----------
    title : str
        The report's title ("Daily operations 2026-11-25").
    summary : dict
        Headline numbers, plain values (nested dicts are flattened as ``a.b`` in spreadsheets).
    sections : dict
        ``{name: {"summary": {...}, "tables": {name: DataFrame}}}``; a metric section object
        with ``.summary`` and ``.tables`` is accepted too. Tables may also be a Series or
        anything ``pandas.DataFrame`` accepts (records, a dict of columns).
    meta : dict
        About the report: ``period``, ``currency``, ``timezone``, ``generated_at``, ... The
        time zone names the zone tz-aware datetimes are shown in (default UTC).
    """

    title: str
    summary: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.title = _text(str(self.title))
        self.summary = {} if self.summary is None else dict(self.summary)
        self.meta = {} if self.meta is None else dict(self.meta)
        self.sections = {str(n): _section(str(n), s) for n, s in (self.sections or {}).items()}
        self.zone  # noqa: B018 - an unknown time zone fails here, not half-way through a write

    @property
    def timezone(self) -> str:
        """The report's time zone name: ``meta["timezone"]``, else the period's, else UTC."""
        tz = self.meta.get("timezone")
        period = self.meta.get("period")
        if not tz and isinstance(period, Mapping):
            tz = period.get("timezone")
        if not tz:
            tz = getattr(period, "timezone", None)
        return str(tz) if tz else "UTC"

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ExportError(f"unknown time zone {self.timezone!r} in the report's meta") from None

    def tables(self) -> Iterator[tuple[str, str, pd.DataFrame]]:
        """Every table as (section, table, frame), in order."""
        for section, body in self.sections.items():
            for name, frame in body["tables"].items():
                yield section, name, frame

    def summary_rows(self) -> list[tuple[str, str, Any]]:
        """(section, metric, value) rows: the meta as ``report``, the headline numbers as
        ``summary``, then each section's summary; nested dicts flattened to ``a.b``."""
        rows: list[tuple[str, str, Any]] = [("report", "title", self.title)]
        rows += [("report", k, v) for k, v in _flatten(self.meta) if k != "title"]
        rows += [("summary", k, v) for k, v in _flatten(self.summary)]
        for name, body in self.sections.items():
            rows += [(name, k, v) for k, v in _flatten(body["summary"])]
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: ``{meta, summary, sections: {name: {summary, tables: {name: [records]}}}}``."""
        zone = self.zone
        meta = _jsonable(self.meta, zone)
        meta = {"title": self.title, **{k: v for k, v in meta.items() if k != "title"}}
        sections = {}
        for name, body in self.sections.items():
            tables = {}
            for tname, frame in body["tables"].items():
                t = _Table.of(frame)
                tables[tname] = [{h: _jsonable(v, zone) for h, v in zip(t.headers, row, strict=True)}
                                 for row in t.rows()]
            sections[name] = {"summary": _jsonable(body["summary"], zone), "tables": tables}
        return {"meta": meta, "summary": _jsonable(self.summary, zone), "sections": sections}

    @classmethod
    def from_analytics(cls, result: Any, title: str | None = None, *, include_trends: bool = True,
                       meta: Mapping[str, Any] | None = None) -> ReportData:
        """A ReportData from :class:`analytics_lib.metrics.ComprehensiveAnalytics`.

        Every metric section becomes a section; the trends (current vs previous period) become
        the ``trends`` section's ``trends`` table; period, time zone, currency, filters,
        generation time and warehouse versions go to ``meta`` (``meta`` adds or overrides keys).
        """
        period = result.period
        sections: dict[str, Any] = {name: {"summary": dict(sec.summary), "tables": dict(sec.tables)}
                                    for name, sec in result.sections.items()}
        trends = list(getattr(result, "trends", None) or [])
        if include_trends and trends and "trends" not in sections:
            records = [t.to_dict() if hasattr(t, "to_dict") else dict(t) for t in trends]
            sections["trends"] = {"summary": {}, "tables": {"trends": pd.DataFrame(records)}}
        filters = getattr(result, "filters", None)
        info: dict[str, Any] = {
            "period": period.to_dict() if hasattr(period, "to_dict") else str(period),
            "timezone": getattr(period, "timezone", "UTC"),
            "currency": result.currency,
            "filters": filters.to_dict() if filters is not None and hasattr(filters, "to_dict") else (filters or {}),
            "generated_at": getattr(result, "generated_at", None),
            "warehouse_versions": dict(getattr(result, "versions", None) or {}),
        }
        info.update(meta or {})
        label = getattr(period, "label", str(period))
        return cls(title or f"Comprehensive analytics {label}", dict(result.summary), sections, info)


def _flatten(mapping: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


# -- exporters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """An export in memory, ready for a download button."""

    filename: str
    media_type: str
    content: bytes


class Exporter:
    """One output format. Subclasses set ``name``, ``extension``, ``media_type`` and implement
    :meth:`to_bytes`; formats that write several files override :meth:`write`."""

    name: str = ""
    extension: str = ""
    media_type: str = "application/octet-stream"

    def to_bytes(self, data: ReportData) -> bytes:
        raise NotImplementedError

    def download(self, data: ReportData, basename: str = "report") -> Download:
        return Download(f"{safe_name(basename)}.{self.extension}", self.media_type, self.to_bytes(data))

    def write(self, data: ReportData, out_dir: str | os.PathLike[str], basename: str = "report") -> list[Path]:
        return [_write_file(out_dir, f"{safe_name(basename)}.{self.extension}", self.to_bytes(data))]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _write_file(out_dir: str | os.PathLike[str], filename: str, content: bytes) -> Path:
    """Write ``content`` to ``out_dir/filename`` atomically; refuse any name that leaves out_dir."""
    root = Path(out_dir)
    if (not filename or "\x00" in filename or "/" in filename or "\\" in filename
            or filename in (".", "..") or Path(filename).name != filename):
        raise ExportError(f"refusing to write {filename!r}: not a plain file name inside {root}")
    root.mkdir(parents=True, exist_ok=True)
    target = root / filename
    if target.absolute().parent != root.absolute():
        raise ExportError(f"refusing to write {filename!r} outside {root}")
    tmp = root / f".export-{secrets.token_hex(8)}.tmp"
    try:
        with open(tmp, "xb") as handle:
            handle.write(content)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


class _ExcelStyles:
    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        add = workbook.add_format
        self.title = add({"bold": True, "font_size": 14})
        self.header = add({"bold": True, "bg_color": "#E8EDF3", "bottom": 1, "valign": "top"})
        self.link = add({"font_color": "#1F4E79", "underline": 1})
        self.number = {
            "money": add({"num_format": MONEY_FORMAT}),
            "percent": add({"num_format": PERCENT_FORMAT}),
            "multiple": add({"num_format": MULTIPLE_FORMAT}),
            None: None,
        }
        self.date = add({"num_format": DATE_FORMAT})
        self.datetime = add({"num_format": DATETIME_FORMAT})
        self.time = add({"num_format": TIME_FORMAT})


def _display_width(value: Any, kind: str | None) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int | float):
        if kind == "money":
            return len(f"{value:,.2f}")
        if kind == "percent":
            return len(f"{value:.2%}")
        if kind == "multiple":
            return len(f"{value:.2f}")
        return len(f"{value:.10g}")
    return len(value) if isinstance(value, str) else 10


class ExcelExporter(Exporter):
    """One workbook: a ``Summary`` sheet (title, key/value rows, links to every table), then a
    sheet per table named ``section.table`` (or ``table`` when that is too long; unique, at most
    31 characters, Excel's forbidden characters replaced), each with a bold
    frozen header row, an autofilter, fitted column widths and money, percentage and date
    formats."""

    name = "xlsx"
    extension = "xlsx"
    media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    max_width = 60

    def to_bytes(self, data: ReportData) -> bytes:
        zone = data.zone
        buffer = io.BytesIO()
        workbook = xlsxwriter.Workbook(buffer, {
            "in_memory": True,
            # belt and braces: cells go through write_string/write_number, never write()
            "strings_to_formulas": False, "strings_to_numbers": False, "strings_to_urls": False,
        })
        properties: dict[str, Any] = {"title": data.title[:255]}
        generated = data.meta.get("generated_at")
        if isinstance(generated, datetime):
            properties["created"] = _in_zone(generated, UTC).replace(tzinfo=None)
        workbook.set_properties(properties)
        styles = _ExcelStyles(workbook)
        tables = list(data.tables())
        sheet_names = _sheet_names((_sheet_label(s, t) for s, t, _ in tables), reserved=["Summary"])
        converted = []
        for (section, name, frame), sheet in zip(tables, sheet_names, strict=True):
            table = _Table.of(frame)
            if table.n_rows + 1 > EXCEL_MAX_ROWS or len(table.headers) > EXCEL_MAX_COLUMNS:
                raise ExportError(f"table {name!r} of section {section!r} has {table.n_rows} rows and "
                                  f"{len(table.headers)} columns, more than an Excel sheet holds "
                                  f"({EXCEL_MAX_ROWS - 1} x {EXCEL_MAX_COLUMNS}); export it as CSV")
            converted.append((section, name, sheet, table))
        self._summary(workbook.add_worksheet("Summary"), data, converted, styles, zone)
        for _, _, sheet, table in converted:
            self._table(workbook.add_worksheet(sheet), table, styles, zone)
        workbook.close()
        return buffer.getvalue()

    def _summary(self, ws: Any, data: ReportData, tables: list[tuple[str, str, str, _Table]],
                 styles: _ExcelStyles, zone: ZoneInfo) -> None:
        widths = [7, 6, 5, 4]
        ws.write_string(0, 0, neutralise_formula(data.title)[:EXCEL_MAX_TEXT], styles.title)
        header_row = 2
        for col, text in enumerate(("section", "metric", "value")):
            ws.write_string(header_row, col, text, styles.header)
        row = header_row
        for section, metric, value in data.summary_rows()[1:]:  # the title is on top already
            row += 1
            for col, text in enumerate((section, metric)):
                text = _text(str(text))
                ws.write_string(row, col, neutralise_formula(text)[:EXCEL_MAX_TEXT])
                widths[col] = max(widths[col], len(text) + 1)
            kind = column_kind(metric.rsplit(".", 1)[-1])
            widths[2] = max(widths[2], self._cell(ws, row, 2, _plain(value), kind, styles, zone, None))
        ws.freeze_panes(header_row + 1, 0)
        ws.autofilter(header_row, 0, row, 2)
        if tables:
            row += 2
            for col, text in enumerate(("sheet", "section", "table", "rows")):
                ws.write_string(row, col, text, styles.header)
            for section, name, sheet, table in tables:
                row += 1
                ws.write_url(row, 0, f"internal:'{sheet}'!A1", styles.link, sheet)
                ws.write_string(row, 1, neutralise_formula(_text(section))[:EXCEL_MAX_TEXT])
                ws.write_string(row, 2, neutralise_formula(_text(name))[:EXCEL_MAX_TEXT])
                ws.write_number(row, 3, table.n_rows)
                for col, text in enumerate((sheet, section, name)):
                    widths[col] = max(widths[col], len(text) + 1)
        for col, width in enumerate(widths):
            ws.set_column(col, col, min(width + 2, self.max_width))

    def _table(self, ws: Any, table: _Table, styles: _ExcelStyles, zone: ZoneInfo) -> None:
        for col, header in enumerate(table.headers):
            ws.write_string(0, col, neutralise_formula(header)[:EXCEL_MAX_TEXT], styles.header)
        for col, (header, values) in enumerate(zip(table.headers, table.columns, strict=True)):
            kind = column_kind(header)
            datetimes = [v for v in values if isinstance(v, datetime)]
            date_only = bool(datetimes) and all(_in_zone(v, zone).time() == time(0) for v in datetimes)
            width = len(header) + 2  # room for the filter button
            for row, value in enumerate(values, start=1):
                width = max(width, self._cell(ws, row, col, value, kind, styles, zone, date_only))
            ws.set_column(col, col, min(max(width, 6) + 1, self.max_width))
        if table.headers:
            ws.freeze_panes(1, 0)
            ws.autofilter(0, 0, table.n_rows, len(table.headers) - 1)

    def _cell(self, ws: Any, row: int, col: int, value: Any, kind: str | None,
              styles: _ExcelStyles, zone: ZoneInfo, date_only: bool | None) -> int:
        """Write one plain value; return its display width. None stays an empty cell."""
        if value is None:
            return 0
        if isinstance(value, bool):
            ws.write_boolean(row, col, value)
            return 5
        if isinstance(value, int) and abs(value) > EXCEL_MAX_EXACT_INT:
            value = str(value)  # Excel would round it
        elif isinstance(value, int | float):
            ws.write_number(row, col, value, styles.number[kind])
            return _display_width(value, kind)
        if isinstance(value, datetime):
            local = _in_zone(value, zone).replace(tzinfo=None)  # Excel refuses tz-aware datetimes
            if local.year < 1900:  # before Excel's epoch: keep it readable as text
                value = local.isoformat()
            else:
                if date_only is None:
                    date_only = local.time() == time(0)
                ws.write_datetime(row, col, local, styles.date if date_only else styles.datetime)
                return 10 if date_only else 19
        elif isinstance(value, date):
            if value.year < 1900:
                value = value.isoformat()
            else:
                ws.write_datetime(row, col, value, styles.date)
                return 10
        elif isinstance(value, time):
            ws.write_datetime(row, col, value.replace(tzinfo=None), styles.time)
            return 8
        if isinstance(value, dict | list):
            value = json.dumps(_jsonable(value, zone), ensure_ascii=False)
        text = neutralise_formula(str(value))[:EXCEL_MAX_TEXT]
        ws.write_string(row, col, text)
        return max((len(line) for line in text.splitlines()), default=0)


class CsvExporter(Exporter):
    """One CSV per table plus ``summary`` (section, metric, value).

    Written to a folder as ``<basename>__summary.csv`` and ``<basename>__<section>__<table>.csv``.
    :meth:`to_bytes` gives the single table's CSV when the report has exactly one table (the
    summary CSV when it has none), else a zip of ``summary.csv`` and ``<section>__<table>.csv``.

    Parameters
    ----------
    bom : bool, default False
        Start each file with a UTF-8 byte-order mark so that Excel reads it as UTF-8.
    delimiter : str, default ","
        Field separator (``;`` for Excel in locales with a decimal comma).
    """

    name = "csv"
    extension = "csv"
    media_type = "text/csv; charset=utf-8"

    def __init__(self, bom: bool = False, delimiter: str = ",") -> None:
        if len(delimiter) != 1 or delimiter in "\"\r\n":
            raise ExportError(f"a CSV delimiter is one character other than a quote or newline, not {delimiter!r}")
        self.bom = bom
        self.delimiter = delimiter

    def _encode(self, headers: list[str], rows: Iterable[Iterable[Any]], zone: ZoneInfo) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\r\n")
        writer.writerow([neutralise_formula(h) for h in headers])
        writer.writerows([_text_cell(v, zone) for v in row] for row in rows)
        return out.getvalue().encode("utf-8-sig" if self.bom else "utf-8")

    def summary_csv(self, data: ReportData) -> bytes:
        rows = [(s, m, _plain(v)) for s, m, v in data.summary_rows()]
        return self._encode(["section", "metric", "value"], rows, data.zone)

    def table_csv(self, data: ReportData, frame: pd.DataFrame) -> bytes:
        table = _Table.of(frame)
        return self._encode(table.headers, table.rows(), data.zone)

    def files(self, data: ReportData) -> list[tuple[str, bytes]]:
        """(stem, content) of every file: ``summary`` first, then ``<section>__<table>``."""
        tables = list(data.tables())
        stems = _unique([f"{safe_name(s, 'section')}__{safe_name(t, 'table')}" for s, t, _ in tables],
                        taken={"summary"})
        return [("summary", self.summary_csv(data))] + [
            (stem, self.table_csv(data, frame)) for stem, (_, _, frame) in zip(stems, tables, strict=True)]

    def _single(self, data: ReportData) -> bool:
        return sum(1 for _ in data.tables()) <= 1

    def to_bytes(self, data: ReportData) -> bytes:
        tables = list(data.tables())
        if not tables:
            return self.summary_csv(data)
        if len(tables) == 1:
            return self.table_csv(data, tables[0][2])
        buffer = io.BytesIO()
        stamp = data.meta.get("generated_at")
        stamp = _in_zone(stamp, data.zone) if isinstance(stamp, datetime) else datetime.now(data.zone)
        stamp_fields = max(stamp.timetuple()[:6], (1980, 1, 1, 0, 0, 0))  # zip's epoch
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for stem, content in self.files(data):
                info = zipfile.ZipInfo(f"{stem}.csv", date_time=stamp_fields)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, content)
        return buffer.getvalue()

    def download(self, data: ReportData, basename: str = "report") -> Download:
        if self._single(data):
            return super().download(data, basename)
        return Download(f"{safe_name(basename)}.zip", "application/zip", self.to_bytes(data))

    def write(self, data: ReportData, out_dir: str | os.PathLike[str], basename: str = "report") -> list[Path]:
        base = safe_name(basename)
        return [_write_file(out_dir, f"{base}__{stem}.csv", content) for stem, content in self.files(data)]


class JsonExporter(Exporter):
    """One UTF-8 document, ``{meta, summary, sections: {name: {summary, tables: {name: [records]}}}}``,
    with NaN as null and dates as ISO 8601."""

    name = "json"
    extension = "json"
    media_type = "application/json"

    def __init__(self, indent: int | None = 2) -> None:
        self.indent = indent

    def to_bytes(self, data: ReportData) -> bytes:
        text = json.dumps(data.to_dict(), ensure_ascii=False, indent=self.indent, allow_nan=False)
        return (text + "\n").encode("utf-8")


# -- the registry -----------------------------------------------------------------------------------


def _format_key(name: Any) -> str:
    return str(name).strip().lower().lstrip(".")


class ExporterRegistry(dict[str, Exporter]):
    """Exporters by format name; ``registry["nope"]`` raises :class:`UnknownFormatError`."""

    def register(self, exporter: Exporter, *, replace: bool = False) -> Exporter:
        """Add ``exporter`` under ``exporter.name`` (lower-case letters, digits, ``_``, ``-``)."""
        name = exporter.name
        if not isinstance(name, str) or not _FORMAT_NAME.match(name):
            raise ExportError(f"an export format name is lower-case letters, digits, '_' or '-', not {name!r}")
        if name in self and not replace:
            raise ExportError(f"export format {name!r} is already registered (pass replace=True)")
        self[name] = exporter
        return exporter

    def __missing__(self, key: Any) -> Exporter:
        normal = _format_key(key)
        if normal != key and normal in self:
            return self[normal]
        raise UnknownFormatError(key, self)

    def resolve(self, formats: str | Exporter | Iterable[str | Exporter]) -> list[Exporter]:
        """Exporters for ``formats``: names (``"xlsx,csv"`` works too) or Exporter objects,
        without duplicates; every name is checked before anything is written."""
        if isinstance(formats, str | Exporter):
            formats = [formats]
        out: list[Exporter] = []
        for item in formats:
            if isinstance(item, Exporter):
                candidates = [item]
            elif isinstance(item, str):
                candidates = [self[part] for part in item.split(",") if part.strip()]
            else:
                raise UnknownFormatError(item, self)
            out += [c for c in candidates if c not in out]
        if not out:
            raise ExportError(f"no export format given; known formats: {', '.join(sorted(self))}")
        return out


#: the registered formats; the renderer adds ``html`` and ``pdf``
EXPORTERS = ExporterRegistry()
EXPORTERS.register(ExcelExporter())
EXPORTERS.register(CsvExporter())
EXPORTERS.register(JsonExporter())


def export(data: ReportData, out_dir: str | os.PathLike[str],
           formats: str | Exporter | Iterable[str | Exporter] = ("xlsx", "csv", "json"),
           basename: str = "report") -> list[Path]:
    """Write ``data`` in each format into ``out_dir`` (created if missing).

    Parameters
    ----------
    data : ReportData
        The report's data (see :meth:`ReportData.from_analytics`).
    out_dir : path
        The folder; nothing is written outside it, whatever the names inside ``data``.
    formats : names or Exporter objects
        Registered names (``EXPORTERS``) or configured exporters such as ``CsvExporter(bom=True)``.
        An unknown name raises :class:`UnknownFormatError` (a ValueError) before any file is
        written.
    basename : str
        File name stem: ``report.xlsx``, ``report.json``, ``report__<section>__<table>.csv``.

    Returns
    -------
    list of Path
        The files written, in format order.
    """
    if not isinstance(data, ReportData):
        raise TypeError(f"export() takes a ReportData, not {type(data).__name__}; "
                        "build one with ReportData.from_analytics(result)")
    exporters = EXPORTERS.resolve(formats)
    paths: list[Path] = []
    for exporter in exporters:
        paths += exporter.write(data, out_dir, basename)
    return paths
