"""Fuzzing every ingestion source with hypothesis: hostile files are rejected row by row or
refused whole with a one-line error, never crash, and every row read is accounted for.

Inputs are valid records with random mutations (fields missing, wrong JSON types, huge and
non-finite numbers, unicode, NUL and control characters, nested garbage, duplicated ids, bad
dates, currencies and countries), raw garbage lines, and byte-level mutations of valid files:

* ``platform-json`` lines, ``stripe`` exports, ``csv`` files with each docs/examples mapping (and
  mutated mappings), ``online-retail`` extracts.

Two properties, checked on every input:

1. parsing (``Source.read``) yields only records and rejects, or raises :class:`IngestError`
   with a one-line message; every data row read is in exactly one record or reject;
2. a whole ``ingest`` into a warehouse (shared by the examples of a test, so later files meet
   stored rows: updates, unchanged rows, refunds of stored payments) raises nothing but a
   one-line IngestError, and ``rows_read == inserted + updated + unchanged + rejected``.

A ValueError other than IngestError counts as a failure: it means one bad row stopped a whole
file. The number of inputs tried is printed per test (``pytest -s``) and recorded in
docs/reliability.md. Budgets: the quick tests stay well under a minute together; the ``slow``
ones multiply them (``FUZZ_SCALE``, default 10: parsing x10, whole ingests x5).
"""

from __future__ import annotations

import csv
import io
import json
import os
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import ingest
from analytics_lib.warehouse.sources import IngestError, Record, Reject, get_source
from analytics_lib.warehouse.sources.base import printable
from tests.conftest import payment
from tests.test_sources_stripe import CLASSIC_HEADER, charge

EXAMPLES = PROJECT_ROOT / "docs" / "examples"
SCALE = int(
    os.environ.get("FUZZ_SCALE", "10")
)  # slow tests: parse budget x SCALE, ingest x SCALE/2
#: inputs tried, per test (printed at the end of each test)
TRIED: Counter[str] = Counter()

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


# -- hostile values -----------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t",
    "\r\n",
    "\u2028",
    "\x7f",
    "\x85",
    "\ud7ff",
    "\ufeff",
    "\u202e",
    "İ",
    "ß",
    "ＵＳＤ",
    "🎉",
    "e\u0301",
    "null",
    "None",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1e309",
    "-0",
    "0",
    "0.0",
    "00012",
    "1,234.50",
    "1.234,50",
    "1_000",
    "0x10",
    "١٢٣",
    "12.345",
    "=1+1",
    "+cmd|' /C calc'!A0",
    "@SUM(A1)",
    "-2+3",
    "' OR 1=1 --",
    "../../etc/passwd",
    "2024-05-01T10:00:00Z",
    "2024-02-30T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2024-05-01 10:00",
    "2024-05-01",
    "12/1/2010 8:26",
    "1714557600",
    "yesterday",
    "USD",
    "usd",
    "EUR",
    "JPY",
    "KWD",
    "XXX",
    "XTS",
    "EURO",
    "US",
    "TR",
    "GB",
    "Unspecified",
    "United Kingdom",
    "x" * 300,
    "9" * 40,
    "-" + "9" * 25,
    "1" + "0" * 5000,
]
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.sampled_from([2**31, 2**53 + 1, 2**63, -(2**63) - 1, 10**30, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_TEXT),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
CELL = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=25),
    st.text(alphabet=string.digits + ".,-+eE ", max_size=25),
)


def one_line(exc: BaseException) -> None:
    """The error a person sees: a non-empty message on one line."""
    message = str(exc)
    assert message and message == printable(message) and "Traceback" not in message, repr(message)[
        :500
    ]


def write_bytes(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# -- the two properties ---------------------------------------------------------------------------


def check_parse(path: Path, source: str, **options: Any) -> None:
    """Property 1: records and rejects only (or a one-line IngestError); every row accounted for."""
    try:
        src = get_source(source, **options)
        items = list(src.read(path))
    except IngestError as exc:
        one_line(exc)
        return
    lines: Counter[int] = Counter()
    for item in items:
        assert isinstance(item, (Record, Reject)), type(item)
        if isinstance(item, Reject):
            assert item.reason and item.reason == printable(item.reason), item.reason[:200]
            lines[item.line] += 1
        else:
            lines.update(item.lines)
    assert sum(lines.values()) == src.rows_read, (sum(lines.values()), src.rows_read)


def check_ingest(path: Path, source: str, wh: Warehouse, **options: Any) -> None:
    """Property 2: a whole ingest balances, or is refused with a one-line IngestError."""
    try:
        result = ingest(path, source, wh, **options)
    except IngestError as exc:
        one_line(exc)
        return
    assert result.balanced, result.summary()
    assert result.rows_read == result.inserted + result.updated + result.unchanged + result.rejected
    for reason in result.reject_reasons:  # what the CLI prints
        assert reason == printable(reason), reason


# -- platform-json ---------------------------------------------------------------------------------

PAYMENT_PATHS = [
    "id",
    "userId",
    "amount",
    "currency",
    "status",
    "paymentMethod",
    "provider",
    "createdAt",
    "completedAt",
    "failedAt",
    "failureReason",
    "outcomeType",
    "attemptNumber",
    "originalTransactionId",
    "billingReason",
    "riskScore",
    "fraudIndicators",
    "fees",
    "metadata",
    "card",
    "metadata.courseId",
    "metadata.subscriptionId",
    "metadata.planType",
    "metadata.countryCode",
    "metadata.ipAddress",
    "metadata.userAgent",
    "metadata.referrer",
    "metadata.campaignId",
    "metadata.discountCode",
    "metadata.ipCountry",
    "fees.0",
    "fees.0.amount",
    "fees.0.currency",
    "fees.0.type",
    "card.brand",
    "card.country",
    "card.ageDays",
    "card.expMonth",
    "card.expYear",
]


def _set_path(obj: Any, path: str, value: Any, delete: bool) -> None:
    *parents, last = path.split(".")
    for part in parents:
        if isinstance(obj, list):
            if not obj:
                return
            obj = obj[0]
        elif isinstance(obj, dict):
            obj = obj.setdefault(part, {} if part != "fees" else [{}])
        else:
            return
    if isinstance(obj, list):
        if delete:
            obj.clear()
        elif obj:
            obj[0] = value
        else:
            obj.append(value)
    elif isinstance(obj, dict):
        if delete:
            obj.pop(last, None)
        else:
            obj[last] = value


@st.composite
def platform_line(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["payment"] * 6 + ["garbage", "deep", "bignum", "blank", "json-value", "binary"]
        )
    )
    if kind == "garbage":
        return draw(st.text(max_size=80)).replace("\n", " ").encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth = draw(st.sampled_from([50, 1000, 100_000]))
        return (
            ("[" * depth + "]" * depth).encode()
            if draw(st.booleans())
            else ('{"a":' * depth + "1" + "}" * depth).encode()
        )
    if kind == "bignum":
        digits = draw(st.sampled_from([20, 400, 4300, 4301, 20_000]))
        field = draw(st.sampled_from(["amount", "riskScore", "attemptNumber", "id"]))
        return (
            json.dumps(payment(f"pay_{draw(st.integers(0, 5))}"))
            .replace(f'"{field}": ', f'"{field}": {"9" * digits}, "_x": ', 1)
            .encode()
        )
    if kind == "blank":
        return draw(st.sampled_from([b"", b"   ", b"\t", b"\r"]))
    if kind == "json-value":
        return json.dumps(draw(JSON_VALUE)).encode()
    if kind == "binary":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    rec = payment(f"pay_{draw(st.integers(0, 5))}", userId=f"user_{draw(st.integers(0, 3))}")
    for _ in range(draw(st.integers(0, 4))):
        _set_path(rec, draw(st.sampled_from(PAYMENT_PATHS)), draw(JSON_VALUE), draw(st.booleans()))
    return json.dumps(rec, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


PLATFORM_FILE = st.lists(platform_line(), min_size=0, max_size=12).map(
    lambda ls: b"\n".join(ls) + b"\n"
)


# -- stripe ---------------------------------------------------------------------------------------

STRIPE_VALUES = {
    "Amount": [
        "50.00",
        "1,234.50",
        "0",
        "-3.00",
        "0.001",
        "1e5",
        "99999999999999999999",
        "NaN",
        "12,34x",
    ],
    "Amount Refunded": ["0.00", "20.00", "50.00", "60.00", "-1"],
    "Currency": ["usd", "eur", "jpy", "kwd", "zzz", "", "USD "],
    "Status": [
        "Paid",
        "Failed",
        "Refunded",
        "Partially refunded",
        "Pending",
        "Canceled",
        "Disputed",
        "Blocked",
        "Lost",
        "succeeded",
        "paid ",
        "PAID",
    ],
    "Created (UTC)": [
        "2024-05-01 10:00:00",
        "2024-05-01 10:00",
        "2024-05-01T10:00:00+02:00",
        "2024-13-01 00:00",
        "1999-12-31 23:59",
        "2100-01-01 00:00",
        "05/01/2024 10:00",
    ],
    "Disputed Amount": ["30.00", "0", "999.00", "x"],
    "Dispute Status": [
        "lost",
        "won",
        "needs_response",
        "warning_closed",
        "charge_refunded",
        "weird",
    ],
    "Dispute Reason": ["fraudulent", "duplicate", "general", "made_up"],
    "Dispute Date (UTC)": ["2024-05-20 08:00", "", "bad"],
    "Mode": ["Live", "Test", "test", ""],
    "Customer ID": ["cus_A1", "", "=cmd", "cus A1"],
    "Card Address Country": ["US", "", "Türkiye", "XX", "United Kingdom"],
    "Card Issue Country": ["US", "", "ZZ"],
    "Card Exp Month": ["12", "13", "0", "x", ""],
    "Card Exp Year": ["2027", "1999", "99999", ""],
    "Fee": ["1.75", "0", "-1", "1e3"],
    "Converted Currency": ["usd", "", "nope"],
    "Payment Source Type": ["card", "paypal", "sepa_debit", "alien"],
    "Card Tokenization Method": ["apple_pay", "android_pay", "x"],
}


@st.composite
def stripe_file(draw: st.DrawFn) -> bytes:
    header = list(CLASSIC_HEADER)
    header_change = draw(
        st.sampled_from(
            ["none"] * 6 + ["drop-required", "duplicate", "zone", "shuffle", "unknown-zone"]
        )
    )
    if header_change == "drop-required":
        header.remove(
            draw(st.sampled_from(["id", "Amount", "Currency", "Status", "Created (UTC)"]))
        )
    elif header_change == "duplicate":
        header.append(draw(st.sampled_from(["Amount", "id", "Fee"])))
    elif header_change == "zone":
        header[header.index("Created (UTC)")] = "Created date (Europe/Berlin)"
    elif header_change == "unknown-zone":
        header[header.index("Created (UTC)")] = "Created date (Mars/Phobos)"
    elif header_change == "shuffle":
        header = draw(st.permutations(header))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 8))):
        if (
            draw(st.integers(0, 9)) == 0
        ):  # a raw line: wrong width, broken quotes, control characters
            out.write(
                draw(
                    st.sampled_from(
                        ['ch_x,"unterminated', "a,b", "\x00,\x00", ",,,,", '"', "ch_y" + "," * 80]
                    )
                )
                + "\n"
            )
            continue
        row = charge(f"ch_{draw(st.integers(0, 5))}")
        for _ in range(draw(st.integers(0, 4))):
            column = draw(st.sampled_from(sorted(STRIPE_VALUES)))
            row[column] = draw(st.one_of(st.sampled_from(STRIPE_VALUES[column]), CELL))
        writer.writerow([row.get(h, "") for h in header])
    return out.getvalue().encode("utf-8", "surrogatepass")


# -- csv with a mapping -----------------------------------------------------------------------------

FX_MAPPING = (
    "table: fx_rates\ncolumns:\n  rate_date: day\n  currency: currency\n  usd_per_unit: usd\n"
)
FX_CSV = "day,currency,usd\n2024-05-01,EUR,1.08\n2024-05-01,GBP,1.26\n2024-05-02,EUR,1.09\n"
MAPPINGS = {
    "payments": (
        (EXAMPLES / "csv-mapping-payments.yaml").read_text(),
        (EXAMPLES / "payments.csv").read_text(),
    ),
    "refunds": (
        (EXAMPLES / "csv-mapping-refunds.yaml").read_text(),
        (EXAMPLES / "refunds.csv").read_text(),
    ),
    "customers": (
        (EXAMPLES / "csv-mapping-customers.yaml").read_text(),
        (EXAMPLES / "customers.csv").read_text(),
    ),
    "fx": (FX_MAPPING, FX_CSV),
}


@st.composite
def mapped_csv(draw: st.DrawFn) -> tuple[bytes, str]:
    """(CSV bytes, mapping text): an example's rows with mutated cells, duplicated and raw lines."""
    mapping, data = MAPPINGS[draw(st.sampled_from(sorted(MAPPINGS)))]
    rows = list(csv.reader(io.StringIO(data)))
    header, body = rows[0], rows[1:]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 9)) == 0:
            out.write(
                draw(st.sampled_from(['"open', "only,two", "\x00", ",".join(["x"] * 40), "   "]))
                + "\n"
            )
            continue
        row = list(draw(st.sampled_from(body)))
        for _ in range(draw(st.integers(0, 3))):
            row[draw(st.integers(0, len(row) - 1))] = draw(CELL)
        writer.writerow(row)
    return out.getvalue().encode("utf-8", "surrogatepass"), mapping


@st.composite
def mutated_mapping(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid example file with a mutated mapping: keys dropped, wrong types, unknown names."""
    mapping, data = MAPPINGS[draw(st.sampled_from(sorted(MAPPINGS)))]
    doc = yaml.safe_load(mapping)
    for _ in range(draw(st.integers(1, 3))):
        section = draw(
            st.sampled_from(
                [
                    "table",
                    "columns",
                    "constants",
                    "amounts_in",
                    "timezone",
                    "delimiter",
                    "value_maps",
                    "timestamp_format",
                    "list_separator",
                    "redact",
                    "bogus",
                ]
            )
        )
        value = draw(
            st.one_of(
                JSON_VALUE,
                st.sampled_from(HOSTILE_TEXT),
                st.sampled_from(
                    ["transactions", "ingest_batches", "Mars/Phobos", "\\t", ";", "%Q"]
                ),
            )
        )
        if (
            section == "columns"
            and isinstance(doc.get("columns"), dict)
            and doc["columns"]
            and draw(st.booleans())
        ):
            key = draw(st.sampled_from(sorted(doc["columns"])))
            if draw(st.booleans()):
                del doc["columns"][key]
            else:
                doc["columns"][key] = value
        elif draw(st.booleans()):
            doc.pop(section, None)
        else:
            doc[section] = value
    text = draw(
        st.sampled_from(
            [yaml.safe_dump(doc, allow_unicode=True), "{{{", "- a\n- b\n", "", "table: [\n"]
        )
    )
    return data.encode(), text


# -- online-retail ----------------------------------------------------------------------------------

RETAIL_HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
RETAIL_VALUES = [
    ["536365", "536366", "C536365", "C536367", "A563185", "=1+1", "", "536365x"],
    ["85123A", "71053", "POST", "M", "", "a\x07b"],
    ["THING", "", 'A "quoted", text', "\u202eevil"],
    ["6", "-2", "0", "1000000000000", "-1000000000000", "six", "1.5", ""],
    [
        "2010-12-01 08:26:00",
        "12/1/2010 8:26",
        "2011-03-27 01:30:00",
        "2010-13-01 00:00:00",
        "",
        "0001-01-01 00:00:00",
    ],
    ["2.55", "0", "-1.00", "1.015", "1e400", "NaN", "99999999999999999", ""],
    ["17850.0", "17850", "", "abc", "-1", "1e3"],
    ["United Kingdom", "France", "Unspecified", "EIRE", "RSA", "Channel Islands", "", "Atlantis"],
]


@st.composite
def retail_file(draw: st.DrawFn) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RETAIL_HEADER if draw(st.integers(0, 9)) else RETAIL_HEADER[:-1])
    for _ in range(draw(st.integers(0, 10))):
        if draw(st.integers(0, 12)) == 0:
            out.write(draw(st.sampled_from(['"open', "a,b", "\x00", ",,,,,,,"])) + "\n")
            continue
        row = [draw(st.sampled_from(values[:3])) for values in RETAIL_VALUES]
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(row) - 1))
            row[i] = draw(st.one_of(st.sampled_from(RETAIL_VALUES[i]), CELL))
        writer.writerow(row)
    return out.getvalue().encode("utf-8", "surrogatepass")


# -- byte-level mutations of valid files ------------------------------------------------------------

VALID_FILES: dict[str, tuple[bytes, dict[str, str]]] = {
    "platform-json": (
        b"".join(json.dumps(payment(f"pay_{i}")).encode() + b"\n" for i in range(3)),
        {},
    ),
    "stripe": (None, {}),  # type: ignore[dict-item]  # filled below (needs the csv writer)
    "csv": ((EXAMPLES / "payments.csv").read_bytes(), {"mapping": "payments"}),
    "online-retail": (
        (
            "\n".join(
                [
                    ",".join(RETAIL_HEADER),
                    "536365,85123A,THING,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
                    "536365,71053,LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom",
                    "C536367,85123A,THING,-2,2010-12-02 09:00:00,2.55,17850.0,United Kingdom",
                ]
            )
            + "\n"
        ).encode(),
        {},
    ),
}
_stripe = io.StringIO()
_w = csv.DictWriter(_stripe, fieldnames=CLASSIC_HEADER, extrasaction="ignore", lineterminator="\n")
_w.writeheader()
for _i in range(3):
    _w.writerow(charge(f"ch_{_i}"))
VALID_FILES["stripe"] = (_stripe.getvalue().encode(), {})


@st.composite
def byte_mutation(draw: st.DrawFn) -> tuple[str, bytes]:
    source = draw(st.sampled_from(sorted(VALID_FILES)))
    data = bytearray(VALID_FILES[source][0])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(
            st.sampled_from(
                ["flip", "insert", "delete", "truncate", "duplicate", "nul", "newline", "quote"]
            )
        )
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        elif op == "truncate":
            del data[pos:]
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 200))]
        elif op == "nul":
            data[pos:pos] = b"\x00"
        elif op == "newline":
            data[pos:pos] = b"\n"
        elif op == "quote":
            data[pos:pos] = b'"'
    return source, bytes(data)


# -- the tests --------------------------------------------------------------------------------------


def _mapping_file(folder: Path, text: str) -> Path:
    path = folder / "mapping.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def _run_parse(kind: str, folder: Path, example: Any) -> None:
    TRIED[f"parse {kind}"] += 1
    if kind == "platform-json":
        check_parse(write_bytes(folder, "p.jsonl", example), "platform-json")
    elif kind == "stripe":
        check_parse(write_bytes(folder, "s.csv", example), "stripe")
    elif kind in ("csv", "csv-mapping"):
        data, mapping = example
        check_parse(
            write_bytes(folder, "m.csv", data), "csv", mapping=_mapping_file(folder, mapping)
        )
    elif kind == "online-retail":
        check_parse(write_bytes(folder, "r.csv", example), "online-retail")
    elif kind == "bytes":
        source, data = example
        options: dict[str, Any] = {}
        if source == "csv":
            options["mapping"] = _mapping_file(folder, MAPPINGS["payments"][0])
        check_parse(write_bytes(folder, "b.dat", data), source, **options)


def _run_ingest(kind: str, folder: Path, wh: Warehouse, example: Any) -> None:
    TRIED[f"ingest {kind}"] += 1
    if kind == "platform-json":
        check_ingest(write_bytes(folder, "p.jsonl", example), "platform-json", wh)
    elif kind == "stripe":
        check_ingest(write_bytes(folder, "s.csv", example), "stripe", wh)
    elif kind == "csv":
        data, mapping = example
        check_ingest(
            write_bytes(folder, "m.csv", data), "csv", wh, mapping=_mapping_file(folder, mapping)
        )
    elif kind == "online-retail":
        check_ingest(write_bytes(folder, "r.csv", example), "online-retail", wh)


PARSE_STRATEGIES: dict[str, st.SearchStrategy] = {
    "platform-json": PLATFORM_FILE,
    "stripe": stripe_file(),
    "csv": mapped_csv(),
    "csv-mapping": mutated_mapping(),
    "online-retail": retail_file(),
    "bytes": byte_mutation(),
}
INGEST_STRATEGIES: dict[str, st.SearchStrategy] = {
    "platform-json": PLATFORM_FILE,
    "stripe": stripe_file(),
    "csv": mapped_csv(),
    "online-retail": retail_file(),
}
#: quick budgets: parse examples are milliseconds, ingest examples (Delta commits) a fraction of a second
PARSE_EXAMPLES = 120
INGEST_EXAMPLES = 8


def _parse_test(kind: str, examples: int, folder: Path) -> Callable[[], None]:
    @settings(FUZZ, max_examples=examples)
    @given(example=PARSE_STRATEGIES[kind])
    def run(example: Any) -> None:
        _run_parse(kind, folder, example)

    return run


def _ingest_test(kind: str, examples: int, folder: Path, wh: Warehouse) -> Callable[[], None]:
    @settings(FUZZ, max_examples=examples)
    @given(example=INGEST_STRATEGIES[kind])
    def run(example: Any) -> None:
        _run_ingest(kind, folder, wh, example)

    return run


@pytest.fixture(scope="module")
def shared_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """One warehouse for all ingest examples of the module: later files meet earlier rows."""
    return Warehouse(tmp_path_factory.mktemp("fuzz-wh") / "warehouse")


@pytest.fixture(autouse=True)
def _report(request: pytest.FixtureRequest):
    before = Counter(TRIED)
    yield
    tried = {k: v - before.get(k, 0) for k, v in TRIED.items() if v - before.get(k, 0)}
    print(f"\nfuzz {request.node.name}: {tried} inputs")


@pytest.mark.parametrize("kind", sorted(PARSE_STRATEGIES))
def test_parsing_hostile_files_never_crashes(
    kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _parse_test(kind, PARSE_EXAMPLES, tmp_path_factory.mktemp(kind))()


@pytest.mark.parametrize("kind", sorted(INGEST_STRATEGIES))
def test_ingesting_hostile_files_balances(
    kind: str, tmp_path_factory: pytest.TempPathFactory, shared_warehouse: Warehouse
) -> None:
    _ingest_test(kind, INGEST_EXAMPLES, tmp_path_factory.mktemp(kind), shared_warehouse)()


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(PARSE_STRATEGIES))
def test_parsing_hostile_files_never_crashes_long(
    kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _parse_test(kind, PARSE_EXAMPLES * SCALE, tmp_path_factory.mktemp(kind))()


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(INGEST_STRATEGIES))
def test_ingesting_hostile_files_balances_long(
    kind: str, tmp_path_factory: pytest.TempPathFactory, shared_warehouse: Warehouse
) -> None:
    _ingest_test(
        kind, INGEST_EXAMPLES * max(1, SCALE // 2), tmp_path_factory.mktemp(kind), shared_warehouse
    )()


def test_every_source_is_fuzzed() -> None:
    from analytics_lib.warehouse.sources import source_names

    assert set(source_names()) <= set(INGEST_STRATEGIES), "a new source needs a fuzz strategy here"
    assert set(source_names()) <= set(VALID_FILES)


# -- regressions: inputs the fuzzing found --------------------------------------------------------


def test_a_json_number_over_4300_digits_rejects_only_its_row(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """Found by fuzzing: json.loads raises a plain ValueError (Python's int-conversion limit) for
    such a number; it stopped the whole file instead of rejecting the line."""
    huge = json.dumps(payment("pay_big")).replace('"amount": 49.99', '"amount": ' + "9" * 4301)
    path = write_bytes(
        tmp_path, "a.jsonl", (json.dumps(payment("pay_ok")) + "\n" + huge + "\n").encode()
    )
    result = ingest(path, "platform-json", warehouse)
    assert (result.rows_read, result.inserted, result.rejected) == (2, 1, 1)
    assert result.reject_reasons == {"malformed JSON": 1}


@pytest.mark.parametrize("field", ["riskScore", "attemptNumber", "card.ageDays", "card.expYear"])
def test_an_integer_beyond_float_range_is_a_row_reject(
    tmp_path: Path, warehouse: Warehouse, field: str
) -> None:
    """Found by fuzzing: float(10**400) raised OverflowError (not a ValueError), so the CLI showed
    a traceback and the file was not ingested."""
    rec = payment("pay_big", card={"brand": "visa", "expMonth": 1, "expYear": 2030})
    _set_path(rec, field, 10**400, delete=False)
    path = write_bytes(
        tmp_path,
        "a.jsonl",
        (json.dumps(payment("pay_ok")) + "\n" + json.dumps(rec) + "\n").encode(),
    )
    result = ingest(path, "platform-json", warehouse)
    assert (result.rows_read, result.inserted, result.rejected) == (2, 1, 1)
    (reason,) = result.reject_reasons
    assert field.split(".")[-1] in reason and "outside" in reason, reason


def test_an_error_quoting_the_header_stays_on_one_line(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """Found by fuzzing (hypothesis byte mutations and atheris): a quote before the header made
    the whole file one header field; "missing required columns ... the file has: <header>"
    then spanned lines and carried control characters (a terminal escape sequence would reach
    the user's terminal)."""
    mapping = _mapping_file(tmp_path, MAPPINGS["payments"][0])
    data = b'"' + (EXAMPLES / "payments.csv").read_bytes()
    with pytest.raises(IngestError) as info:
        ingest(write_bytes(tmp_path, "a.csv", data), "csv", warehouse, mapping=mapping)
    assert "missing required columns" in str(info.value) and "\n" not in str(info.value)
    escape = b"Order ID\x1b[2J\x1b[31m,Customer\n"
    with pytest.raises(IngestError) as info:
        ingest(write_bytes(tmp_path, "b.csv", escape), "csv", warehouse, mapping=mapping)
    assert "\x1b" not in str(info.value) and "\\x1b[2J" in str(info.value)
    named = write_bytes(tmp_path, "new\nline\x1b.jsonl", b"\n")
    with pytest.raises(IngestError, match="empty file") as info:
        ingest(named, "platform-json", warehouse)
    assert str(info.value) == printable(str(info.value))
