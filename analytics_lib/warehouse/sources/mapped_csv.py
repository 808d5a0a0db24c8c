"""``csv``: any CSV file, described by a YAML column-mapping file (``--mapping FILE``).

The mapping names the warehouse table the file loads into and where each warehouse column comes
from::

    table: transactions                 # one of the ingestable tables (see INGESTABLE_TABLES)
    columns:                            # warehouse column -> CSV header (case-insensitive)
      transaction_id: Order ID
      amount_minor: Amount
      created_at: Created
    constants:                          # warehouse column -> fixed value for every row
      provider: paypal
    amounts_in: major                   # major | minor; required when a *_minor column is mapped
    timezone: Europe/London             # zone of timestamps written without one (default: refuse them)
    delimiter: ","                      # one character; "\\t" for tab-separated files
    value_maps:                         # column -> {CSV value: warehouse value}
      status: {Completed: completed, Denied: failed}

Optional: ``timestamp_format`` / ``date_format`` (``strptime`` patterns for non-ISO dates),
``list_separator`` (default ``|``, for ``fraud_indicators``), ``redact`` (more CSV headers whose
values are blanked in stored reject rows) and ``description``.

The mapping file is parsed with YAML's base loader (every scalar is a string, so ``Yes``, ``NO``
or ``0012`` stay what they say) and validated with pydantic; an invalid mapping is refused with a
one-line :class:`IngestError` naming the bad field. Each value is then cast by the warehouse
column's logical type and checked the way every source checks it (ids, currencies, countries,
allowed values, non-null columns, positive payment/refund/dispute amounts). Partition columns are
derived, never mapped.

This module also holds the CSV reading shared by the CSV-based sources (``stripe``,
``online-retail``): plain or gzip input, strict UTF-8, physical line numbers that survive quoted
newlines, and raw record text for rejects.
"""

from __future__ import annotations

import csv
import gzip
import ipaddress
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from analytics_lib.warehouse import privacy
from analytics_lib.warehouse.countries import code_for_name
from analytics_lib.warehouse.schema import TABLES, Column
from analytics_lib.warehouse.sources import base
from analytics_lib.warehouse.sources.base import IngestError, Progress, Record, Reject, RowError
from analytics_lib.warehouse.sources.platform_json import (
    FAILURE_ALIASES,
    METHOD_ALIASES,
    PLAN_ALIASES,
    STATUS_ALIASES,
    _outcome,
)

# ============================================================================================
# CSV reading shared by the CSV sources
# ============================================================================================

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = "\ufeff"
PROGRESS_EVERY = 20000


def normalise_header(name: str) -> str:
    """Header spelling used for matching: trimmed, lower-case, inner whitespace collapsed."""
    return " ".join(name.replace(_BOM, "").strip().lower().split())


class CsvRecord:
    """One CSV record: the physical line it starts on, its fields (None if unparsable), raw text."""

    __slots__ = ("line", "fields", "raw", "error")

    def __init__(self, line: int, fields: list[str] | None, raw: str, error: str | None) -> None:
        self.line = line
        self.fields = fields
        self.raw = raw
        self.error = error


def _open_binary(path: Path) -> tuple[Any, Any]:
    """(underlying file, byte stream): gzip files are decompressed transparently (by magic bytes)."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    magic = raw.read(2)
    raw.seek(0)
    if magic == _GZIP_MAGIC:
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")
    return raw, raw


def iter_csv(path: Path, delimiter: str = ",", progress: Progress | None = None) -> Iterator[CsvRecord]:
    """Every non-blank CSV record of ``path`` (header included), in file order.

    ``line`` is the 1-based physical line where the record starts, so a quoted field spanning
    lines does not shift later numbers. Lines that are not UTF-8 raise :class:`IngestError`
    (naming the line); a broken gzip stream too. A record whose fields are all empty is a blank
    line, not a row. Records the csv module cannot parse (a field over its size limit) come back
    with ``fields=None`` and an ``error``.
    """
    raw_handle, stream = _open_binary(path)
    buffer: list[str] = []

    def lines() -> Iterator[str]:
        for number, data in enumerate(stream, start=1):
            text = base.check_utf8(data, number)
            if number == 1 and text.startswith(_BOM):
                text = text[1:]
            buffer.append(text)
            yield text

    try:
        reader = csv.reader(lines(), delimiter=delimiter)
        start = 1
        count = 0
        while True:
            try:
                fields: list[str] | None = next(reader)
                error = None
            except StopIteration:
                break
            except csv.Error as exc:
                fields, error = None, f"malformed CSV: {exc}"
            raw = "".join(buffer).rstrip("\r\n")
            buffer.clear()
            line, start = start, reader.line_num + 1
            if fields is not None and not any(f.strip() for f in fields):
                continue
            count += 1
            if progress and count % PROGRESS_EVERY == 0:
                progress(raw_handle.tell())
            yield CsvRecord(line, fields, raw, error)
        if progress:
            progress(raw_handle.tell())
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IngestError(f"{path.name}: broken gzip file ({exc})") from None
    finally:
        if stream is not raw_handle:
            stream.close()
        raw_handle.close()


def csv_raw_rows(
    path: Path, lines: set[int], delimiter: str = ",", redact: Callable[[CsvRecord], str] | None = None
) -> dict[int, str]:
    """Raw text of the records starting on ``lines`` (whole record, even across quoted newlines)."""
    found: dict[int, str] = {}
    if not lines:
        return found
    last = max(lines)
    for rec in iter_csv(path, delimiter):
        if rec.line in lines:
            found[rec.line] = redact(rec) if redact else rec.raw
            if len(found) == len(lines):
                break
        if rec.line > last:
            break
    return found


class CsvHeader:
    """Header row: column positions by normalised name, and the redaction of personal columns."""

    def __init__(self, fields: list[str]) -> None:
        self.names = fields
        self.index: dict[str, int] = {}
        self.duplicates: set[str] = set()
        for i, name in enumerate(fields):
            key = normalise_header(name)
            if key in self.index:
                self.duplicates.add(key)
            else:
                self.index[key] = i
        self.redacted: set[int] = set()

    def find(self, *names: str) -> int | None:
        for name in names:
            i = self.index.get(normalise_header(name))
            if i is not None:
                return i
        return None

    def redact_matching(self, pattern: re.Pattern[str]) -> None:
        for key, i in self.index.items():
            if pattern.search(key):
                self.redacted.add(i)

    def redact_raw(self, rec: CsvRecord, delimiter: str = ",") -> str:
        """The record as stored in ``ingest_rejects``: personal columns blanked, and any text
        shaped like an e-mail address in other columns too (free-text descriptions carry them)."""
        if rec.fields is None:
            return _EMAIL.sub("[redacted]", rec.raw)
        if not self.redacted and not _EMAIL.search(rec.raw):
            return rec.raw
        fields = [("[redacted]" if i in self.redacted and f.strip() else _EMAIL.sub("[redacted]", f))
                  for i, f in enumerate(rec.fields)]
        return to_csv_line(fields, delimiter)


def to_csv_line(fields: Sequence[str], delimiter: str = ",") -> str:
    import io

    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(fields)
    return out.getvalue()


_EMAIL = re.compile(r"[^\s,;:<>()\[\]\"']+@[^\s,;:<>()\[\]\"']+\.[A-Za-z]{2,}")
#: headers whose values are personal data: blanked in stored rejects
PERSONAL_HEADER = re.compile(
    r"e-?mail|phone|customer (name|description)|card name|cardholder|billing name|"
    r"address (line|city|state|zip|postal)|shipping|ip address|user agent|^name$|^description$"
)


def read_header(records: Iterator[CsvRecord], path: Path) -> CsvHeader:
    """The first record as a header, or an IngestError for an empty file."""
    first = next(records, None)
    if first is None:
        raise IngestError(f"{path.name}: empty file (no header row)")
    if first.fields is None:
        raise IngestError(f"{path.name}: unreadable header row: {first.error}")
    return CsvHeader(first.fields)


def wrong_width(rec: CsvRecord, width: int) -> str | None:
    """Reason for a record that cannot be read as a row of ``width`` columns, or None."""
    if rec.fields is None:
        return rec.error or "malformed CSV"
    if len(rec.raw) > base.MAX_ROW_BYTES:
        return f"row too long ({len(rec.raw)} characters, limit {base.MAX_ROW_BYTES})"
    if len(rec.fields) != width:
        return f"expected {width} columns as in the header, got {len(rec.fields)}"
    return None


# -- value parsing from CSV text ------------------------------------------------------------

_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")


def number_text(value: str, label: str, thousands: bool = True) -> str:
    """A decimal number as plain text ('1,234.50' -> '1234.50'); RowError if it is not one."""
    text = value.strip()
    if thousands and _THOUSANDS.match(text):
        text = text.replace(",", "")
    if not _PLAIN_NUMBER.match(text):
        raise RowError(f"{label} {value.strip()[:40]!r} is not a number")
    return text


def parse_int(value: str, label: str, low: int | None = None, high: int | None = None) -> int:
    text = value.strip()
    if not _INTEGER.match(text):
        raise RowError(f"{label} {text[:40]!r} is not a whole number")
    digits = text.split(".")[0].lstrip("+-").lstrip("0") or "0"
    if len(digits) > 30:  # beyond any amount or count (and int() refuses over 4,300 digits)
        raise RowError(f"{label} {text[:40]!r} is too large")
    out = int(("-" if text.startswith("-") else "") + digits)
    if (low is not None and out < low) or (high is not None and out > high):
        raise RowError(f"{label} {out} is outside {low}..{high}")
    return out


def parse_float(value: str, label: str, low: float | None = None, high: float | None = None) -> float:
    out = float(number_text(value, label))
    if (low is not None and out < low) or (high is not None and out > high):
        raise RowError(f"{label} {out} is outside {low}..{high}")
    return out


_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def parse_bool(value: str, label: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RowError(f"{label} {value.strip()[:40]!r} is not true/false")


def parse_timestamp(value: str, label: str, zone: Any = None, fmt: str | None = None) -> datetime:
    """Text -> aware UTC datetime; naive text takes ``zone`` or is refused."""
    text = value.strip()
    if fmt is None:
        # tolerate '2024-05-01 10:00:00 +0000' and '... UTC' spellings of an ISO timestamp
        text = re.sub(r"\s+(UTC|GMT)$", "+00:00", text)
        text = re.sub(r"\s+([+-]\d\d:?\d\d)$", r"\1", text)
        out = base.timestamp(text, label, naive_zone=zone)
        assert out is not None
        return out
    try:
        parsed = datetime.strptime(text, fmt)
    except ValueError:
        raise RowError(f"{label} {text[:40]!r} does not match the format {fmt!r}") from None
    if parsed.tzinfo is None:
        if zone is None:
            raise RowError(f"{label} {text[:40]!r} has no time zone")
        parsed = parsed.replace(tzinfo=zone)
    return base.timestamp(parsed.isoformat(), label)  # type: ignore[return-value]


def parse_day(value: str, label: str, fmt: str | None = None) -> date:
    text = value.strip()
    if fmt:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            raise RowError(f"{label} {text[:40]!r} does not match the format {fmt!r}") from None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RowError(f"{label} {text[:40]!r} is not a date (YYYY-MM-DD)") from None


def country_text(value: str, label: str) -> str:
    """An ISO 3166-1 alpha-2 code from a code or a country name."""
    text = value.strip()
    if base.has_control_chars(text):
        raise RowError(f"{label} contains control characters")
    code = code_for_name(text)
    if code is None or not base.is_country_code(code):
        raise RowError(f"{label} {text[:40]!r} is not a country (ISO 3166-1 code or name)")
    return code


# ============================================================================================
# The mapping file
# ============================================================================================

#: tables a mapped CSV may load (not the ingestion bookkeeping tables)
INGESTABLE_TABLES = (
    "transactions", "refunds", "disputes", "customers", "fees", "subscriptions",
    "subscription_events", "products", "fx_rates", "marketing_spend", "checkout_events",
    "user_activity", "support_tickets", "fraud_alerts",
)
#: derived, never mapped: partition columns (from a timestamp/date of the row)
PARTITION_SOURCES = {"created_month": "created_at", "occurred_month": "occurred_at", "activity_month": "activity_date"}
#: required columns with a derivation when neither mapped nor constant
DERIVED_DEFAULTS: dict[str, dict[str, str]] = {
    "transactions": {"outcome_type": "from status and failure_reason", "attempt_number": "1",
                     "billing_reason": "purchase (retry when attempt_number > 1, subscription_cycle with a subscription_id)"},
    "customers": {"is_guest": "false"},
    "products": {"active": "true"},
    "subscriptions": {"cancel_at_period_end": "false", "discount_percent": "0"},
    "subscription_events": {"discount_percent": "0"},
    "refunds": {"status": "succeeded"},
}
_CONSTANT_DEFAULTS = {
    ("customers", "is_guest"): "false", ("products", "active"): "true",
    ("subscriptions", "cancel_at_period_end"): "false", ("subscriptions", "discount_percent"): "0",
    ("subscription_events", "discount_percent"): "0", ("refunds", "status"): "succeeded",
    ("transactions", "attempt_number"): "1",
}
#: tables whose amount_minor must be positive (a payment, refund or dispute of nothing is an error)
POSITIVE_AMOUNT_TABLES = ("transactions", "refunds", "disputes")
ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("transactions", "status"): STATUS_ALIASES,
    ("transactions", "payment_method"): METHOD_ALIASES,
    ("transactions", "failure_reason"): FAILURE_ALIASES,
    ("refunds", "status"): {"success": "succeeded", "completed": "succeeded", "processed": "succeeded",
                            "declined": "failed", "error": "failed", "processing": "pending"},
}
RANGES: dict[str, tuple[float | None, float | None]] = {
    "attempt_number": (1, 100), "satisfaction": (1, 5), "risk_score": (0, 100),
    "discount_percent": (0, 100), "usd_per_unit": (0, None), "card_age_days": (0, 36500),
    "plan_interval_months": (1, 120), "billing_interval_months": (1, 120), "trial_days": (0, 3650),
    "logins": (0, None), "lesson_views": (0, None), "minutes_watched": (0, None),
    "impressions": (0, None), "clicks": (0, None),
}
_COUNTRY_COLUMNS = ("country_code", "card_country", "ip_country")
_FREE_TEXT = {("products", "name"), ("products", "category")}
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


class CsvMapping(BaseModel):
    """A column-mapping file, validated against the warehouse schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    columns: dict[str, str] = {}
    constants: dict[str, str] = {}
    amounts_in: Literal["major", "minor"] | None = None
    timezone: str | None = None
    delimiter: str = ","
    value_maps: dict[str, dict[str, str]] = {}
    timestamp_format: str | None = None
    date_format: str | None = None
    list_separator: str = "|"
    redact: list[str] = []
    description: str | None = None

    @field_validator("table")
    @classmethod
    def _known_table(cls, value: str) -> str:
        if value not in INGESTABLE_TABLES:
            raise ValueError(f"unknown table {value!r}; one of: {', '.join(INGESTABLE_TABLES)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/London, UTC)") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        value = {"\\t": "\t", "tab": "\t"}.get(value, value)
        if len(value) != 1 or value in "\"\r\n":
            raise ValueError(f"must be a single character other than a quote or newline, got {value!r}")
        return value

    @field_validator("columns")
    @classmethod
    def _headers_given(cls, value: dict[str, str]) -> dict[str, str]:
        for col, header in value.items():
            if not header.strip():
                raise ValueError(f"{col}: empty CSV header name")
        return value

    @model_validator(mode="after")
    def _against_schema(self) -> CsvMapping:
        spec = TABLES[self.table]
        known = {c.name for c in spec.columns}
        for section, names in (("columns", self.columns), ("constants", self.constants)):
            for col in names:
                if col in PARTITION_SOURCES and col in known:
                    raise ValueError(f"{section}.{col}: partition column, derived from "
                                     f"{PARTITION_SOURCES[col]}; do not map it")
                if col not in known:
                    raise ValueError(f"{section}.{col}: unknown column of table {self.table}; "
                                     f"known: {', '.join(sorted(known - set(PARTITION_SOURCES)))}")
        both = sorted(set(self.columns) & set(self.constants))
        if both:
            raise ValueError(f"constants.{both[0]}: also mapped in columns; give one or the other")
        for col in self.value_maps:
            if col not in self.columns and col not in self.constants:
                raise ValueError(f"value_maps.{col}: not a mapped column")
        defaults = DERIVED_DEFAULTS.get(self.table, {})
        missing = [
            c.name for c in spec.columns
            if not c.nullable and c.name not in self.columns and c.name not in self.constants
            and c.name not in defaults and c.name not in PARTITION_SOURCES
        ]
        if missing:
            raise ValueError(f"columns: required column(s) of {self.table} not mapped and no constant: "
                             f"{', '.join(missing)}")
        for col in PARTITION_SOURCES:
            if col in known and PARTITION_SOURCES[col] not in self.columns and PARTITION_SOURCES[col] not in self.constants:
                raise ValueError(f"columns: {PARTITION_SOURCES[col]} must be mapped (it gives {col})")
        minor = sorted(c for c in self.columns if c.endswith("_minor"))
        if minor and self.amounts_in is None:
            raise ValueError(f"amounts_in: required (major or minor) because {minor[0]} is mapped")
        if len(self.list_separator) != 1:
            raise ValueError("list_separator: must be a single character")
        return self


def load_mapping(path: str | Path) -> CsvMapping:
    """Read and validate a mapping file; any problem is a one-line IngestError."""
    file = Path(path)
    if not file.is_file():
        raise IngestError(f"mapping file not found: {file}")
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # noqa: S506 - strings only
    except UnicodeDecodeError:
        raise IngestError(f"mapping {file.name}: not UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise IngestError(f"mapping {file.name}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise IngestError(f"mapping {file.name}: expected a YAML mapping with table: and columns:")
    try:
        return CsvMapping.model_validate(data)
    except ValidationError as exc:
        raise IngestError(f"mapping {file.name}: {_first_error(exc)}") from None


# ============================================================================================
# The source
# ============================================================================================


class _Field:
    """How one warehouse column is filled: from a CSV column (index) or a constant."""

    __slots__ = ("column", "index", "header", "constant", "label", "value_map", "value_map_folded")

    def __init__(self, column: Column, index: int | None, header: str | None, constant: str | None,
                 value_map: dict[str, str]) -> None:
        self.column = column
        self.index = index
        self.header = header
        self.constant = constant
        self.label = f"{column.name} [{header}]" if header else column.name
        self.value_map = value_map
        self.value_map_folded = {k.strip().casefold(): v for k, v in value_map.items()}

    def raw(self, fields: list[str]) -> str:
        text = self.constant if self.index is None else fields[self.index]
        assert text is not None
        if self.value_map:
            key = text.strip()
            if key in self.value_map:
                return self.value_map[key]
            folded = key.casefold()
            if folded in self.value_map_folded:
                return self.value_map_folded[folded]
        return text


class MappedCsvSource(base.Source):
    name = "csv"
    description = "any CSV file, with a YAML mapping of its columns to one warehouse table (--mapping FILE)"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        mapping = options.get("mapping")
        if not mapping:
            raise IngestError("csv source needs --mapping FILE")
        self.mapping = mapping if isinstance(mapping, CsvMapping) else load_mapping(mapping)
        self.spec = TABLES[self.mapping.table]
        self.zone = ZoneInfo(self.mapping.timezone) if self.mapping.timezone else None
        self._header: CsvHeader | None = None

    # -- reading ---------------------------------------------------------------------------
    def _fields(self, header: CsvHeader, path: Path) -> list[_Field]:
        m = self.mapping
        missing = [h for h in m.columns.values() if header.find(h) is None]
        if missing:
            raise IngestError(
                f"{path.name}: missing required columns: {', '.join(repr(h) for h in missing)} "
                f"(named in the mapping; the file has: {', '.join(header.names)[:300]})"
            )
        dupes = [h for h in m.columns.values() if normalise_header(h) in header.duplicates]
        if dupes:
            raise IngestError(f"{path.name}: column {dupes[0]!r} appears more than once in the header")
        fields = []
        for col in self.spec.columns:
            value_map = m.value_maps.get(col.name, {})
            if col.name in m.columns:
                h = m.columns[col.name]
                fields.append(_Field(col, header.find(h), h, None, value_map))
            elif col.name in m.constants:
                fields.append(_Field(col, None, None, m.constants[col.name], value_map))
            elif (self.spec.name, col.name) in _CONSTANT_DEFAULTS:
                fields.append(_Field(col, None, None, _CONSTANT_DEFAULTS[(self.spec.name, col.name)], {}))
        # personal data never reaches ingest_rejects in the clear
        header.redact_matching(PERSONAL_HEADER)
        for hashed in ("email_hash", "ip_hash"):
            position = header.find(m.columns[hashed]) if hashed in m.columns else None
            if position is not None:
                header.redacted.add(position)
        for h in m.redact:
            i = header.find(h)
            if i is not None:
                header.redacted.add(i)
        return fields

    def read(self, path: Path, progress: Progress | None = None) -> Iterator[Record | Reject]:
        self.rows_read = 0
        delim = self.mapping.delimiter
        records = iter_csv(path, delim, progress)
        header = read_header(records, path)
        self._header = header
        fields = self._fields(header, path)
        width = len(header.names)
        for rec in records:
            self.rows_read += 1
            problem = wrong_width(rec, width)
            if problem:
                yield Reject(rec.line, problem, header.redact_raw(rec, delim))
                continue
            try:
                record = self.parse_row(fields, rec.fields)  # type: ignore[arg-type]
            except RowError as exc:
                yield Reject(rec.line, str(exc), header.redact_raw(rec, delim))
                continue
            record.lines = (rec.line,)
            yield record
        if self.rows_read == 0:
            raise IngestError(f"{path.name}: no data rows (only a header)")

    def raw_rows(self, path: Path, lines: set[int]) -> dict[int, str]:
        header = self._header
        delim = self.mapping.delimiter
        return csv_raw_rows(path, lines, delim, (lambda r: header.redact_raw(r, delim)) if header else None)

    # -- one row ----------------------------------------------------------------------------
    def parse_row(self, fields: list[_Field], values: list[str]) -> Record:
        table = self.spec.name
        # every row carries every column: the warehouse builds its Arrow batch from dicts, and a
        # key missing from the first row would silently drop that column for the whole batch
        row: dict[str, Any] = {c.name: ([] if c.type == "list<string>" else None) for c in self.spec.columns}
        texts = {f.column.name: f.raw(values) for f in fields}
        cur = None
        if "currency" in texts and texts["currency"].strip():
            cur = base.currency(texts["currency"], _label(fields, "currency"))
        for f in fields:
            row[f.column.name] = self.cast(f, texts[f.column.name], cur)
        self.derive(row)
        for col in self.spec.columns:
            if not col.nullable and row.get(col.name) is None:
                raise RowError(f"{_label(fields, col.name)} is missing")
        if table == "transactions":
            created = row["created_at"]
            for ts in ("completed_at", "failed_at"):
                if row.get(ts) is not None and row[ts] < created:
                    raise RowError(f"{ts} is before created_at")
            derived = [("customers", {
                "customer_id": row["customer_id"], "email_hash": None, "country_code": row["country_code"],
                "signup_at": None, "acquisition_channel": "unknown", "campaign_id": row.get("campaign_id"),
                "device_class": row.get("device_class"), "is_guest": False,
            })]
            return Record(lines=(), table=table, row=row, derived=derived)
        return Record(lines=(), table=table, row=row)

    def cast(self, f: _Field, text: str, cur: str | None) -> Any:
        col, table, label = f.column, self.spec.name, f.label
        if text is None or not text.strip():
            return [] if col.type == "list<string>" else None
        name = col.name
        kind = col.type
        if kind == "string":
            if base.has_control_chars(text):
                raise RowError(f"{label} contains control characters")
            if name == "currency":
                return base.currency(text, label)
            if name in _COUNTRY_COLUMNS:
                return country_text(text, label)
            if col.allowed:
                return base.one_of(text, label, col.allowed, ALIASES.get((table, name)))
            if name.endswith("_id") or name == "discount_code":
                return base.identifier(text, label)
            if name == "email_hash":
                if "@" in text:
                    return privacy.hash_email(text)
                if _HEX64.match(text.strip()):
                    return text.strip().lower()
                raise RowError(f"{label} is neither an e-mail address nor a sha256 hex hash")
            if name == "ip_hash":
                try:
                    return privacy.hash_ip(str(ipaddress.ip_address(text.strip())))
                except ValueError:
                    if _HEX64.match(text.strip()):
                        return text.strip().lower()
                    raise RowError(f"{label} is neither an IP address nor a sha256 hex hash") from None
            if name == "device_class":
                value = text.strip().lower()
                return value if value in ("desktop", "mobile", "tablet", "bot", "unknown") else privacy.device_class(text)
            if name == "referrer_domain":
                return privacy.referrer_domain(text)
            if (table, name) in _FREE_TEXT:
                return base.text_value(text, label, 500)
            aliases = PLAN_ALIASES if name == "plan_type" else None
            return base.name_value(text, label, aliases=aliases)
        if kind in ("int64", "int32"):
            if name.endswith("_minor"):
                if cur is None:
                    raise RowError(f"{label}: currency is missing, so the amount cannot be read")
                positive = name == "amount_minor" and table in POSITIVE_AMOUNT_TABLES
                if self.mapping.amounts_in == "minor":
                    minor = parse_int(text, label)
                    if positive and minor <= 0:
                        raise RowError(f"{label} must be positive, got {minor}")
                    if minor < 0:
                        raise RowError(f"{label} must not be negative, got {minor}")
                    return minor
                return base.amount_minor(number_text(text, label), cur, label, positive=positive, allow_str=True)
            low, high = RANGES.get(name, (None, None))
            bounds = _INT32 if kind == "int32" else _INT64
            return parse_int(text, label, int(low) if low is not None else bounds[0],
                             int(high) if high is not None else bounds[1])
        if kind == "float64":
            low, high = RANGES.get(name, (None, None))
            real = parse_float(text, label, low, high)
            if name == "usd_per_unit" and real <= 0:
                raise RowError(f"{label} must be positive, got {real}")
            return real
        if kind == "bool":
            return parse_bool(text, label)
        if kind == "timestamp":
            return parse_timestamp(text, label, self.zone, self.mapping.timestamp_format)
        if kind == "date":
            return parse_day(text, label, self.mapping.date_format)
        if kind == "list<string>":
            return [base.name_value(item, label) for item in text.split(self.mapping.list_separator) if item.strip()]
        raise RowError(f"{label}: unsupported type {kind}")  # pragma: no cover - schema types are closed

    def derive(self, row: dict[str, Any]) -> None:
        table = self.spec.name
        for part, src in PARTITION_SOURCES.items():
            if part in {c.name for c in self.spec.columns} and row.get(src) is not None:
                row[part] = base.month_of(row[src])
        if table == "transactions" and row.get("status") is not None:
            if row["status"] == "failed" and row.get("failure_reason") is None:
                row["failure_reason"] = "other"
            if row.get("outcome_type") is None:
                row["outcome_type"] = _outcome(row["status"], row.get("failure_reason"))
            if row.get("attempt_number") is None:
                row["attempt_number"] = 1
            if row.get("billing_reason") is None:
                row["billing_reason"] = ("retry" if row["attempt_number"] > 1 else
                                         "subscription_cycle" if row.get("subscription_id") else "purchase")


def _label(fields: list[_Field], name: str) -> str:
    for f in fields:
        if f.column.name == name:
            return f.label
    return name
