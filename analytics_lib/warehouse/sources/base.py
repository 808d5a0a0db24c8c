"""What an ingestion source is, and the row checks every source shares.

A source turns one input file into a stream of :class:`Record` (an accepted input row or group of
rows, with the warehouse rows it produces) and :class:`Reject` (an input row refused, with the
reason). Whole-file problems (missing file, not UTF-8, missing required columns) raise
:class:`IngestError` before anything is written. Sources only parse and validate; writing,
de-duplication, refund checks against the warehouse and the row accounting live in
``analytics_lib.warehouse.ingest``.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

from analytics_lib.warehouse.countries import is_country_code
from analytics_lib.warehouse.currency import (
    UnknownCurrencyError,
    exponent,
    normalise_currency,
    to_minor,
)

#: longest input row read; a longer one is rejected without being parsed
MAX_ROW_BYTES = 1 << 20
#: identifiers and codes: letters, digits and a few separators; no spaces, control characters or
#: spreadsheet-formula prefixes
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/#@+\-]{0,127}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class IngestError(ValueError):
    """A whole-file problem: nothing is written and the message is one line.

    Control characters in the message (a header name or file name quoted in it may hold
    newlines or terminal escape sequences) are shown as escapes, so the message stays one line
    and prints safely on a terminal.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(printable(str(message)))


class RowError(ValueError):
    """A row problem: the row is rejected with this message as the reason (one line, escaped as
    :class:`IngestError`'s: reasons are printed by the CLI and shown in reports)."""

    def __init__(self, message: object = "") -> None:
        super().__init__(printable(str(message)))


@dataclass
class Reject:
    """An input row refused, with where it was and why."""

    line: int
    reason: str
    raw: str
    #: length of the row when ``raw`` holds only its beginning
    raw_length: int | None = None


@dataclass
class Record:
    """An accepted input unit and the warehouse rows it produces.

    ``table``/``row`` is the primary row whose insert/update/unchanged outcome is the outcome
    of every input line in ``lines``. ``children`` are rows owned by the record (fees of a
    payment) written with the same upsert rules; ``derived`` rows are only inserted when their
    key is new (a customer first seen on a payment must not overwrite the customer's record).
    """

    lines: tuple[int, ...]
    table: str
    row: dict[str, Any]
    children: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    derived: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


Progress = Callable[[int], None]


class Source(ABC):
    """An ingestion source, registered by name in ``analytics_lib.warehouse.sources``."""

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, **options: Any) -> None:
        self.options = options
        #: data rows read from the file (set by :meth:`read`); the accounting total
        self.rows_read = 0

    @abstractmethod
    def read(self, path: Path, progress: Progress | None = None) -> Iterator[Record | Reject]:
        """Parse ``path``; set ``rows_read``; yield records and rejects in file order."""

    def raw_rows(self, path: Path, lines: set[int]) -> dict[int, str]:
        """The raw text of the given row numbers (for rejects found after parsing)."""
        found: dict[int, str] = {}
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number in lines:
                    found[number] = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if len(found) == len(lines):
                        break
        return found


# -- shared row checks (each raises RowError with a reason a person can act on) --------------


def check_utf8(raw: bytes, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"not UTF-8: line {line}, byte {exc.start}: {exc.reason}") from None


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` on one line: control characters, newlines included, written as escapes (``\\n``)."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def has_control_chars(text: str) -> bool:
    """True for C0/C1 control characters other than tab (they break CSVs and terminals)."""
    return _CONTROL.search(text) is not None


def identifier(value: Any, field_name: str, required: bool = True) -> str | None:
    """An id or code: a short string of safe characters."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{field_name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(f"{field_name} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if _IDENTIFIER.match(text):
        return text
    if has_control_chars(text):
        raise RowError(f"{field_name} contains control characters")
    raise RowError(f"{field_name} {text[:40]!r} is not a valid identifier")


def name_value(value: Any, field_name: str, required: bool = True, aliases: dict[str, str] | None = None) -> str | None:
    """A lower-case category value such as a payment method or provider."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{field_name} is missing")
        return None
    if not isinstance(value, str):
        raise RowError(f"{field_name} must be a string, got {type(value).__name__}")
    text = value.strip().lower().replace("-", "_").replace(" ", "_")
    text = (aliases or {}).get(text, text)
    if not _NAME.match(text):
        raise RowError(f"{field_name} {value[:40]!r} is not a valid name")
    return text


def one_of(value: Any, field_name: str, allowed: tuple[str, ...], aliases: dict[str, str] | None = None, required: bool = True) -> str | None:
    text = name_value(value, field_name, required, aliases)
    if text is not None and text not in allowed:
        raise RowError(f"{field_name} {text!r} is not one of {', '.join(allowed)}")
    return text


def currency(value: Any, field_name: str = "currency") -> str:
    try:
        return normalise_currency(value)
    except UnknownCurrencyError as exc:
        raise RowError(f"{field_name}: {exc}") from None


def amount_minor(value: Any, cur: str, field_name: str = "amount", positive: bool = True, allow_str: bool = False) -> int:
    """Major units -> minor units; rejects non-numbers, NaN and (by default) zero or negative."""
    if isinstance(value, str) and not allow_str:
        raise RowError(f"{field_name} must be a number, got a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise RowError(f"{field_name} must be finite")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e12:
        scaled = value * _SCALE[exponent(cur)]
        minor = round(scaled)
        if abs(scaled - minor) > 1e-6 * max(1.0, abs(scaled)):
            raise RowError(f"{field_name} {value} has more decimals than {cur} allows ({exponent(cur)})")
        return _check_sign(minor, value, field_name, positive)
    try:
        minor = to_minor(value, cur)
        exact = Decimal(str(value).strip()) * (Decimal(10) ** exponent(cur))
    except (ValueError, InvalidOperation) as exc:
        raise RowError(f"{field_name}: {exc}") from None
    if abs(exact - minor) > Decimal("0.000001"):
        raise RowError(f"{field_name} {value} has more decimals than {cur} allows ({exponent(cur)})")
    return _check_sign(minor, value, field_name, positive)


_SCALE = {e: 10**e for e in range(5)}


def _check_sign(minor: int, value: Any, field_name: str, positive: bool) -> int:
    if positive and minor <= 0:
        raise RowError(f"{field_name} must be positive, got {value}")
    if not positive and minor < 0:
        raise RowError(f"{field_name} must not be negative, got {value}")
    if abs(minor) >= 2**62:
        raise RowError(f"{field_name} is too large")
    return minor


def country(value: Any, field_name: str = "countryCode", required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{field_name} is missing")
        return None
    if not isinstance(value, str) or not is_country_code(value.strip()):
        raise RowError(f"{field_name} {str(value)[:40]!r} is not an ISO 3166-1 alpha-2 code")
    return value.strip().upper()


_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def timestamp(value: Any, field_name: str, required: bool = True, naive_zone: Any = None) -> datetime | None:
    """ISO 8601 text -> aware UTC datetime.

    A timestamp without a zone is refused unless the source declares the zone its naive
    timestamps are in (``naive_zone``): guessing would shift payments across days.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{field_name} is missing")
        return None
    if not isinstance(value, str):
        raise RowError(f"{field_name} must be an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f"{field_name} {value[:40]!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        if naive_zone is None:
            raise RowError(f"{field_name} {value[:40]!r} has no time zone")
        parsed = parsed.replace(tzinfo=naive_zone)
    parsed = parsed.astimezone(UTC)
    if not _EARLIEST <= parsed < _LATEST:
        raise RowError(f"{field_name} {value[:40]!r} is outside 2000-2099")
    return parsed


def day(value: Any, field_name: str, required: bool = True) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{field_name} is missing")
        return None
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise RowError(f"{field_name} {str(value)[:40]!r} is not a date (YYYY-MM-DD)") from None


def number(value: Any, field_name: str, low: float | None = None, high: float | None = None, required: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{field_name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RowError(f"{field_name} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:  # an integer beyond float range (JSON allows any number of digits)
        raise RowError(f"{field_name} {str(value)[:20]}... ({len(str(value))} digits) is outside {low}..{high}") from None
    if not math.isfinite(out) or (low is not None and out < low) or (high is not None and out > high):
        raise RowError(f"{field_name} {value} is outside {low}..{high}")
    return out


def integer(value: Any, field_name: str, low: int | None = None, high: int | None = None, required: bool = False) -> int | None:
    out = number(value, field_name, low, high, required)
    if out is None:
        return None
    if out != int(out):
        raise RowError(f"{field_name} must be a whole number, got {value}")
    return int(out)


def text_value(value: Any, field_name: str, max_length: int = 500) -> str | None:
    """Free text: control characters refused, length capped."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowError(f"{field_name} must be a string, got {type(value).__name__}")
    if has_control_chars(value):
        raise RowError(f"{field_name} contains control characters")
    return value.strip()[:max_length] or None


def month_of(ts: datetime | date) -> str:
    return f"{ts.year:04d}-{ts.month:02d}"
