"""platform-json ingestion: every row accounted for, nothing doubled, nothing half-written."""

from __future__ import annotations

import json

import pytest

from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import ingest
from analytics_lib.warehouse.sources import IngestError
from tests.conftest import payment, write_jsonl


def _accounted(res) -> None:
    assert res.rows_read == res.inserted + res.updated + res.unchanged + res.rejected


def test_happy_path_stores_minor_units_utc_and_no_personal_data(tmp_path, warehouse: Warehouse):
    path = write_jsonl(tmp_path / "export.jsonl", [
        payment("pay_1"),
        payment("pay_2", amount=1500, currency="JPY", **{"metadata.countryCode": "JP"}),
        payment("pay_3", amount=12.345, currency="KWD", createdAt="2024-05-01T13:00:00+03:00",
                completedAt="2024-05-01T10:00:02Z", **{"metadata.countryCode": "KW"}),
        payment("pay_4", status="failed", completedAt=None, failedAt="2024-05-01T10:00:03Z",
                failureReason="insufficient_funds", fees=[]),
    ])
    res = ingest(path, "platform-json", warehouse)
    _accounted(res)
    assert (res.rows_read, res.inserted, res.rejected) == (4, 4, 0)
    with warehouse.snapshot() as snap:
        rows = snap.sql("SELECT * FROM transactions ORDER BY transaction_id").set_index("transaction_id")
        assert rows.loc["pay_1", "amount_minor"] == 4999
        assert rows.loc["pay_2", "amount_minor"] == 1500
        assert rows.loc["pay_3", "amount_minor"] == 12345
        assert str(rows.loc["pay_3", "created_at"]) == "2024-05-01 10:00:00+00:00"
        assert rows.loc["pay_4", "outcome_type"] == "issuer_declined"
        assert rows.loc["pay_1", "device_class"] == "mobile"
        assert rows.loc["pay_1", "referrer_domain"] == "www.google.com"
        assert rows.loc["pay_1", "created_month"] == "2024-05"
        assert snap.scalar("SELECT amount_minor FROM fees WHERE transaction_id = 'pay_1'") == 175
        assert snap.count("customers") == 1
        # the IP address and user agent are not stored anywhere, only derived fields
        for table in snap.versions:
            dump = snap.sql(f'SELECT * FROM "{table}"').to_csv()
            assert "198.51.100.23" not in dump and "iPhone" not in dump


def test_reingesting_changes_nothing_and_a_newer_export_updates(tmp_path, warehouse: Warehouse):
    records = [payment(f"pay_{i}", status="pending", completedAt=None) for i in range(5)]
    path = write_jsonl(tmp_path / "day1.jsonl", records)
    first = ingest(path, "platform-json", warehouse)
    assert first.inserted == 5
    versions = warehouse.versions()
    again = ingest(path, "platform-json", warehouse)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 5, 0)
    after = warehouse.versions()
    assert {k: v for k, v in after.items() if k != "ingest_batches"} == {
        k: v for k, v in versions.items() if k != "ingest_batches"
    }, "re-ingesting the same file must not commit to any data table"
    records[1].update(status="completed", completedAt="2024-05-01T10:00:05Z")
    records.append(payment("pay_new"))
    newer = ingest(write_jsonl(tmp_path / "day2.jsonl", records), "platform-json", warehouse)
    assert (newer.inserted, newer.updated, newer.unchanged) == (1, 1, 4)
    with warehouse.snapshot() as snap:
        assert snap.count("transactions") == 6
        assert snap.scalar("SELECT status FROM transactions WHERE transaction_id='pay_1'") == "completed"
        batches = snap.sql("SELECT * FROM ingest_batches ORDER BY started_at")
        assert list(batches["inserted"]) == [5, 0, 1]


BAD_ROWS = {
    "malformed JSON": '{"id": "x", "amount": ',
    "must be positive": payment("zero", amount=0),
    "must be positive, got -5": payment("neg", amount=-5),
    "must be a number": payment("str", amount="10.00"),
    "unknown currency": payment("cur", currency="XYZ"),
    "has no time zone": payment("naive", createdAt="2024-05-01T10:00:00"),
    "not an ISO 8601": payment("date", createdAt="yesterday"),
    "is not a valid identifier": payment('=HYPERLINK("http://evil.example","click")'),
    "control characters": payment("ctl", userId="user\u0007one"),
    "ISO 3166": payment("country", **{"metadata.countryCode": "Narnia"}),
    "more decimals": payment("decimals", amount=10.123),
    "expected a JSON object": "[1, 2, 3]",
    "before createdAt": payment("early", completedAt="2024-04-30T10:00:00Z"),
    "is missing": payment("missing", userId=None),
    "status": payment("status", status="exploded"),
    "riskScore": payment("risk", riskScore=250),
    "line too long": json.dumps(payment("huge", description="x" * (10 * 1024 * 1024))),
}


def test_each_bad_row_is_rejected_with_its_reason(tmp_path, warehouse: Warehouse):
    good = [payment("ok_1"), payment("ok_2")]
    path = write_jsonl(tmp_path / "mixed.jsonl", [good[0], *BAD_ROWS.values(), good[1]])
    res = ingest(path, "platform-json", warehouse)
    _accounted(res)
    assert res.inserted == 2
    assert res.rejected == len(BAD_ROWS)
    with warehouse.snapshot() as snap:
        rejects = snap.sql("SELECT line, reason, raw, raw_length FROM ingest_rejects ORDER BY line")
    assert list(rejects["line"]) == list(range(2, 2 + len(BAD_ROWS)))
    for (expected, _), (_, row) in zip(BAD_ROWS.items(), rejects.iterrows(), strict=True):
        assert expected in row["reason"], (expected, row["reason"])
        assert len(row["raw"]) <= 4096
    huge = rejects.iloc[-1]
    assert huge["raw_length"] > 10 * 1024 * 1024, "the reject records the real length of the line"
    # rejecting the same file again stores each reject once
    again = ingest(path, "platform-json", warehouse)
    assert again.rejected == len(BAD_ROWS)
    with warehouse.snapshot() as snap:
        assert snap.count("ingest_rejects") == len(BAD_ROWS)


def test_duplicate_ids_in_one_file_keep_the_later_row(tmp_path, warehouse: Warehouse):
    path = write_jsonl(tmp_path / "dupes.jsonl", [
        payment("pay_1", status="pending", completedAt=None),
        payment("pay_2"),
        payment("pay_1", status="completed"),
    ])
    res = ingest(path, "platform-json", warehouse)
    _accounted(res)
    assert (res.inserted, res.rejected) == (2, 1)
    with warehouse.snapshot() as snap:
        assert snap.scalar("SELECT status FROM transactions WHERE transaction_id='pay_1'") == "completed"
        reason = snap.scalar("SELECT reason FROM ingest_rejects")
        assert "duplicate id pay_1" in reason and "line 3" in reason


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\n\n", "empty file"),
        (b'{"id": "caf\xe9"}\n', "not UTF-8: line 2"),
    ],
)
def test_whole_file_problems_write_nothing(tmp_path, warehouse: Warehouse, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(payment("ok")).encode() + b"\n" + content if message.startswith("not") else content)
    with pytest.raises(IngestError, match=message):
        ingest(path, "platform-json", warehouse)
    assert all(v <= 0 for v in warehouse.versions().values())


def test_missing_file_and_unknown_source(tmp_path, warehouse: Warehouse):
    with pytest.raises(IngestError, match="file not found"):
        ingest(tmp_path / "nope.jsonl", "platform-json", warehouse)
    path = write_jsonl(tmp_path / "a.jsonl", [payment()])
    with pytest.raises(IngestError, match="unknown source 'paypal'.*platform-json"):
        ingest(path, "paypal", warehouse)


def test_failed_commit_leaves_tables_at_their_previous_version(tmp_path, warehouse: Warehouse, monkeypatch):
    path = write_jsonl(tmp_path / "a.jsonl", [payment("pay_1"), payment("pay_2")])
    ingest(path, "platform-json", warehouse)
    before = warehouse.versions()
    with warehouse.snapshot() as snap:
        total_before = snap.scalar("SELECT sum(amount_minor) FROM transactions")

    import deltalake

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("analytics_lib.warehouse.tables.write_deltalake", explode)
    monkeypatch.setattr(deltalake.DeltaTable, "merge", explode)
    newer = write_jsonl(tmp_path / "b.jsonl", [payment("pay_1", status="refunded"), payment("pay_3")])
    with pytest.raises(OSError, match="disk full"):
        ingest(newer, "platform-json", warehouse)
    assert warehouse.versions()["transactions"] == before["transactions"]
    with warehouse.snapshot() as snap:
        assert snap.scalar("SELECT sum(amount_minor) FROM transactions") == total_before
        assert snap.count("transactions") == 2


def test_rejects_keep_no_personal_data(tmp_path, warehouse: Warehouse):
    bad = payment("pay_bad", amount=-1, **{"metadata.ipAddress": "203.0.113.99",
                                          "metadata.userAgent": "Mozilla/5.0 (SecretPhone)"})
    bad["customerEmail"] = "ada.lovelace@example.com"
    res = ingest(write_jsonl(tmp_path / "a.jsonl", [bad, "not json ada.lovelace@example.com 198.51.100.7"]),
                 "platform-json", warehouse)
    assert res.rejected == 2
    with warehouse.snapshot() as snap:
        dump = snap.sql("SELECT * FROM ingest_rejects").to_csv()
    for secret in ("203.0.113.99", "SecretPhone", "ada.lovelace", "198.51.100.7"):
        assert secret not in dump
    assert "[redacted]" in dump and "pay_bad" in dump
