"""The scale-up tool (``tests/benchmarks/scale_up.py``): a demo warehouse scaled by 3 is three
disjoint copies of the platform. Every table has three times the rows (the shared dimensions
once), keys are unique, every foreign key resolves inside its own copy, every row carries the
content hash an upsert computes, the layout is the bulk writer's, and the metric layer's additive
numbers are exactly three times the source's while its rates are the same. This is also the check
that the 100M benchmark warehouse (10M generated, scaled by 10) is a valid scale-up.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from analytics_lib import metrics as m
from analytics_lib.config import get_settings
from analytics_lib.synth import generate
from analytics_lib.warehouse import TABLES, Warehouse
from analytics_lib.warehouse.bulk import ROW_GROUP_ROWS
from tests.benchmarks.scale_up import ENTITY_COLUMNS, SHARED, ScaleUpError, main, scale_up

COPIES = 3
ARGS = {"customers": 1500, "months": 6, "seed": 5, "end": dt.date(2025, 6, 30)}

#: (child table, column, parent table, parent column)
FOREIGN_KEYS = (
    ("subscriptions", "customer_id", "customers", "customer_id"),
    ("subscription_events", "subscription_id", "subscriptions", "subscription_id"),
    ("subscription_events", "customer_id", "customers", "customer_id"),
    ("transactions", "customer_id", "customers", "customer_id"),
    ("transactions", "subscription_id", "subscriptions", "subscription_id"),
    ("transactions", "original_transaction_id", "transactions", "transaction_id"),
    ("transactions", "product_id", "products", "product_id"),
    ("fees", "transaction_id", "transactions", "transaction_id"),
    ("refunds", "transaction_id", "transactions", "transaction_id"),
    ("refunds", "customer_id", "customers", "customer_id"),
    ("disputes", "transaction_id", "transactions", "transaction_id"),
    ("disputes", "customer_id", "customers", "customer_id"),
    ("checkout_events", "transaction_id", "transactions", "transaction_id"),
    ("checkout_events", "customer_id", "customers", "customer_id"),
    ("user_activity", "customer_id", "customers", "customer_id"),
    ("support_tickets", "customer_id", "customers", "customer_id"),
    ("fraud_alerts", "transaction_id", "transactions", "transaction_id"),
    ("fraud_alerts", "customer_id", "customers", "customer_id"),
)

#: numbers of comprehensive_analytics that add up over disjoint platforms (x3) ...
ADDITIVE = {
    "transactions": ("total_transactions", "successful_transactions", "failed_transactions", "total_volume",
                     "authorized_attempts", "issuer_attempts", "blocked_transactions", "failed_recurring_charges",
                     "recovered_by_retries"),
    "revenue": ("gross_revenue", "refunds", "chargebacks", "fees", "net_revenue", "successful_payments",
                "refund_count", "dispute_count", "paying_customers", "subscription_revenue", "one_off_revenue",
                "gross_revenue_previous"),
    "recurring_revenue": ("mrr", "arr", "mrr_start", "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr",
                          "net_new_mrr", "subscribers", "subscribers_start", "new_subscribers",
                          "churned_subscribers", "trialing"),
    "customers": ("total_customers", "new_customers", "returning_customers", "customers_ever", "marketing_spend",
                  "repeat_customers"),
    "fraud": ("scored_transactions", "review_count", "block_count", "blocked_by_rules", "fraud_alerts",
              "confirmed_fraud_alerts"),
}
#: ... and the rates and per-unit numbers, which do not change
RATES = {
    "transactions": ("average_transaction_value", "success_rate", "failure_rate", "decline_rate",
                     "authorization_rate", "dunning_recovery_rate"),
    "revenue": ("refund_rate", "refund_rate_amount", "chargeback_rate", "revenue_per_customer",
                "revenue_growth_vs_previous"),
    "recurring_revenue": ("quick_ratio", "gross_mrr_churn_rate", "net_mrr_churn_rate", "net_revenue_retention",
                          "gross_revenue_retention", "customer_churn_rate", "arpa"),
    "customers": ("arpu", "historical_clv", "ltv", "cac", "ltv_to_cac", "monthly_customer_churn_rate",
                  "median_days_between_purchases"),
    "geography": ("international_share", "international_share_of_payments", "countries"),
    "performance": ("costliest_fee_per_net_revenue", "best_success_rate"),
    "fraud": ("average_risk_score", "review_share", "block_share"),
    "cohorts": ("cohorts", "average_month_1_retention"),
}


def _count(wh: Warehouse, sql: str, table: str) -> int:
    with wh.snapshot(tables=[table] if isinstance(table, str) else table) as s:
        return int(s.scalar(sql))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Warehouse, Warehouse]:
    root = tmp_path_factory.mktemp("scale_up")
    generate(Warehouse(root / "source"), bulk=True, **ARGS)
    scale_up(root / "source", root / "x3", COPIES, progress=False)
    return Warehouse(root / "source"), Warehouse(root / "x3")


def test_every_table_has_copies_times_the_rows(pair):
    source, target = pair
    compared = 0
    for name in TABLES:
        n = _count(source, f'SELECT count(*) FROM "{name}"', name)
        expected = n if name in SHARED else COPIES * n
        assert _count(target, f'SELECT count(*) FROM "{name}"', name) == expected, name
        compared += n
    assert compared > 20_000  # a real warehouse, not empty tables
    # the Delta log's row counts (the commit's statistics) agree
    logged = {row["table"]: row["rows"] for row in target.describe()}
    for name in TABLES:
        assert logged[name] == _count(target, f'SELECT count(*) FROM "{name}"', name), name


def test_keys_are_unique(pair):
    _, target = pair
    for name, spec in TABLES.items():
        keys = ", ".join(f'"{k}"' for k in spec.keys)
        dupes = _count(target, f'SELECT count(*) - count(DISTINCT ({keys})) FROM "{name}"', name)
        assert dupes == 0, name


def test_foreign_keys_resolve_within_their_copy(pair):
    source, target = pair
    checked = 0
    for child, column, parent, parent_column in FOREIGN_KEYS:
        orphans = (f'SELECT count(*) FROM "{child}" c WHERE c."{column}" IS NOT NULL AND c."{column}" NOT IN '
                   f'(SELECT "{parent_column}" FROM "{parent}")')
        tables = [child, parent]
        # the generator has no dangling references; a copy must not create any
        assert _count(target, orphans, tables) == COPIES * _count(source, orphans, tables), (child, column)
        if child in SHARED or parent in SHARED:
            continue
        own_key = TABLES[child].keys[0]
        copy_of = "coalesce(regexp_extract({0}, '~([0-9]+)$', 1), '')"
        crossing = (f'SELECT count(*) FROM "{child}" WHERE "{column}" IS NOT NULL AND '
                    f'{copy_of.format(column)} <> {copy_of.format(own_key)}')
        assert _count(target, crossing, child) == 0, (child, column)
        checked += _count(target, f'SELECT count("{column}") FROM "{child}"', child)
    assert checked > 50_000


def test_copied_rows_carry_the_hash_an_upsert_computes(pair):
    """Upserting every stored row again changes nothing: hashes (including the copies' new ids and
    the scaled marketing spend) are those of :meth:`Warehouse.upsert`, and nothing is duplicated."""
    _, target = pair
    for name, spec in TABLES.items():
        if not spec.system_columns:
            continue
        cols = ", ".join(f'"{c}"' for c in spec.business_columns)
        with target.snapshot(tables=[name]) as s:
            rows = s.arrow(f'SELECT {cols} FROM "{name}"')
        if rows.num_rows == 0:
            continue
        version = target.table(name).version()
        result = target.upsert(name, rows)
        assert (result.inserted, result.updated, result.unchanged) == (0, 0, rows.num_rows), name
        assert target.table(name).version() == version, name


def test_copies_rename_entities_and_share_dimensions(pair):
    source, target = pair
    with target.snapshot(tables=["transactions", "marketing_spend", "products"]) as t, \
            source.snapshot(tables=["transactions", "marketing_spend"]) as s:
        ids = {r[0] for r in t.con.sql("SELECT transaction_id FROM transactions").fetchall()}
        first = s.scalar("SELECT min(transaction_id) FROM transactions")
        assert {first, f"{first}~1", f"{first}~2"} <= ids
        # shared dimensions are the source's: products, campaigns, discount codes
        assert t.scalar("SELECT count(DISTINCT campaign_id) FROM transactions") == \
            s.scalar("SELECT count(DISTINCT campaign_id) FROM transactions")
        assert t.scalar("SELECT sum(spend_minor) FROM marketing_spend") == \
            COPIES * s.scalar("SELECT sum(spend_minor) FROM marketing_spend")
    assert set(ENTITY_COLUMNS) | set(SHARED) == set(TABLES)


def test_layout_is_the_bulk_writers(pair):
    source, target = pair
    for name, spec in TABLES.items():
        if not source.exists(name):  # not generated (anomaly alerts, rejects): not written either
            assert not target.exists(name), name
            continue
        src, dst = DeltaTable(source.table_uri(name)), DeltaTable(target.table_uri(name))
        assert dst.schema().to_arrow() == src.schema().to_arrow(), name
        assert dst.metadata().partition_columns == src.metadata().partition_columns, name
        for uri in dst.file_uris():
            meta = pq.ParquetFile(uri).metadata
            assert all(meta.row_group(i).num_rows <= ROW_GROUP_ROWS for i in range(meta.num_row_groups)), name
            assert meta.row_group(0).column(0).compression == "ZSTD", name
            if spec.sort_by:
                col = pq.read_table(uri, columns=[spec.sort_by[0]]).column(0).to_pylist()
                assert col == sorted(col), (name, uri)
    # partitions hold the rows of their month
    with target.snapshot(tables=["transactions"]) as s:
        assert s.scalar("SELECT count(*) FROM transactions WHERE created_month <> strftime(created_at, '%Y-%m')") == 0


def test_metrics_add_up_and_rates_stay(pair):
    source, target = pair
    period = m.Period.parse("2025-06", get_settings().timezone)
    a = m.comprehensive_analytics(period, warehouse=source)
    b = m.comprehensive_analytics(period, warehouse=target)
    nonzero = 0
    for section, names in ADDITIVE.items():
        for name in names:
            x, y = a.sections[section].summary[name], b.sections[section].summary[name]
            assert y == pytest.approx(COPIES * x, rel=1e-9, abs=1e-9), (section, name)
            nonzero += bool(x)
            if isinstance(x, int):
                assert y == COPIES * x, (section, name)
    for section, names in RATES.items():
        for name in names:
            x, y = a.sections[section].summary[name], b.sections[section].summary[name]
            if x is None:
                assert y is None, (section, name)
            else:
                assert y == pytest.approx(x, rel=1e-9, abs=1e-12), (section, name)
    assert nonzero >= 40  # the comparison is of real numbers, not zeros
    assert b.summary["transactions"] == COPIES * a.summary["transactions"]
    assert b.summary["cac"] == pytest.approx(a.summary["cac"], rel=1e-9)


def test_recent_months_and_skipped_tables(pair, tmp_path: Path):
    source, _ = pair
    main(["--source", source.location, "--target", str(tmp_path / "x2"), "--copies", "2",
          "--recent-months-only", "checkout_events=2", "--skip-table", "user_activity"])
    target = Warehouse(tmp_path / "x2")
    assert not target.exists("user_activity")
    with source.snapshot(tables=["checkout_events"]) as s:
        last_two = [r[0] for r in s.con.sql("SELECT DISTINCT occurred_month FROM checkout_events ORDER BY 1").fetchall()][-2:]
    in_src = _count(source, "SELECT count(*) FROM checkout_events WHERE occurred_month IN "
                            f"('{last_two[0]}', '{last_two[1]}')", "checkout_events")
    assert _count(target, "SELECT count(*) FROM checkout_events", "checkout_events") == 2 * in_src
    assert _count(target, "SELECT count(DISTINCT occurred_month) FROM checkout_events", "checkout_events") == 2
    assert (tmp_path / "x2" / "_scale_up.json").is_file()


def test_refuses_a_non_empty_target(pair, tmp_path: Path):
    source, _ = pair
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ScaleUpError, match="not an empty folder"):
        scale_up(source.location, tmp_path / "busy", 2, progress=False)
    with pytest.raises(ScaleUpError, match="unknown table"):
        scale_up(source.location, tmp_path / "new", 2, skip_tables=["nope"], progress=False)
