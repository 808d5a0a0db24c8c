"""The ``csv`` source: any CSV plus a YAML column mapping (the docs/examples files are tested too)."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import ingest
from analytics_lib.warehouse.privacy import hash_email
from analytics_lib.warehouse.sources import IngestError, get_source

EXAMPLES = PROJECT_ROOT / "docs" / "examples"

PAYMENTS_MAPPING = """
table: transactions
columns:
  transaction_id: id
  customer_id: user
  amount_minor: amount
  currency: currency
  status: status
  created_at: created
  country_code: country
  payment_method: method
constants:
  provider: paypal
amounts_in: major
"""
PAYMENTS_HEADER = "id,user,amount,currency,status,created,country,method\n"


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "wh")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def table(wh: Warehouse, name: str, where: str = "") -> list[dict]:
    with wh.snapshot(tables=[name]) as snap:
        return snap.arrow(f"SELECT * FROM {name} {where}").to_pylist()


def rejects(wh: Warehouse, file: str | None = None) -> dict[int, str]:
    return {r["line"]: r["reason"] for r in table(wh, "ingest_rejects") if file in (None, r["file"])}


def all_text(wh: Warehouse) -> str:
    with wh.snapshot() as snap:
        return "\n".join(str(snap.arrow(f'SELECT * FROM "{n}"').to_pylist()) for n in snap.versions).lower()


def load(wh: Warehouse, csv_path: Path, mapping: Path):  # type: ignore[no-untyped-def]
    return ingest(csv_path, "csv", wh, mapping=str(mapping))


# -- the documented examples -------------------------------------------------------------------


def test_examples_payments_refunds_customers(wh: Warehouse) -> None:
    pay = load(wh, EXAMPLES / "payments.csv", EXAMPLES / "csv-mapping-payments.yaml")
    assert (pay.rows_read, pay.inserted, pay.rejected) == (4, 3, 1) and pay.balanced
    tx = {r["transaction_id"]: r for r in table(wh, "transactions")}
    first = tx["ord-1001"]
    assert first["amount_minor"] == 4990 and first["currency"] == "EUR"
    # naive time is Berlin local time (mapping timezone), stored in UTC
    assert first["created_at"] == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert first["provider"] == "paypal" and first["payment_method"] == "paypal"
    assert first["outcome_type"] == "authorized" and first["attempt_number"] == 1
    assert first["billing_reason"] == "purchase" and first["created_month"] == "2024-05"
    assert first["product_id"] == "course-python"
    second = tx["ord-1002"]
    assert second["amount_minor"] == 129900  # "1,299.00"
    assert second["created_at"] == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)  # explicit offset wins
    assert second["country_code"] == "AT"  # from the name "Austria"
    failed = tx["ord-1003"]
    assert (failed["status"], failed["outcome_type"], failed["failure_reason"]) == (
        "failed", "issuer_declined", "insufficient_funds")
    assert "not a number" in rejects(wh)[5]

    ref = load(wh, EXAMPLES / "refunds.csv", EXAMPLES / "csv-mapping-refunds.yaml")
    assert (ref.rows_read, ref.inserted, ref.rejected) == (4, 2, 2) and ref.balanced
    reasons = {r["raw"].split(",")[0]: r["reason"] for r in table(wh, "ingest_rejects") if r["file"] == "refunds.csv"}
    assert reasons["rf-3"].startswith("refund of an unknown payment")
    assert reasons["rf-4"].startswith("refund above the payment")
    refunds = {r["refund_id"]: r for r in table(wh, "refunds")}
    assert refunds["rf-1"]["amount_minor"] == 1000 and refunds["rf-1"]["status"] == "succeeded"
    assert refunds["rf-2"]["reason"] == "duplicate"

    cust = load(wh, EXAMPLES / "customers.csv", EXAMPLES / "csv-mapping-customers.yaml")
    assert cust.rows_read == 3 and cust.rejected == 0 and cust.balanced
    customers = {r["customer_id"]: r for r in table(wh, "customers")}
    assert customers["u-1"]["email_hash"] == hash_email("ana.lima@example.com")
    assert customers["u-2"]["device_class"] == "tablet"  # user agent reduced to a device class
    assert customers["u-3"]["country_code"] == "FR"
    text = all_text(wh)
    for email in ("ana.lima@example.com", "bo@example.org", "cy@example.net"):
        assert email not in text


def test_refunds_checked_against_stored_refunds(wh: Warehouse, tmp_path: Path) -> None:
    load(wh, EXAMPLES / "payments.csv", EXAMPLES / "csv-mapping-payments.yaml")
    load(wh, EXAMPLES / "refunds.csv", EXAMPLES / "csv-mapping-refunds.yaml")
    # ord-1001 (49.90) already has 10.00 refunded: 39.90 more fits, 39.91 does not
    later = write(tmp_path / "refunds2.csv", """
        Refund ID,Order ID,Customer,Amount,Currency,Refunded At,Reason,Result
        rf-5,ord-1001,u-1,39.91,EUR,2024-06-01T09:00:00Z,other,done
        rf-6,ord-1001,u-1,39.90,EUR,2024-06-02T09:00:00Z,other,done
        rf-7,ord-1003,u-3,1.00,USD,2024-06-02T09:00:00Z,other,done
        """)
    result = load(wh, later, EXAMPLES / "csv-mapping-refunds.yaml")
    assert (result.inserted, result.rejected) == (1, 2)
    got = rejects(wh, "refunds2.csv")
    assert got[2].startswith("refund above the payment: 4991 > 4990")
    assert "currency USD differs" in got[4]


def test_reingest_changes_nothing_then_newer_export_updates(wh: Warehouse, tmp_path: Path) -> None:
    mapping = write(tmp_path / "m.yaml", PAYMENTS_MAPPING)
    data = write(tmp_path / "p.csv", PAYMENTS_HEADER + textwrap.dedent("""\
        p-1,u-1,10.00,USD,completed,2024-05-01T10:00:00Z,US,card
        p-2,u-2,20.00,USD,pending,2024-05-01T11:00:00Z,US,card
        """))
    assert load(wh, data, mapping).inserted == 2
    before = wh.versions()
    again = load(wh, data, mapping)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 2, 0)
    after = wh.versions()
    before.pop("ingest_batches"), after.pop("ingest_batches")
    assert after == before
    newer = write(tmp_path / "p2.csv", PAYMENTS_HEADER + textwrap.dedent("""\
        p-1,u-1,10.00,USD,completed,2024-05-01T10:00:00Z,US,card
        p-2,u-2,20.00,USD,completed,2024-05-01T11:00:00Z,US,card
        """))
    result = load(wh, newer, mapping)
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 1)
    assert {r["transaction_id"]: r["status"] for r in table(wh, "transactions")} == {"p-1": "completed", "p-2": "completed"}


def test_row_errors_are_rejected_with_reasons(wh: Warehouse, tmp_path: Path) -> None:
    mapping = write(tmp_path / "m.yaml", PAYMENTS_MAPPING)
    data = write(tmp_path / "p.csv", PAYMENTS_HEADER + textwrap.dedent("""\
        p-1,u-1,10.00,USD,completed,2024-05-01T10:00:00Z,US,card
        p-2,u-2,ten,USD,completed,2024-05-01T10:00:00Z,US,card
        p-3,u-3,10.00,XXY,completed,2024-05-01T10:00:00Z,US,card
        p-4,u-4,10.00,USD,completed,2024-05-01 10:00:00,US,card
        "=HYPERLINK(""http://x"",""y"")",u-5,10.00,USD,completed,2024-05-01T10:00:00Z,US,card
        p-6,"u-\x016",10.00,USD,completed,2024-05-01T10:00:00Z,US,card
        p-7,u-7,10.00,USD,exploded,2024-05-01T10:00:00Z,US,card
        p-8,u-8,-5.00,USD,completed,2024-05-01T10:00:00Z,US,card
        p-9,u-9,10.001,USD,completed,2024-05-01T10:00:00Z,US,card
        p-1,u-1,12.00,USD,completed,2024-05-01T10:00:00Z,US,card
        p-10,u-10,10.00,USD,completed,2024-05-01T10:00:00Z,Atlantis,card
        p-11,u-11,10.00,USD,completed,2024-05-01T10:00:00Z,US
        p-12,,10.00,USD,completed,2024-05-01T10:00:00Z,US,card
        """))
    result = load(wh, data, mapping)
    assert result.rows_read == 13 and result.balanced
    assert (result.inserted, result.rejected) == (1, 12)
    got = rejects(wh)
    assert "amount_minor [amount] 'ten' is not a number" in got[3]
    assert "unknown currency 'XXY'" in got[4]
    assert "has no time zone" in got[5]
    assert "not a valid identifier" in got[6]
    assert "control characters" in got[7]
    assert "'exploded' is not one of" in got[8]
    assert "must be positive" in got[9]
    assert "more decimals than USD allows" in got[10]
    assert "duplicate id p-1 in file: superseded by line 11" in got[2]
    assert "'Atlantis' is not a country" in got[12]
    assert "expected 8 columns" in got[13]
    assert "customer_id [user] is missing" in got[14]
    (p1,) = table(wh, "transactions", "WHERE transaction_id = 'p-1'")
    assert p1["amount_minor"] == 1200  # later row wins


def test_minor_amounts_delimiter_formats_and_yaml_strings(wh: Warehouse, tmp_path: Path) -> None:
    mapping = write(tmp_path / "m.yaml", """
        table: transactions
        columns:
          transaction_id: Id
          customer_id: User
          amount_minor: Cents
          currency: Cur
          status: Paid
          created_at: When
          country_code: Country
          payment_method: Method
          attempt_number: Try
          fraud_indicators: Flags
        constants:
          provider: adyen
        amounts_in: minor
        delimiter: ";"
        timezone: America/New_York
        timestamp_format: "%d/%m/%Y %H:%M"
        value_maps:
          status: {Yes: completed, No: failed}
        """)
    data = write(tmp_path / "p.csv", """
        Id;User;Cents;Cur;Paid;When;Country;Method;Try;Flags
        a-1;u-1;1999;usd;Yes;01/07/2024 09:30;US;card;1;velocity|country_mismatch
        a-2;u-1;1999;usd;No;01/07/2024 09:35;US;card;2;
        a-3;u-1;19.99;usd;Yes;01/07/2024 09:35;US;card;1;
        a-4;u-1;500;jpy;Yes;2024-07-01 09:35;US;card;1;
        """)
    result = load(wh, data, mapping)
    assert (result.inserted, result.rejected) == (2, 2)
    tx = {r["transaction_id"]: r for r in table(wh, "transactions")}
    assert tx["a-1"]["amount_minor"] == 1999 and tx["a-1"]["status"] == "completed"
    assert tx["a-1"]["created_at"] == datetime(2024, 7, 1, 13, 30, tzinfo=UTC)  # EDT = UTC-4
    assert tx["a-1"]["fraud_indicators"] == ["velocity", "country_mismatch"]
    assert tx["a-2"]["status"] == "failed" and tx["a-2"]["failure_reason"] == "other"
    assert tx["a-2"]["billing_reason"] == "retry" and tx["a-2"]["attempt_number"] == 2
    got = rejects(wh)
    assert "'19.99' is not a whole number" in got[4]
    assert "does not match the format" in got[5]


def test_other_tables_derive_partitions_and_cast_types(wh: Warehouse, tmp_path: Path) -> None:
    mapping = write(tmp_path / "activity.yaml", """
        table: user_activity
        columns: {customer_id: user, activity_date: day, logins: logins, lesson_views: views, minutes_watched: minutes}
        """)
    data = write(tmp_path / "activity.csv", """
        user,day,logins,views,minutes
        u-1,2024-05-31,2,5,41.5
        u-2,2024-06-01,1,0,0
        u-3,2024-06-01,-1,0,0
        """)
    result = load(wh, data, mapping)
    assert (result.inserted, result.rejected) == (2, 1)
    rows = {r["customer_id"]: r for r in table(wh, "user_activity")}
    assert rows["u-1"]["activity_month"] == "2024-05" and rows["u-1"]["activity_date"] == date(2024, 5, 31)
    assert rows["u-1"]["minutes_watched"] == 41.5
    assert "outside 0.." in rejects(wh, "activity.csv")[4]

    products = write(tmp_path / "products.yaml", """
        table: products
        columns: {product_id: sku, product_type: type, name: title, list_price_minor: price, currency: cur, active: on sale}
        amounts_in: major
        """)
    pdata = write(tmp_path / "products.csv", """
        sku,type,title,price,cur,on sale
        course-1,course,Python for Data Science,49.00,EUR,yes
        plan-m,subscription_plan,Monthly plan,9.99,EUR,N
        """)
    assert load(wh, pdata, products).inserted == 2
    got = {r["product_id"]: r for r in table(wh, "products")}
    assert got["course-1"]["name"] == "Python for Data Science" and got["course-1"]["active"] is True
    assert got["plan-m"]["active"] is False and got["plan-m"]["list_price_minor"] == 999


# -- the mapping file --------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("table: payments\ncolumns: {}\n", "table: unknown table 'payments'"),
    (PAYMENTS_MAPPING.replace("  provider: paypal\n", "  provider: paypal\n  colour: red\n"), "constants.colour: unknown column of table transactions"),
    (PAYMENTS_MAPPING.replace("  customer_id: user\n", ""), "required column(s) of transactions not mapped and no constant: customer_id"),
    (PAYMENTS_MAPPING.replace("amounts_in: major\n", ""), "amounts_in: required (major or minor) because amount_minor is mapped"),
    (PAYMENTS_MAPPING + "timezone: Mars/Olympus\n", "timezone: 'Mars/Olympus' is not an IANA time zone"),
    # found by fuzzing: a name longer than a file name made zoneinfo raise OSError (a traceback)
    (PAYMENTS_MAPPING + "timezone: " + "x" * 300 + "\n", "is not an IANA time zone"),
    (PAYMENTS_MAPPING.replace("columns:\n", "columns:\n  created_month: month\n"), "columns.created_month: partition column"),
    (PAYMENTS_MAPPING + "amount_unit: cents\n", "amount_unit: Extra inputs are not permitted"),
    (PAYMENTS_MAPPING.replace("amounts_in: major", "amounts_in: cents"), "amounts_in: Input should be 'major' or 'minor'"),
    (PAYMENTS_MAPPING + "delimiter: ';;'\n", "delimiter: must be a single character"),
    (PAYMENTS_MAPPING + "value_maps: {outcome_type: {a: b}}\n", "value_maps.outcome_type: not a mapped column"),
    ("table: [transactions\n", "not valid YAML at line"),
    ("- just\n- a list\n", "expected a YAML mapping"),
])
def test_invalid_mapping_is_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    mapping = write(tmp_path / "bad.yaml", text)
    with pytest.raises(IngestError) as info:
        get_source("csv", mapping=str(mapping))
    assert message in str(info.value)
    assert "\n" not in str(info.value) and "bad.yaml" in str(info.value)


def test_mapping_option_is_required(wh: Warehouse, tmp_path: Path) -> None:
    data = write(tmp_path / "p.csv", PAYMENTS_HEADER)
    with pytest.raises(IngestError, match="csv source needs --mapping FILE"):
        ingest(data, "csv", wh)
    with pytest.raises(IngestError, match="mapping file not found"):
        ingest(data, "csv", wh, mapping=str(tmp_path / "nope.yaml"))


# -- whole-file errors -------------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"id,user,amount,currency,created,country,method\np-1,u,1,USD,2024-05-01T10:00:00Z,US,card\n",
     "missing required columns: 'status'"),
    (b"id,amount\np-1,1\n", "missing required columns: 'user', 'currency', 'status', 'created', 'country', 'method'"),
    (PAYMENTS_HEADER.encode(), "no data rows"),
    (PAYMENTS_HEADER.encode() + b"p-1,M\xfcller,1,USD,2024-05-01T10:00:00Z,US,card\n", "not UTF-8: line 2"),
])
def test_whole_file_errors_write_nothing(wh: Warehouse, tmp_path: Path, content: bytes, message: str) -> None:
    mapping = write(tmp_path / "m.yaml", PAYMENTS_MAPPING)
    path = tmp_path / "p.csv"
    path.write_bytes(content)
    with pytest.raises(IngestError) as info:
        load(wh, path, mapping)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert set(wh.versions().values()) == {-1}


def test_personal_columns_are_redacted_in_rejects(wh: Warehouse, tmp_path: Path) -> None:
    mapping = write(tmp_path / "c.yaml", """
        table: customers
        columns: {customer_id: id, email_hash: mail, country_code: country}
        redact: [notes]
        """)
    data = write(tmp_path / "c.csv", """
        id,mail,country,notes,comment
        c-1,someone@example.com,US,ok,
        c-2,other@example.com,Narnia,call me on +1 555 0100,
        c-3,not-an-email,US,,"wrote from third.person@example.org, twice"
        """)
    result = load(wh, data, mapping)
    assert (result.inserted, result.rejected) == (1, 2)
    text = all_text(wh)
    for secret in ("someone@example.com", "other@example.com", "555 0100", "third.person@example.org"):
        assert secret not in text
    assert "twice" in text  # the rest of a free-text column stays readable
    assert "neither an e-mail address nor a sha256 hex hash" in rejects(wh)[4]


def test_huge_integers_are_rejected_as_rows_not_crashes():
    """Found by the fuzzer (a 5,001-digit 'Card Exp Month'): int() refuses strings over 4,300
    digits with a ValueError, which escaped the row's clean reject."""
    from analytics_lib.warehouse.sources.mapped_csv import RowError, parse_int

    for value in ("1" + "0" * 5000, "-" + "9" * 31, "1" + "0" * 30):
        with pytest.raises(RowError, match="too large"):
            parse_int(value, "Card Exp Month", 1, 12)
    assert parse_int("0" * 5000 + "7", "Card Exp Month", 1, 12) == 7  # leading zeros are not size
    assert parse_int("-" + "0" * 5000 + "12", "n") == -12
    assert parse_int("9" * 30, "n") == int("9" * 30)
