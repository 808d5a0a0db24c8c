"""The ``online-retail`` source: UCI Online Retail invoice lines -> GBP payments, refunds, customers."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import ingest
from analytics_lib.warehouse.sources import IngestError

REAL_FILE = PROJECT_ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"

# line numbers on the right; line 22 holds a quoted newline, so the next record starts on 24
SAMPLE = HEADER + (
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"  # 2
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom\n"  # 3
    "536366,22633,HAND WARMER UNION JACK,6,2011-06-01 12:00:00,1.85,,France\n"  # 4 guest, summer time
    '536365,84406B,"CREAM CUPID HEARTS COAT HANGER, ""LARGE""",8,2010-12-01 08:27:00,2.75,17850.0,United Kingdom\n'  # 5
    "C536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-2,2010-12-02 09:00:00,2.55,17850.0,United Kingdom\n"  # 6
    "C536367,POST,POSTAGE,-1,2010-12-02 09:00:00,18.00,17850.0,United Kingdom\n"  # 7 nothing to refund
    "C536368,22633,HAND WARMER UNION JACK,-1,2011-06-02 10:00:00,1.85,,France\n"  # 8 no customer
    "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,United Kingdom\n"  # 9
    "536369,22960,JAM MAKING SET,0,2010-12-03 10:00:00,4.25,12583.0,France\n"  # 10
    "536370,22961,JAM JAR,-5,2010-12-03 10:00:00,0,,United Kingdom\n"  # 11 stock adjustment
    "C536371,22962,JAM,3,2010-12-03 10:00:00,1.00,12583.0,France\n"  # 12
    "536372,22963,FREEBIE,1,2010-12-03 10:00:00,0,12583.0,France\n"  # 13
    "536373,22964,THING,six,2010-12-03 10:00:00,1.00,12583.0,France\n"  # 14
    "536374,22965,THING,1,2010-12-03 10:00:00,1.0x,12583.0,France\n"  # 15
    "536375,22966,THING,1,2010-12-03 10:00:00,1.00,12743.0,Unspecified\n"  # 16
    '"=HYPERLINK(""http://x"",""y"")",22967,THING,1,2010-12-03 10:00:00,1.00,12583.0,France\n'  # 17
    "536376,22968,THING,1,12/3/2010 10:05,1.015,12583.0,France\n"  # 18 spreadsheet date, half-even
    "C536377,71053,WHITE METAL LANTERN,-7,2010-12-04 10:00:00,3.39,17850.0,United Kingdom\n"  # 19 > bought
    "C536378,84406B,CREAM CUPID,-8,2010-12-04 11:00:00,9.99,17850.0,United Kingdom\n"  # 20 > payment
    "536376,22969,THING,1,2010-12-03 10:05:00,1.00,12584.0,France\n"  # 21 other customer
    '536366,22634,"HAND WARMER\nBIRD",2,2011-06-01 12:00:00,2.10,,France\n'  # 22-23
    "536380,229\x0770,THING,1,2010-12-03 10:00:00,1.00,12583.0,France\n"  # 24
)
EXPECTED_REJECTS = {
    7: "refund of an unknown payment: no earlier invoice of customer 17850 has stock code 'POST'",
    8: "refund of an unknown payment: cancellation without CustomerID",
    9: "bad-debt adjustment",
    10: "Quantity is 0",
    11: "negative Quantity on a sales invoice",
    12: "positive Quantity on a cancellation invoice",
    13: "UnitPrice must be positive",
    14: "Quantity 'six' is not a whole number",
    15: "UnitPrice '1.0x' is not a number",
    16: "Country 'Unspecified' is not a known country",
    17: "is not an invoice number",
    19: "refund above the payment: no earlier invoice of customer 17850 has 7 of stock code '71053'",
    20: "refund above the payment: 8502 > 5764 minor units of GBP on retail:536365",
    21: "CustomerID differs from the first line of invoice 536376 (line 18)",
    24: "StockCode contains control characters",
}


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "wh")


def write_gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    return path


def rows(wh: Warehouse, name: str) -> dict[str, dict]:
    from analytics_lib.warehouse.schema import get_table

    key = get_table(name).keys[0]
    with wh.snapshot(tables=[name]) as snap:
        return {r[key]: r for r in snap.arrow(f"SELECT * FROM {name}").to_pylist()}


def test_sample_payments_refunds_customers(wh: Warehouse, tmp_path: Path) -> None:
    path = write_gz(tmp_path / "online_retail.csv.gz", SAMPLE)
    result = ingest(path, "online-retail", wh)
    assert result.rows_read == 22 and result.balanced
    assert (result.inserted, result.updated, result.unchanged, result.rejected) == (7, 0, 0, 15)

    tx = rows(wh, "transactions")
    assert set(tx) == {"retail:536365", "retail:536366", "retail:536376"}
    first = tx["retail:536365"]
    assert first["amount_minor"] == 6 * 255 + 6 * 339 + 8 * 275  # 57.64 GBP, lines 2, 3 and 5
    assert first["currency"] == "GBP" and first["provider"] == "online_retail"
    assert first["created_at"] == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)  # GMT in winter
    assert first["status"] == "partially_refunded" and first["outcome_type"] == "authorized"
    assert first["payment_method"] == "unknown" and first["billing_reason"] == "purchase"
    assert first["customer_id"] == "retail:17850" and first["country_code"] == "GB"
    guest = tx["retail:536366"]
    assert guest["customer_id"] == "retail-guest:536366" and guest["country_code"] == "FR"
    assert guest["created_at"] == datetime(2011, 6, 1, 11, 0, tzinfo=UTC)  # BST = UTC+1
    assert guest["amount_minor"] == 6 * 185 + 2 * 210 and guest["status"] == "completed"
    assert tx["retail:536376"]["amount_minor"] == 102  # 1.015 rounds half-even in Decimal, not 101
    assert tx["retail:536376"]["created_at"] == datetime(2010, 12, 3, 10, 5, tzinfo=UTC)

    (refund,) = rows(wh, "refunds").values()
    assert refund["refund_id"] == "retail:C536367:536365" and refund["transaction_id"] == "retail:536365"
    assert refund["amount_minor"] == 510 and refund["customer_id"] == "retail:17850"
    assert refund["created_at"] == datetime(2010, 12, 2, 9, 0, tzinfo=UTC)

    customers = rows(wh, "customers")
    assert set(customers) == {"retail:17850", "retail:12583", "retail-guest:536366"}
    assert customers["retail-guest:536366"]["is_guest"] is True
    assert customers["retail:17850"]["is_guest"] is False and customers["retail:17850"]["country_code"] == "GB"

    rejects = {r["line"]: r for r in rows(wh, "ingest_rejects").values()}
    assert set(rejects) == set(EXPECTED_REJECTS)
    for line, reason in EXPECTED_REJECTS.items():
        assert reason in rejects[line]["reason"], (line, rejects[line]["reason"])
    assert rejects[7]["raw"].startswith("C536367,POST,POSTAGE,-1")


def test_reingest_changes_nothing_and_newer_file_updates(wh: Warehouse, tmp_path: Path) -> None:
    path = write_gz(tmp_path / "retail.csv.gz", SAMPLE)
    ingest(path, "online-retail", wh)
    before = wh.versions()
    again = ingest(path, "online-retail", wh)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 7, 15)
    after = wh.versions()
    before.pop("ingest_batches"), after.pop("ingest_batches")
    assert after == before
    # a newer extract with a cancellation of invoice 536376: the payment becomes refunded
    newer = SAMPLE + "C536381,22968,THING,-1,2010-12-06 10:00:00,1.015,12583.0,France\n"
    result = ingest(write_gz(tmp_path / "retail2.csv.gz", newer), "online-retail", wh)
    assert (result.inserted, result.updated, result.unchanged, result.rejected) == (1, 1, 6, 15)
    assert result.balanced
    assert rows(wh, "transactions")["retail:536376"]["status"] == "refunded"
    assert rows(wh, "refunds")["retail:C536381:536376"]["amount_minor"] == 102


def test_plain_csv_and_non_contiguous_invoices(wh: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    path.write_text(HEADER + (
        "1001,A,x,1,2011-01-05 10:00:00,1.00,1.0,Germany\n"
        "1002,B,x,1,2011-01-05 11:00:00,2.00,2.0,EIRE\n"
        "1001,C,x,2,2011-01-05 09:59:00,3.00,1.0,Germany\n"
    ), encoding="utf-8")
    result = ingest(path, "online-retail", wh)
    assert (result.inserted, result.rejected) == (3, 0)
    tx = rows(wh, "transactions")
    assert tx["retail:1001"]["amount_minor"] == 700
    assert tx["retail:1001"]["created_at"] == datetime(2011, 1, 5, 9, 59, tzinfo=UTC)  # earliest line
    assert tx["retail:1002"]["country_code"] == "IE"


def test_refund_goes_to_most_recent_invoice_with_enough_quantity(wh: Warehouse, tmp_path: Path) -> None:
    path = write_gz(tmp_path / "r.csv.gz", HEADER + (
        "2001,S1,x,5,2011-02-01 10:00:00,1.00,7.0,United Kingdom\n"
        "2002,S1,x,1,2011-02-02 10:00:00,1.00,7.0,United Kingdom\n"
        "2003,S1,x,9,2011-02-10 10:00:00,1.00,7.0,United Kingdom\n"  # after the cancellation
        "C2004,S1,x,-3,2011-02-03 10:00:00,1.00,7.0,United Kingdom\n"  # 2002 has only 1 -> 2001
        "C2005,S1,x,-1,2011-02-03 11:00:00,1.00,7.0,United Kingdom\n"  # 2002 (most recent) has 1
        "C2006,S1,x,-3,2011-02-03 12:00:00,1.00,7.0,United Kingdom\n"  # 2001 has 2 left -> rejected
    ))
    result = ingest(path, "online-retail", wh)
    assert result.balanced and (result.inserted, result.rejected) == (5, 1)
    refunds = rows(wh, "refunds")
    assert set(refunds) == {"retail:C2004:2001", "retail:C2005:2002"}
    tx = rows(wh, "transactions")
    assert tx["retail:2002"]["status"] == "refunded" and tx["retail:2001"]["status"] == "partially_refunded"


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (HEADER.encode(), "no data rows"),
    (b"InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,Country\n1,A,1,2011-01-01 10:00:00,1.0,France\n",
     "missing required columns: Description, CustomerID"),
    (HEADER.encode() + b"1001,A,Caf\xe9,1,2011-01-05 10:00:00,1.00,1.0,Germany\n", "not UTF-8: line 2"),
    (gzip.compress(HEADER.encode() * 50)[:-20], "broken gzip file"),
])
def test_whole_file_errors_write_nothing(wh: Warehouse, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "retail.csv.gz"
    path.write_bytes(content)
    with pytest.raises(IngestError) as info:
        ingest(path, "online-retail", wh)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert set(wh.versions().values()) == {-1}


@pytest.mark.shared_data
def test_real_online_retail_file(tmp_path: Path) -> None:
    if not REAL_FILE.is_file():
        pytest.skip(f"shared data set not found: {REAL_FILE} (the UCI Online Retail file lives in ../shared/data)")
    wh = Warehouse(tmp_path / "wh")
    started = time.perf_counter()
    first = ingest(REAL_FILE, "online-retail", wh)
    seconds = time.perf_counter() - started
    assert first.rows_read == 541909
    assert first.balanced and first.updated == 0 and first.unchanged == 0
    # measured counts, documented in docs/sources.md
    assert (first.inserted, first.rejected) == (537130, 4779)
    assert first.tables["transactions"]["inserted"] == 19946
    assert first.tables["refunds"]["inserted"] == 3764
    assert first.tables["customers"]["inserted"] == 4334 + 1422
    assert seconds < 120, f"ingest took {seconds:.0f} s"
    second = ingest(REAL_FILE, "online-retail", wh)
    assert second.rows_read == 541909 and second.balanced
    assert (second.inserted, second.updated) == (0, 0)
    assert (second.unchanged, second.rejected) == (537130, 4779)
    with wh.snapshot(tables=["transactions", "refunds"]) as snap:
        over = snap.scalar("""
            SELECT count(*) FROM (SELECT t.transaction_id, t.amount_minor, sum(r.amount_minor) AS refunded
                                  FROM transactions t JOIN refunds r USING (transaction_id)
                                  GROUP BY ALL) WHERE refunded > amount_minor""")
        assert over == 0
        assert snap.scalar("SELECT count(DISTINCT currency) FROM transactions") == 1
