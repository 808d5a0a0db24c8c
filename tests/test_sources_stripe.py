"""The ``stripe`` source: Stripe Dashboard payments export -> transactions, fees, refunds, disputes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import ingest
from analytics_lib.warehouse.privacy import hash_email
from analytics_lib.warehouse.sources import IngestError
from analytics_lib.warehouse.sources.stripe_csv import failure_reason

CLASSIC_HEADER = ["id", "Description", "Seller Message", "Created (UTC)", "Amount", "Amount Refunded", "Currency", "Converted Amount", "Converted Amount Refunded", "Fee", "Tax", "Converted Currency", "Mode", "Status", "Statement Descriptor", "Customer ID", "Customer Description", "Customer Email", "Captured", "Card ID", "Card Last4", "Card Brand", "Card Funding", "Card Exp Month", "Card Exp Year", "Card Name", "Card Address Line1", "Card Address Line2", "Card Address City", "Card Address State", "Card Address Country", "Card Address Zip", "Card Issue Country", "Card Fingerprint", "Card CVC Status", "Card AVS Zip Status", "Card AVS Line1 Status", "Card Tokenization Method", "Disputed Amount", "Dispute Status", "Dispute Reason", "Dispute Date (UTC)", "Dispute Evidence Due (UTC)", "Invoice ID", "Payment Source Type", "Destination", "Transfer", "Transfer Group", "PaymentIntent ID"]  # noqa: SIM905 - the header as Stripe writes it

EMAIL = "Alice.Buyer@Example.com"


def charge(id: str, **values: str) -> dict[str, str]:
    """A paid card charge with sensible defaults; keyword names use _ for spaces."""
    row = {
        "id": id, "Created (UTC)": "2024-05-01 10:00:00", "Amount": "50.00", "Amount Refunded": "0.00",
        "Currency": "usd", "Converted Amount": "50.00", "Converted Amount Refunded": "0.00",
        "Fee": "1.75", "Tax": "0.00", "Converted Currency": "usd", "Mode": "Live", "Status": "Paid",
        "Customer ID": "cus_A1", "Customer Description": "Alice Buyer", "Customer Email": EMAIL,
        "Captured": "true", "Card ID": "card_1", "Card Last4": "4242", "Card Brand": "Visa",
        "Card Funding": "credit", "Card Exp Month": "12", "Card Exp Year": "2027",
        "Card Name": "Alice Buyer", "Card Address Line1": "1 Main St", "Card Address Country": "US",
        "Card Address Zip": "94107", "Card Issue Country": "US", "Card Fingerprint": "fpAAA111",
        "Payment Source Type": "card", "PaymentIntent ID": f"pi_{id}",
    }
    for key, value in values.items():
        row[key.replace("_", " ")] = value
    return row


def write_export(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or CLASSIC_HEADER
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in header})
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def happy_rows() -> list[dict[str, str]]:
    return [
        charge("ch_paid", Amount="1,234.50", Fee="36.10"),
        charge("ch_failed", Status="Failed", Fee="0.00", Customer_ID="", Customer_Email="",
               Seller_Message="The bank returned the decline code `insufficient_funds`.",
               Card_Address_Country="", Card_Issue_Country="GB", Card_Fingerprint="fpGUEST9"),
        charge("ch_partial", Status="Refunded", Amount_Refunded="20.00"),
        charge("ch_dispute", **{"Disputed Amount": "30.00", "Dispute Status": "lost",
                                "Dispute Reason": "fraudulent", "Dispute Date (UTC)": "2024-05-20 08:00",
                                "Dispute Evidence Due (UTC)": "2024-06-01 23:59:59"}),
        charge("ch_wallet", Currency="jpy", Amount="1,500", Fee="0", Card_Tokenization_Method="apple_pay",
               Card_Brand="MasterCard", Customer_ID="cus_B2", Customer_Email="", Card_Address_Country="JP",
               **{"Created (UTC)": "2024-05-02 23:30"}),
        charge("ch_full_refund", Status="Refunded", Amount_Refunded="50.00",
               Description="Line one\nline two, with a comma"),
        charge("ch_blocked", Status="Failed", Seller_Message="Stripe blocked this payment as too risky.",
               Fee="0"),
    ]


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "wh")


def table(wh: Warehouse, name: str, where: str = "") -> list[dict]:
    with wh.snapshot(tables=[name]) as snap:
        return snap.arrow(f"SELECT * FROM {name} {where}").to_pylist()


def all_text(wh: Warehouse) -> str:
    """Every string value stored in every table, lower-cased (to look for personal data)."""
    chunks = []
    with wh.snapshot() as snap:
        for name in snap.versions:
            chunks.append(str(snap.arrow(f'SELECT * FROM "{name}"').to_pylist()))
    return "\n".join(chunks).lower()


def test_happy_path_values(wh: Warehouse, tmp_path: Path) -> None:
    path = write_export(tmp_path / "payments.csv", happy_rows())
    result = ingest(path, "stripe", wh)
    assert result.rows_read == 7
    assert (result.inserted, result.updated, result.unchanged, result.rejected) == (7, 0, 0, 0)
    assert result.balanced
    tx = {r["transaction_id"]: r for r in table(wh, "transactions")}

    paid = tx["ch_paid"]
    assert paid["amount_minor"] == 123450 and paid["currency"] == "USD"
    assert paid["status"] == "completed" and paid["outcome_type"] == "authorized"
    assert paid["created_at"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert paid["completed_at"] == paid["created_at"] and paid["created_month"] == "2024-05"
    assert paid["provider"] == "stripe" and paid["payment_method"] == "card"
    assert paid["card_brand"] == "visa" and paid["card_country"] == "US" and paid["country_code"] == "US"
    assert paid["card_expiry_month"] == date(2027, 12, 1)
    assert paid["customer_id"] == "cus_A1"

    failed = tx["ch_failed"]
    assert failed["status"] == "failed" and failed["failure_reason"] == "insufficient_funds"
    assert failed["outcome_type"] == "issuer_declined" and failed["failed_at"] == failed["created_at"]
    assert failed["customer_id"] == "stripe-guest:fpGUEST9"
    assert failed["country_code"] == "GB"  # from Card Issue Country when the address has none

    assert tx["ch_partial"]["status"] == "partially_refunded"
    assert tx["ch_full_refund"]["status"] == "refunded"
    assert tx["ch_dispute"]["status"] == "disputed"
    wallet = tx["ch_wallet"]
    assert wallet["payment_method"] == "apple_pay" and wallet["amount_minor"] == 1500  # JPY: no minor unit
    assert wallet["card_brand"] == "mastercard" and wallet["country_code"] == "JP"
    assert wallet["created_at"] == datetime(2024, 5, 2, 23, 30, tzinfo=UTC)
    blocked = tx["ch_blocked"]
    assert blocked["outcome_type"] == "blocked" and blocked["failure_reason"] == "fraudulent"

    fees = {r["fee_id"]: r for r in table(wh, "fees")}
    assert fees["ch_paid:fee"]["amount_minor"] == 3610 and fees["ch_paid:fee"]["transaction_id"] == "ch_paid"
    assert "ch_failed:fee" not in fees  # no fee row for a zero fee
    refunds = {r["refund_id"]: r for r in table(wh, "refunds")}
    assert set(refunds) == {"ch_partial:refund", "ch_full_refund:refund"}
    part = refunds["ch_partial:refund"]
    assert part["amount_minor"] == 2000 and part["status"] == "succeeded" and part["reason"] is None
    assert part["created_at"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert refunds["ch_full_refund:refund"]["amount_minor"] == 5000
    (dispute,) = table(wh, "disputes")
    assert dispute["dispute_id"] == "ch_dispute:dispute" and dispute["amount_minor"] == 3000
    assert (dispute["status"], dispute["outcome"], dispute["reason"]) == ("lost", "lost", "fraudulent")
    assert dispute["created_at"] == datetime(2024, 5, 20, 8, 0, tzinfo=UTC)
    assert dispute["evidence_due_at"] == datetime(2024, 6, 1, 23, 59, 59, tzinfo=UTC)

    customers = {r["customer_id"]: r for r in table(wh, "customers")}
    assert customers["cus_A1"]["email_hash"] == hash_email(EMAIL)
    assert customers["cus_A1"]["is_guest"] is False
    assert customers["stripe-guest:fpGUEST9"]["is_guest"] is True
    assert customers["cus_B2"]["email_hash"] is None
    text = all_text(wh)
    assert EMAIL.lower() not in text and "alice buyer" not in text and "1 main st" not in text


def test_reingest_changes_nothing(wh: Warehouse, tmp_path: Path) -> None:
    path = write_export(tmp_path / "payments.csv", happy_rows())
    ingest(path, "stripe", wh)
    before = wh.versions()
    again = ingest(path, "stripe", wh)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 7, 0)
    after = wh.versions()
    before.pop("ingest_batches"), after.pop("ingest_batches")  # every run logs its batch
    assert after == before


def test_newer_export_updates(wh: Warehouse, tmp_path: Path) -> None:
    ingest(write_export(tmp_path / "day1.csv", happy_rows()), "stripe", wh)
    rows = happy_rows()
    rows[0] = charge("ch_paid", Amount="1,234.50", Fee="36.10", Status="Refunded", Amount_Refunded="1,234.50")
    result = ingest(write_export(tmp_path / "day2.csv", rows), "stripe", wh)
    assert (result.inserted, result.updated, result.unchanged, result.rejected) == (0, 1, 6, 0)
    (paid,) = table(wh, "transactions", "WHERE transaction_id = 'ch_paid'")
    assert paid["status"] == "refunded"
    (refund,) = table(wh, "refunds", "WHERE transaction_id = 'ch_paid'")
    assert refund["amount_minor"] == 123450
    assert len(table(wh, "transactions")) == 7  # updated, never duplicated


def test_newer_header_spelling_and_missing_optional_columns(wh: Warehouse, tmp_path: Path) -> None:
    header = ["ID", "Created date (UTC)", "Amount", "Currency", "Status", "Card Issue Country"]
    rows = [{"ID": "ch_n1", "Created date (UTC)": "2024-05-01 10:00", "Amount": "10.00", "Currency": "eur",
             "Status": "succeeded", "Card Issue Country": "DE"}]
    result = ingest(write_export(tmp_path / "new.csv", rows, header), "stripe", wh)
    assert (result.inserted, result.rejected) == (1, 0)
    (row,) = table(wh, "transactions")
    assert row["status"] == "completed" and row["amount_minor"] == 1000 and row["currency"] == "EUR"
    assert row["customer_id"] == "stripe-guest:ch_n1" and row["payment_method"] == "unknown"
    assert table(wh, "fees") == []


def test_header_time_zone_is_honoured(wh: Warehouse, tmp_path: Path) -> None:
    header = ["id", "Created date (Europe/Berlin)", "Amount", "Currency", "Status", "Card Issue Country"]
    rows = [{"id": "ch_tz", "Created date (Europe/Berlin)": "2024-07-01 12:00", "Amount": "10",
             "Currency": "eur", "Status": "Paid", "Card Issue Country": "DE"}]
    ingest(write_export(tmp_path / "tz.csv", rows, header), "stripe", wh)
    (row,) = table(wh, "transactions")
    assert row["created_at"] == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)


def test_row_errors_are_rejected_with_reasons(wh: Warehouse, tmp_path: Path) -> None:
    rows = [
        charge("ch_ok"),                                                       # line 2
        charge("ch_bad_amount", Amount="12,34x"),                              # 3
        charge("ch_bad_currency", Currency="zzz"),                             # 4
        charge('=HYPERLINK("http://evil.example","click")'),                   # 5
        charge("ch_ctrl", Customer_ID="cus_\x07bell"),                         # 6
        charge("ch_over_refund", Status="Refunded", Amount_Refunded="60.00"),  # 7
        charge("ch_no_country", Card_Address_Country="", Card_Issue_Country=""),  # 8
        charge("ch_dup", Amount="10.00"),                                      # 9
        charge("ch_test", Mode="Test"),                                        # 10
        charge("ch_status", Status="Exploded"),                                # 11
        charge("ch_dup", Amount="11.00"),                                      # 12
        charge("ch_zero", Amount="0.00"),                                      # 13
    ]
    path = write_export(tmp_path / "bad.csv", rows)
    result = ingest(path, "stripe", wh)
    assert result.rows_read == 12 and result.balanced
    assert (result.inserted, result.rejected) == (2, 10)
    rejects = {r["line"]: r for r in table(wh, "ingest_rejects")}
    assert "Amount '12,34x' is not a number" in rejects[3]["reason"]
    assert "unknown currency 'zzz'" in rejects[4]["reason"]
    assert "id" in rejects[5]["reason"] and "not a valid identifier" in rejects[5]["reason"]
    assert "control characters" in rejects[6]["reason"]
    assert rejects[7]["reason"].startswith("refund above the payment")
    assert rejects[8]["reason"].startswith("no country")
    assert "superseded by line 12" in rejects[9]["reason"]
    assert "test-mode" in rejects[10]["reason"]
    assert "Status 'Exploded'" in rejects[11]["reason"]
    assert "must be positive" in rejects[13]["reason"]
    (dup,) = table(wh, "transactions", "WHERE transaction_id = 'ch_dup'")
    assert dup["amount_minor"] == 1100  # the later row wins
    # personal columns are blanked in the stored raw rows, including superseded duplicates
    assert all(EMAIL.lower() not in r["raw"].lower() for r in rejects.values())
    assert "[redacted]" in rejects[9]["raw"] and "ch_dup" in rejects[9]["raw"]
    assert EMAIL.lower() not in all_text(wh)


def test_quoted_newlines_keep_line_numbers(wh: Warehouse, tmp_path: Path) -> None:
    rows = [charge("ch_a", Description="first\nsecond\nthird"), charge("ch_b", Currency="zzz")]
    result = ingest(write_export(tmp_path / "nl.csv", rows), "stripe", wh)
    assert result.rows_read == 2
    (reject,) = table(wh, "ingest_rejects")
    assert reject["line"] == 5  # header 1, ch_a on lines 2-4


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"id,Amount,Currency\nch_1,10,usd\n", "missing required columns: Created (UTC) / Created date (UTC), Status"),
    (",".join(CLASSIC_HEADER).encode() + b"\n", "no data rows"),
    (",".join(CLASSIC_HEADER).encode() + b"\nch_1,Caf\xe9\n", "not UTF-8: line 2"),
])
def test_whole_file_errors_write_nothing(wh: Warehouse, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    with pytest.raises(IngestError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        ingest(path, "stripe", wh)
    assert "\n" not in str(info.value)
    assert set(wh.versions().values()) == {-1}


def test_failure_reasons_from_seller_message() -> None:
    assert failure_reason("Your card has expired.") == "expired_card"
    assert failure_reason("The bank returned the decline code `do_not_honor`.") == "do_not_honor"
    assert failure_reason("This payment required an authentication action to complete") == "authentication_required"
    assert failure_reason("decline code `fraudulent`") == "fraudulent"
    assert failure_reason("The bank did not return any further details with this decline.") == "card_declined"
    assert failure_reason(None) == "card_declined"


def test_fee_is_in_the_converted_currency(wh: Warehouse, tmp_path: Path) -> None:
    rows = [charge("ch_eur", Currency="eur", Amount="100.00", Fee="3.20", Converted_Currency="usd",
                   Converted_Amount="108.00")]
    ingest(write_export(tmp_path / "fx.csv", rows), "stripe", wh)
    (fee,) = table(wh, "fees")
    assert (fee["amount_minor"], fee["currency"], fee["provider"]) == (320, "USD", "stripe")
    (tx,) = table(wh, "transactions")
    assert (tx["amount_minor"], tx["currency"]) == (10000, "EUR")
