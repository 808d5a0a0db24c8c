"""The three classifiers (churn, payment_failure, fraud) on a small demo warehouse.

Out-of-time splits, features that never see later rows, registry round trips, bad input,
calibration, scorecards against their baselines, the CLI, the prediction shape and the
platform's rules. One demo warehouse and one trained version per model serve the whole module.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import nbformat
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from analytics_lib import models
from analytics_lib.cli import main
from analytics_lib.config import PROJECT_ROOT
from analytics_lib.models import ModelError, Registry, RegistryError
from analytics_lib.models.base import Action, RiskFactor, data_range
from analytics_lib.models.churn import (
    ChurnModel,
    churn_risk_factors,
    estimated_churn_date,
    evaluation_reference_dates,
    retention_strategies,
    training_reference_dates,
)
from analytics_lib.models.classifier import (
    candidates_feature_table,
    day_start,
    local_params,
    money_params,
)
from analytics_lib.models.failure import (
    FAILURE_RISK_THRESHOLDS,
    PaymentFailureModel,
    dunning_recovery_rate,
    failure_actions,
    renewals_at_risk,
)
from analytics_lib.models.fraud import (
    FraudModel,
    FraudScorer,
    card_precision_top_k,
    decisions,
    earlier_history,
    fraud_risk_levels,
    what_if,
)
from analytics_lib.models.scoring import risk_level, risk_levels
from analytics_lib.synth import generate
from analytics_lib.warehouse import Warehouse

NAMES = ("churn", "payment_failure", "fraud")
END = date(2025, 6, 30)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("classifiers") / "warehouse")
    generate(wh, customers=4000, months=15, seed=11, end=END)
    return wh


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry(tmp_path_factory.mktemp("classifiers_registry"))


@pytest.fixture(scope="module")
def trained(warehouse: Warehouse, registry: Registry) -> dict:
    return {name: models.get(name).fit_and_register(warehouse, registry) for name in NAMES}


# ---- out-of-time splits ------------------------------------------------------------------------
def test_failure_split_is_out_of_time(warehouse: Warehouse) -> None:
    model = PaymentFailureModel()
    with warehouse.snapshot() as snap:
        split = model.default_split(snap)
        last = data_range(snap)[1]
        frame = model.features(snap, "window", start=day_start(split.train_start), end=day_start(split.evaluation_end))
    rows = model.partition(frame, split)
    created = frame["created_at"]
    cutoff = day_start(split.cutoff)
    assert rows["train"].any() and rows["evaluation"].any()
    assert created[rows["train"]].max() < cutoff
    assert created[rows["evaluation"]].min() >= cutoff
    assert created[rows["fit"]].max() < created[rows["calibration"]].min()  # calibrated on later months
    assert not (rows["train"] & rows["evaluation"]).any()
    assert split.evaluation_end == last + timedelta(days=1)


def test_churn_split_is_out_of_time(warehouse: Warehouse) -> None:
    model = ChurnModel()
    with warehouse.snapshot() as snap:
        split = model.default_split(snap)
        train_dates = training_reference_dates(split, 30)
        eval_dates = evaluation_reference_dates(split.cutoff, split.evaluation_end, 30)
        frame = model.features(snap, train_dates + eval_dates)
    # every training label is observed before the cutoff; every evaluation horizon is complete
    assert all(d + timedelta(days=30) <= split.cutoff for d in train_dates)
    assert all(d >= split.cutoff and d + timedelta(days=30) <= split.evaluation_end for d in eval_dates)
    rows = model.partition(frame, split, train_dates)
    cutoff = day_start(split.cutoff)
    assert frame["ref_at"][rows["train"]].max() <= day_start(split.cutoff - timedelta(days=30))
    assert frame["ref_at"][rows["evaluation"]].min() >= cutoff
    assert frame["ref_at"][rows["fit"]].max() < frame["ref_at"][rows["calibration"]].min()
    # labels of training rows never come from after the cutoff
    churned_at = pd.to_datetime(frame.loc[rows["train"], "churned_at"], utc=True).dropna()
    assert (churned_at < cutoff).all()


def test_fraud_split_keeps_a_label_delay(warehouse: Warehouse) -> None:
    model = FraudModel()
    with warehouse.snapshot() as snap:
        split = model.default_split(snap)
        last = data_range(snap)[1]
        train, evaluation, labels_at = model.frames(snap, split)
    # evaluation ends 90 days before the data so its chargebacks have arrived
    assert split.evaluation_end == last + timedelta(days=1) - timedelta(days=90)
    assert labels_at == last + timedelta(days=1)
    assert train["created_at"].max() < day_start(split.cutoff - timedelta(days=90))
    assert evaluation["created_at"].min() >= day_start(split.cutoff)
    assert evaluation["created_at"].max() < day_start(split.evaluation_end)


def test_fit_and_register_honours_a_given_cutoff(warehouse: Warehouse, tmp_path: Path) -> None:
    result, _ = PaymentFailureModel().fit_and_register(warehouse, Registry(tmp_path), cutoff=date(2025, 3, 1))
    assert result.split.cutoff == date(2025, 3, 1)
    assert result.scorecard.split["cutoff"] == "2025-03-01"
    assert result.scorecard.sizes["evaluation_rows"] > 0


# ---- features see only earlier rows ------------------------------------------------------------
def _redefine(snap, table: str, sql: str) -> None:
    """Replace a snapshot view by a temp table built from ``sql`` (over the original view)."""
    snap.con.execute(f'CREATE OR REPLACE TEMP TABLE "_{table}" AS {sql}')
    snap.con.execute(f'CREATE OR REPLACE VIEW "{table}" AS SELECT * FROM "_{table}"')


def test_churn_features_ignore_rows_from_the_reference_date_on(warehouse: Warehouse) -> None:
    model = ChurnModel()
    ref = date(2025, 3, 1)
    t = day_start(ref)
    with warehouse.snapshot() as snap:
        before = model.features(snap, [ref], labels=False)
        customer = before.sort_values("days_since_last_activity").iloc[0]
        cid = customer["customer_id"]
        # later rows exist that would change this customer's features if they leaked in
        later_activity = snap.scalar("SELECT count(*) FROM user_activity WHERE customer_id = $c AND activity_date >= $d",
                                     {"c": cid, "d": ref})
        assert later_activity > 0
        # and more: a failed payment, two support tickets and an activity day on the reference date
        _redefine(snap, "transactions", f"""
            SELECT * FROM transactions UNION ALL
            SELECT * FROM (
                SELECT * REPLACE ('txn_later' AS transaction_id, 'failed' AS status, TIMESTAMPTZ '{t}' AS created_at,
                                  TIMESTAMPTZ '{t}' + INTERVAL 1 MINUTE AS failed_at, NULL AS completed_at)
                FROM transactions WHERE customer_id = '{cid}' LIMIT 1)""")
        _redefine(snap, "support_tickets", f"""
            SELECT * FROM support_tickets UNION ALL
            SELECT 'tkt_later' || i, '{cid}', TIMESTAMPTZ '{t}' + INTERVAL (i) HOUR, 'billing', 'high', 'open', NULL, NULL,
                   'h', 'b', TIMESTAMPTZ '{t}' FROM range(2) r(i)""")
        _redefine(snap, "user_activity", f"""
            SELECT * FROM user_activity UNION ALL
            SELECT '{cid}', DATE '{ref}', 5, 9, 120.0, '{ref:%Y-%m}', 'h', 'b', TIMESTAMPTZ '{t}'""")
        after = model.features(snap, [ref], labels=False)
    pd.testing.assert_frame_equal(before, after)


def test_churn_features_match_a_warehouse_cut_at_the_reference_date(warehouse: Warehouse) -> None:
    model = ChurnModel()
    ref = date(2025, 2, 1)
    with warehouse.snapshot() as snap:
        full = model.features(snap, [ref], labels=False)
        for table, column in (("transactions", "created_at"), ("subscription_events", "occurred_at"),
                              ("support_tickets", "created_at"), ("user_activity", "activity_date")):
            _redefine(snap, table, f"SELECT * FROM {table} WHERE {column} < TIMESTAMPTZ '{day_start(ref)}'")
        cut = model.features(snap, [ref], labels=False)
    assert len(full) > 100
    pd.testing.assert_frame_equal(full, cut)


def test_failure_features_ignore_later_attempts(warehouse: Warehouse) -> None:
    model = PaymentFailureModel()
    with warehouse.snapshot() as snap:
        # renewal attempts of customers with earlier history
        ids = snap.sql("""SELECT transaction_id FROM transactions WHERE billing_reason = 'subscription_cycle'
                          AND created_at >= TIMESTAMPTZ '2025-04-01' ORDER BY created_at LIMIT 50""")["transaction_id"].tolist()
        before = model.features(snap, "ids", ids=ids)
        # each customer fails again one minute after the attempt: failures, velocity and the
        # last failure reason would all change if rows after the attempt leaked in
        _redefine(snap, "transactions", f"""
            SELECT * FROM transactions UNION ALL
            SELECT * REPLACE ('later_' || transaction_id AS transaction_id, 'failed' AS status,
                              'insufficient_funds' AS failure_reason,
                              created_at + INTERVAL 1 MINUTE AS created_at, created_at + INTERVAL 2 MINUTE AS failed_at,
                              NULL AS completed_at)
            FROM transactions WHERE list_contains({ids!r}, transaction_id)""")
        after = model.features(snap, "ids", ids=ids)
    assert before["prior_attempts"].sum() > 0
    pd.testing.assert_frame_equal(before, after)


def test_fraud_features_ignore_later_rows(warehouse: Warehouse) -> None:
    model = FraudModel()
    label_at = END + timedelta(days=1)
    with warehouse.snapshot() as snap:
        # each the last attempt of its customer and of its IP, so rows added after it can only
        # reach it by leaking backwards in time
        ids = snap.sql("""SELECT transaction_id FROM transactions
                          QUALIFY created_at = max(created_at) OVER (PARTITION BY customer_id)
                              AND created_at = max(created_at) OVER (PARTITION BY ip_hash)
                          ORDER BY created_at DESC LIMIT 80""")["transaction_id"].tolist()
        before = model.features(snap, "ids", label_at, ids=ids)
        # a burst of attempts from the same customer, card and IP one second later, and alerts
        _redefine(snap, "transactions", f"""
            SELECT * FROM transactions UNION ALL
            SELECT t.* REPLACE ('later_' || t.transaction_id || CAST(i AS VARCHAR) AS transaction_id,
                                'failed' AS status, t.created_at + INTERVAL (1 + i) SECOND AS created_at,
                                t.created_at + INTERVAL (2 + i) SECOND AS failed_at, NULL AS completed_at,
                                'XX' AS card_country)
            FROM transactions t, range(3) r(i) WHERE list_contains({ids!r}, t.transaction_id)""")
        _redefine(snap, "fraud_alerts", f"""
            SELECT * FROM fraud_alerts UNION ALL
            SELECT * REPLACE ('later_' || alert_id AS alert_id, created_at + INTERVAL 1 DAY AS created_at)
            FROM fraud_alerts WHERE list_contains({ids!r}, transaction_id)""")
        after = model.features(snap, "ids", label_at, ids=ids)
    assert before["customer_attempts_24h"].sum() > 0 and before["prior_successes"].sum() > 0
    cols = [c for c in before.columns if c != "is_fraud"]  # the label may use later rows, features may not
    pd.testing.assert_frame_equal(before[cols], after[cols])


HISTORY_FEATURES = ["customer_attempts_1h", "customer_attempts_24h", "card_changes_24h", "ip_attempts_1h",
                    "ip_attempts_24h", "failures_1h", "prior_successes", "prior_alerts"]


def _fraud_history_by_hand(snap, frame: pd.DataFrame) -> pd.DataFrame:
    """The velocity and history features of ``frame``'s attempts counted one by one from their
    definitions in sql/fraud.sql, over the whole history (no time lines, no running sums)."""
    tx = snap.sql("""SELECT transaction_id, customer_id, ip_hash, created_at, status, failed_at, completed_at,
                            payment_method, card_brand, card_country, card_expiry_month FROM transactions""")
    alerts = snap.sql("SELECT customer_id, created_at AS alert_at FROM fraud_alerts")
    # card = method, brand, issuing country, expiry month; changed = another card than the previous attempt's
    tx = tx.sort_values(["customer_id", "created_at", "transaction_id"], kind="stable")
    card = (tx[["payment_method", "card_brand", "card_country", "card_expiry_month"]].astype("string").fillna("-")
            .agg("|".join, axis=1))
    previous = card.groupby(tx["customer_id"]).shift()
    tx["changed"] = (previous.notna() & (card != previous)).astype(int)
    own = frame[["transaction_id", "customer_id", "ip_hash", "created_at"]].rename(columns={"created_at": "t"})
    own = own.merge(tx[["transaction_id", "changed"]], on="transaction_id", how="left")
    hour, day = pd.Timedelta(hours=1), pd.Timedelta(days=1)
    same = own.merge(tx.drop(columns="ip_hash"), on="customer_id", suffixes=("", "_other"))
    s = same["created_at"]
    same["a1"] = (s >= same["t"] - hour) & (s < same["t"])
    same["a24"] = (s >= same["t"] - day) & (s < same["t"])
    same["c24"] = same["a24"] * same["changed_other"]
    failed = same["failed_at"].where(same["status"] == "failed")
    same["f1"] = (failed >= same["t"] - hour) & (failed < same["t"])
    same["ok"] = same["completed_at"] < same["t"]
    counts = same.groupby("transaction_id")[["a1", "a24", "c24", "f1", "ok"]].sum()
    by_ip = own.dropna(subset=["ip_hash"]).merge(tx[["ip_hash", "created_at"]], on="ip_hash")
    by_ip["i1"] = (by_ip["created_at"] >= by_ip["t"] - hour) & (by_ip["created_at"] < by_ip["t"])
    by_ip["i24"] = (by_ip["created_at"] >= by_ip["t"] - day) & (by_ip["created_at"] < by_ip["t"])
    ip_counts = by_ip.groupby("transaction_id")[["i1", "i24"]].sum()
    flagged = own.merge(alerts, on="customer_id")
    alert_counts = (flagged["alert_at"] < flagged["t"]).groupby(flagged["transaction_id"]).sum()
    out = own.set_index("transaction_id").join(counts).join(ip_counts)
    out["alerts"] = alert_counts
    out = out.fillna(0)
    return pd.DataFrame({
        "customer_attempts_1h": out["a1"], "customer_attempts_24h": out["a24"],
        "card_changes_24h": out["c24"] + out["changed"], "ip_attempts_1h": out["i1"], "ip_attempts_24h": out["i24"],
        "failures_1h": out["f1"], "prior_successes": out["ok"], "prior_alerts": out["alerts"],
    }).astype("int64")


@pytest.mark.parametrize("candidates", ["window", "ids"])
def test_fraud_history_features_match_a_count_by_hand(warehouse: Warehouse, candidates: str) -> None:
    """The time lines (running sums, RANGE frames, totals from before the time line) give the same
    counts as counting every attempt's history one by one: for a recent window of checkout
    attempts, and for named attempts of any kind spread over the whole history."""
    model = FraudModel()
    with warehouse.snapshot() as snap:
        if candidates == "window":
            frame = model.features(snap, "window", END, start=day_start(END - timedelta(days=45)), end=day_start(END))
        else:
            ids = snap.sql("SELECT transaction_id FROM transactions USING SAMPLE 400 ROWS (reservoir, 3)")
            frame = model.features(snap, "ids", END, ids=ids["transaction_id"].tolist())
        frame = frame.merge(snap.sql("SELECT transaction_id, ip_hash FROM transactions"), on="transaction_id")
        expected = _fraud_history_by_hand(snap, frame)
    got = frame.set_index("transaction_id")[HISTORY_FEATURES].astype("int64")
    assert len(got) > 300 and got.index.is_unique
    # the fixture exercises every count (none is zero everywhere)
    assert (got.sum() > 0).all(), got.sum()
    pd.testing.assert_frame_equal(got.sort_index(), expected.loc[got.index].sort_index(), check_names=False)


def test_fraud_prior_successes_count_captures_known_before_each_attempt(warehouse: Warehouse, tmp_path: Path) -> None:
    """A capture counts for the customer's attempts after it completes, not after it was
    attempted: one that completes after the customer's next attempt is not seen by that attempt,
    and two attempts in the same microsecond do not see each other's captures (the time line
    carries a capture on its attempt's row only when nothing of the customer's comes between)."""
    wh = Warehouse(tmp_path / "copy")
    shutil.copytree(warehouse.location, wh.location, ignore=shutil.ignore_patterns("_cache"))
    t0 = datetime.combine(END - timedelta(days=3), datetime.min.time(), tzinfo=UTC) + timedelta(hours=3)
    with wh.snapshot() as snap:
        seed = snap.sql("""SELECT * FROM transactions WHERE billing_reason = 'purchase' AND created_at < $1
                           ORDER BY created_at DESC LIMIT 1""", [t0 - timedelta(days=2)])
    base = _records(seed)[0]
    customer = base["customer_id"]
    s = timedelta(seconds=1)
    plan = {  # name: (created after t0, completed after t0 or None for a failure)
        "a": (0 * s, 600 * s),      # captured 10 minutes later, after b was attempted
        "b": (300 * s, 2000 * s),   # captured after c, d, e and f
        "c": (900 * s, None),
        "e": (1200 * s, 1202 * s),  # d and e in the same microsecond, e written first
        "d": (1200 * s, 1201 * s),
        "f": (1205 * s, None),
        "g": (1300 * s, 1310 * s),  # captured in the microsecond h is attempted: h does not see it
        "h": (1310 * s, None),
        "i": (1400 * s, None),
    }
    rows = []
    for name, (created, completed) in plan.items():
        row = dict(base, transaction_id=f"txn_capture_{name}", created_at=t0 + created,
                   created_month=f"{t0:%Y-%m}", status="succeeded" if completed else "failed",
                   completed_at=t0 + completed if completed else None,
                   failed_at=None if completed else t0 + created + s)
        rows.append(row)
    wh.upsert("transactions", rows)
    model = FraudModel()
    with wh.snapshot() as snap:
        frame = model.features(snap, "window", END, start=t0 - timedelta(days=1), end=day_start(END))
        frame = frame.merge(snap.sql("SELECT transaction_id, ip_hash FROM transactions"), on="transaction_id")
        expected = _fraud_history_by_hand(snap, frame)
    got = frame.set_index("transaction_id")[HISTORY_FEATURES].astype("int64")
    pd.testing.assert_frame_equal(got.sort_index(), expected.loc[got.index].sort_index(), check_names=False)
    mine = got.loc[[f"txn_capture_{n}" for n in "abcdefghi"], "prior_successes"]
    before = int(mine.iloc[0])
    assert (mine - before).tolist() == [0, 0, 1, 1, 1, 3, 3, 3, 4], customer


# ---- registry round trips ----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_registered_model_predicts_like_the_trained_one(name: str, trained: dict, warehouse: Warehouse,
                                                        registry: Registry) -> None:
    result, version = trained[name]
    model = models.get(name)
    loaded = model.load(registry, version)
    assert loaded.metadata.version == version
    assert loaded.metadata.warehouse_versions  # the snapshot versions it was trained on
    assert loaded.scorecard["metrics"]["roc_auc"] == pytest.approx(result.scorecard.metrics["roc_auc"])
    as_of = END + timedelta(days=1)
    with warehouse.snapshot() as snap:
        live = model.predict(loaded, snap, as_of=as_of, limit=5)
        ids = [p.entity_id for p in live]
        if name == "churn":
            frame = model.features(snap, [as_of], ids=ids, labels=False)
            memory = result.model.classifier.predict_proba(frame)
            key = frame["customer_id"]
        elif name == "payment_failure":
            frame = model.features(snap, "upcoming_renewals", as_of=day_start(as_of), days=30)
            frame = frame[frame["subscription_id"].isin(ids)]
            memory = result.model.classifier.predict_proba(frame)
            key = frame["subscription_id"]
        else:
            frame = model.features(snap, "ids", as_of, ids=ids)
            memory = result.model.scorer.probability(frame)
            key = frame["transaction_id"]
    by_id = dict(zip(key, memory, strict=True))
    assert [p.probability for p in live] == pytest.approx([by_id[i] for i in ids], abs=1e-12)
    # the public entry point reads the same (latest) version
    again = models.predict(name, warehouse, registry, as_of=as_of, ids=ids)
    assert [p.probability for p in again] == pytest.approx([p.probability for p in live], abs=1e-12)


def test_second_version_is_latest_and_named_versions_load(trained: dict, warehouse: Warehouse,
                                                          registry: Registry) -> None:
    _, first = trained["payment_failure"]
    time.sleep(1.1)  # versions sort by their UTC second
    _, second = PaymentFailureModel().fit_and_register(warehouse, registry, cutoff=date(2025, 3, 15))
    assert registry.versions("payment_failure")[-2:] == [first, second]
    assert PaymentFailureModel().load(registry).metadata.version == second
    older = PaymentFailureModel().load(registry, first)
    assert older.metadata.version == first
    assert older.metadata.training_window["cutoff"] == "2025-04-01"
    assert PaymentFailureModel().load(registry).metadata.training_window["cutoff"] == "2025-03-15"


# ---- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,bad", [("churn", "cus_nobody"), ("payment_failure", "txn_nothing"),
                                      ("payment_failure", "sub_nothing"), ("fraud", "txn_nothing")])
def test_unknown_ids_are_named(name: str, bad: str, trained: dict, warehouse: Warehouse, registry: Registry) -> None:
    with pytest.raises(ModelError, match=bad):
        models.predict(name, warehouse, registry, ids=[bad])


def test_churn_refuses_customers_without_an_active_subscription(trained: dict, warehouse: Warehouse,
                                                                 registry: Registry) -> None:
    with warehouse.snapshot() as snap:
        lapsed = snap.scalar("""SELECT customer_id FROM customers WHERE customer_id NOT IN
                                (SELECT customer_id FROM subscription_events) LIMIT 1""")
    with pytest.raises(ModelError, match=f"active subscribers.*{lapsed}"):
        models.predict("churn", warehouse, registry, ids=[lapsed])


@pytest.mark.parametrize("name", NAMES)
def test_empty_warehouse_is_a_clear_error(name: str, tmp_path: Path, trained: dict, registry: Registry) -> None:
    empty = Warehouse(tmp_path / "empty")
    with pytest.raises(ModelError, match="in the warehouse: load data"):
        models.get(name).fit_and_register(empty, Registry(tmp_path / "reg"))
    with pytest.raises(ModelError, match="in the warehouse: load data"):
        models.predict(name, empty, registry)


def test_too_little_history_is_a_clear_error(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "short")
    generate(wh, customers=200, months=3, seed=3, end=END)
    for name in NAMES:
        with pytest.raises(ModelError, match="needs about"):
            models.get(name).fit_and_register(wh, Registry(tmp_path / "reg"))


def test_unknown_training_parameter_is_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown churn parameters: colour"):
        ChurnModel().fit_and_register(warehouse, Registry(tmp_path), colour="blue")


def _copy_version(registry: Registry, name: str, version: str, target: Registry) -> Path:
    src = registry.location / name / version
    dst = target.location / name / version
    shutil.copytree(src, dst)
    return dst


def test_model_from_another_feature_version_is_refused(trained: dict, registry: Registry, tmp_path: Path) -> None:
    other = Registry(tmp_path / "other")
    _, version = trained["fraud"]
    folder = _copy_version(registry, "fraud", version, other)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["feature_version"] = "fraud-0-old"
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(RegistryError, match="retrain"):
        FraudModel().load(other)


def test_corrupt_model_file_is_refused(trained: dict, registry: Registry, tmp_path: Path) -> None:
    other = Registry(tmp_path / "other")
    _, version = trained["churn"]
    folder = _copy_version(registry, "churn", version, other)
    (folder / "model.joblib").write_bytes(b"not a pickle at all")
    with pytest.raises(RegistryError, match="cannot load model.joblib"):
        ChurnModel().load(other)


# ---- calibration and baselines -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["churn", "payment_failure"])
def test_probabilities_are_calibrated(name: str, trained: dict) -> None:
    card = trained[name][0].scorecard
    observed = card.metrics["base_rate"]
    assert card.extra["mean_predicted"] == pytest.approx(observed, abs=0.25 * observed)
    assert card.metrics["brier"] < card.baseline["brier"]


@pytest.mark.parametrize("name", NAMES)
def test_scorecard_beats_its_baseline(name: str, trained: dict) -> None:
    card = trained[name][0].scorecard
    assert card.beats_baseline, (card.primary_metric, card.metrics[card.primary_metric],
                                 card.baseline[card.primary_metric])
    assert card.metrics["pr_auc"] > card.baseline["pr_auc"]
    assert card.metrics["brier"] < card.baseline["brier"]
    assert card.sizes["evaluation_rows"] > 0 and card.split["cutoff"] < card.split["evaluation_end"]
    assert card.baseline_name


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_scores_the_registered_version_again(name: str, trained: dict, warehouse: Warehouse,
                                                      registry: Registry) -> None:
    result, version = trained[name]
    model = models.get(name)
    with warehouse.snapshot() as snap:
        again = model.evaluate(model.load(registry, version), snap)
    # nothing new arrived since training: the same rows, the same numbers
    assert again["metrics"]["roc_auc"] == pytest.approx(result.scorecard.metrics["roc_auc"])
    assert again["baseline"]["roc_auc"] == pytest.approx(result.scorecard.baseline["roc_auc"])


def test_fraud_scorecard_has_a_what_if_table(trained: dict) -> None:
    card = trained["fraud"][0].scorecard
    table = pd.DataFrame(card.extra["what_if"])
    assert table["threshold"].tolist() == list(range(5, 100, 5))
    assert table["fraud_caught"].is_monotonic_decreasing and table["good_blocked"].is_monotonic_decreasing
    assert (table.loc[table["threshold"] >= 75, "review_per_day"] == 0).all()
    assert card.extra["review_threshold"] == 65 and card.extra["block_threshold"] == 75
    assert card.metrics["precision_at_100"] is not None


# ---- CLI ---------------------------------------------------------------------------------------
def test_cli_train_predict_evaluate(warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_ANALYTICS_MODELS", str(tmp_path / "cli_registry"))
    runner = CliRunner()
    base = ["--warehouse", str(warehouse.location), "models"]
    out = runner.invoke(main, [*base, "train", "churn"])
    assert out.exit_code == 0, out.output
    assert "beats baseline on roc_auc: yes" in out.output
    out = runner.invoke(main, [*base, "predict", "churn", "--limit", "5", "--format", "json"])
    assert out.exit_code == 0, out.output
    predictions = json.loads(out.output)
    assert len(predictions) == 5
    assert {"entity_id", "probability", "risk_level", "confidence", "key_risk_factors", "recommended_actions",
            "generated_at"} <= set(predictions[0])
    out = runner.invoke(main, [*base, "evaluate", "churn"])
    assert out.exit_code == 0, out.output
    assert "roc_auc" in out.output
    out = runner.invoke(main, [*base, "predict", "fraud"])
    assert out.exit_code != 0 and "no trained model 'fraud'" in out.output


# ---- prediction shape and rules ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_prediction_shape(name: str, trained: dict, warehouse: Warehouse, registry: Registry) -> None:
    predictions = models.predict(name, warehouse, registry, limit=10)
    assert len(predictions) == 10
    probabilities = [p.probability for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    for p in predictions:
        assert 0.0 <= p.probability <= 1.0
        assert p.risk_level in {"low", "medium", "high", "critical"}
        assert 0.5 <= p.confidence <= 1.0
        assert all(isinstance(f, RiskFactor) and 0.0 <= f.importance <= 1.0 for f in p.key_risk_factors)
        assert [f.importance for f in p.key_risk_factors] == sorted((f.importance for f in p.key_risk_factors),
                                                                     reverse=True)
        assert all(isinstance(a, Action) and a.actions for a in p.recommended_actions)
        assert p.generated_at.tzinfo is not None
        json.dumps(p.to_dict(), default=str)
    top = predictions[0]
    assert top.key_risk_factors  # the riskiest entity always has something to say
    everyone = models.predict(name, warehouse, registry)  # every eligible entity, all methods and states
    assert len(everyone) > len(predictions)
    assert {p.risk_level for p in everyone} <= {"low", "medium", "high", "critical"}
    if name == "churn":
        assert date.fromisoformat(top.details["predicted_churn_date"]) >= END + timedelta(days=1)
    if name == "fraud":
        assert top.details["decision"] in {"approve", "review", "block"}
        assert 0 <= top.details["risk_score"] <= 99


def _churn_row(**overrides):
    row = dict(payment_failure_rate_90d=0.0, days_since_last_activity=2.0, tenure_days=100.0,
               support_tickets_90d=0)
    row.update(overrides)
    return SimpleNamespace(**row)


@pytest.mark.parametrize("name", ["payment_failure", "fraud"])
def test_batch_scores_match_the_predictions(name: str, trained: dict, warehouse: Warehouse,
                                            registry: Registry) -> None:
    """The vectorised batch path gives every attempt of a window the probability that the
    per-attempt predictions give it, without building a Prediction per row."""
    model = models.get(name)
    loaded = model.load(registry)
    start, end = END - timedelta(days=30), END + timedelta(days=1)
    with warehouse.snapshot() as snap:
        scores = model.score(loaded, snap, start, end)
        where = "" if name == "payment_failure" else "AND billing_reason IN ('purchase', 'subscription_create')"
        expected = snap.scalar(f"SELECT count(*) FROM transactions WHERE created_at >= $1 AND created_at < $2 {where}",
                               [day_start(start), day_start(end)])
        sample = scores.sort_values("probability", ascending=False).head(5)["transaction_id"].tolist()
        sample += scores["transaction_id"].sample(15, random_state=0).tolist()
        predictions = model.predict(loaded, snap, ids=sample)
    assert len(scores) == expected > 100
    everything = models.score(name, warehouse, registry)  # the whole history by default
    assert len(everything) > len(scores) and set(scores["transaction_id"]) <= set(everything["transaction_id"])
    assert scores["transaction_id"].is_unique and scores["created_at"].is_monotonic_increasing
    assert scores["probability"].between(0, 1).all()
    by_id = scores.set_index("transaction_id")
    for p in predictions:
        assert p.probability == pytest.approx(by_id.loc[p.entity_id, "probability"], abs=1e-12)
        assert p.risk_level == by_id.loc[p.entity_id, "risk_level"]
        if name == "fraud":
            assert p.details["risk_score"] == by_id.loc[p.entity_id, "risk_score"]
            assert p.details["decision"] == by_id.loc[p.entity_id, "decision"]


@pytest.mark.parametrize("name", ["payment_failure", "fraud"])
def test_batch_score_columns_are_the_columns_of_python_values(name: str, trained: dict, warehouse: Warehouse,
                                                                registry: Registry) -> None:
    """score() builds its text columns from the Arrow columns and its labels from integer codes;
    the frame is the one built from Python strings and per-row label choices (values, dtypes,
    missing ids), exactly."""
    model = models.get(name)
    loaded = model.load(registry)
    start, end = END - timedelta(days=30), END + timedelta(days=1)
    with warehouse.snapshot() as snap:
        scores = model.score(loaded, snap, start, end)
        if name == "fraud":
            table = model.feature_table(snap, "window", end, start=day_start(start), end=day_start(end))
        else:
            table = model.feature_table(snap, "attempts", start=day_start(start), end=day_start(end))
    texts = ["transaction_id", "customer_id"] + (["subscription_id", "payment_method"] if name == "payment_failure" else [])
    expected = scores.copy()
    for col in texts:
        expected[col] = pd.Series(table[col].to_numpy(zero_copy_only=False).astype(object))
    if name == "fraud":
        art = loaded.model
        expected["decision"] = pd.Series(np.array([
            "block" if s >= art.block_threshold else "review" if s >= art.review_threshold else "approve"
            for s in scores["risk_score"]], dtype=object))
        expected["risk_level"] = pd.Series(np.array([
            {"block": "critical", "review": "high"}.get(d, "medium" if s >= 30 else "low")
            for d, s in zip(expected["decision"], scores["risk_score"], strict=True)], dtype=object))
    else:
        expected["risk_level"] = pd.Series(np.array([risk_level(p, FAILURE_RISK_THRESHOLDS)
                                                     for p in scores["probability"]], dtype=object))
    for col in expected.columns:  # the frame a DataFrame of those Python values infers
        assert expected[col].dtype == scores[col].dtype, col
    if name == "payment_failure":
        assert scores["subscription_id"].isna().any() and scores["subscription_id"].notna().any()
    assert set(scores["risk_level"]) > {"low"}
    pd.testing.assert_frame_equal(scores, expected, check_exact=True)


def test_candidates_query_becomes_the_feature_query_cte() -> None:
    """The candidates query and the feature query run as one statement: a parameter both bind,
    or a feature query that does not start with WITH, is refused before anything runs."""
    with pytest.raises(ValueError, match="bound twice: tz"):
        candidates_feature_table(None, "fraud", "candidates_window", {"start": 1, "end": 2, "tz": "UTC"},  # type: ignore[arg-type]
                                 {"tz": "UTC"})
    with pytest.raises(ValueError, match="must start with WITH"):
        candidates_feature_table(None, "fraud", "candidates_ids", {}, {}, name="candidates_window")  # type: ignore[arg-type]


def test_fraud_feature_query_switches_its_optimizer_off_for_itself_only(warehouse: Warehouse) -> None:
    """The fraud feature query runs with DuckDB's build-side choice off (a speed setting): the
    rows are the same as with it on, and the connection's own setting is back afterwards, with
    an optimizer the caller had switched off still off."""
    model = FraudModel()
    start, end = day_start(END - timedelta(days=120)), day_start(END + timedelta(days=1))
    with warehouse.snapshot() as snap:
        snap.con.execute("SET disabled_optimizers = 'top_n'")
        setting = "SELECT current_setting('disabled_optimizers')"
        with earlier_history(snap, None) as history_from:  # the whole history, read by the query
            with_choice = candidates_feature_table(snap, "fraud", "candidates_window", {"start": start, "end": end},
                                                   {**money_params(), "tz": local_params()["tz"], "label_at": end,
                                                    "history_from": history_from})
        assert snap.scalar(setting) == "top_n"
        fast = model.feature_table(snap, "window", end, start=start, end=end)
        assert snap.scalar(setting) == "top_n"
    assert fast.num_rows > 2000
    assert fast.equals(with_choice)


def _history_loads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record whether each fraud history lookup found its cache entry."""
    from analytics_lib.metrics.cache import HistoryCache

    found: list[bool] = []
    real = HistoryCache.load

    def load(self, con, block, entry, tables, **options):  # type: ignore[no-untyped-def]
        hit = real(self, con, block, entry, tables, **options)
        found.append(hit)
        return hit

    monkeypatch.setattr(HistoryCache, "load", load)
    return found


def test_fraud_history_cache_gives_the_features_of_the_whole_history(
        warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fraud features of a recent window read the months before it from the warehouse's
    cache: the first call builds the entry, the next reads it, both give the features of the
    query that reads everything itself (cache off), and the temporary tables are gone after."""
    wh = Warehouse(tmp_path / "copy")
    shutil.copytree(warehouse.location, wh.location, ignore=shutil.ignore_patterns("_cache"))
    model = FraudModel()
    start, end = day_start(END - timedelta(days=75)), day_start(END + timedelta(days=1))
    monkeypatch.setenv("PAYMENT_ANALYTICS_METRIC_CACHE", "off")
    with wh.snapshot() as snap:
        whole = model.feature_table(snap, "window", end, start=start, end=end)
    monkeypatch.setenv("PAYMENT_ANALYTICS_METRIC_CACHE", "on")
    found = _history_loads(monkeypatch)
    for _ in range(2):
        with wh.snapshot() as snap:
            assert model.feature_table(snap, "window", end, start=start, end=end).equals(whole)
            assert not snap.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'fraud_%'")
    assert found == [False, True]
    entries = list((Path(wh.location) / "_cache" / "models" / "fraud_history").iterdir())
    assert len(entries) == 1
    assert whole.num_rows > 1000 and pc.sum(whole["prior_successes"]).as_py() > 1000
    # a damaged entry is not used: the history is read again and the entry rebuilt
    for parquet in entries[0].glob("*.parquet"):
        parquet.write_bytes(b"not parquet")
    for _ in range(2):
        with wh.snapshot() as snap:
            assert model.feature_table(snap, "window", end, start=start, end=end).equals(whole)
    assert found == [False, True, False, True]
    found.clear()
    found += [False, True]

    # a start given in another time zone, whose day before is in June there and in May in UTC:
    # the earlier months end at the month start of the UTC day before the start
    start = datetime(2025, 6, 2, 0, 0, tzinfo=ZoneInfo("Pacific/Kiritimati"))  # 1 June 10:00 UTC
    with wh.snapshot() as snap:  # an attempt 14 hours before a customer's first scored one
        first = snap.sql("""SELECT * FROM transactions WHERE created_at >= $1
                              AND billing_reason IN ('purchase', 'subscription_create')
                            ORDER BY created_at LIMIT 1""", [start])
    earlier = _records(first)[0]
    shift = earlier["created_at"] - datetime(2025, 5, 31, 20, 0, tzinfo=UTC)
    assert shift > timedelta(hours=14)
    earlier.update(transaction_id="txn_cache_test_earlier", created_month="2025-05",
                   **{k: earlier[k] - shift for k in ("created_at", "completed_at", "failed_at") if earlier[k]})
    wh.upsert("transactions", [earlier])
    monkeypatch.setenv("PAYMENT_ANALYTICS_METRIC_CACHE", "off")
    with wh.snapshot() as snap:
        whole = model.feature_table(snap, "window", end, start=start, end=end)
    monkeypatch.setenv("PAYMENT_ANALYTICS_METRIC_CACHE", "on")
    with wh.snapshot() as snap:
        assert model.feature_table(snap, "window", end, start=start, end=end).equals(whole)
    assert found[2:] == [False]
    row = whole.filter(pc.equal(whole["transaction_id"], first["transaction_id"].iloc[0]))
    assert row["customer_attempts_24h"].to_pylist() == [1]


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of Python values, missing times as None."""
    def value(v: object) -> object:
        if v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
            return None
        return v.to_pydatetime() if isinstance(v, pd.Timestamp) else v

    return [{k: value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def test_fraud_history_cache_entry_follows_the_earlier_months_only(
        warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A payment ingested in the scored month keeps the cache entry; a correction to a payment
    of an earlier month makes a new one, and the features follow the correction."""
    wh = Warehouse(tmp_path / "copy")
    shutil.copytree(warehouse.location, wh.location, ignore=shutil.ignore_patterns("_cache"))
    model = FraudModel()
    start, end = day_start(END - timedelta(days=20)), day_start(END + timedelta(days=1))
    monkeypatch.setenv("PAYMENT_ANALYTICS_METRIC_CACHE", "on")
    found = _history_loads(monkeypatch)
    with wh.snapshot() as snap:
        before = model.feature_table(snap, "window", end, start=start, end=end).to_pandas()
        # a captured checkout payment of a scored customer, from a month before the window
        old = snap.sql("""SELECT t.* FROM transactions t
                          WHERE t.created_at < $1 AND t.completed_at IS NOT NULL
                            AND t.customer_id IN (SELECT customer_id FROM transactions
                                                  WHERE created_at >= $2 AND billing_reason = 'purchase')
                          ORDER BY t.created_at DESC LIMIT 2""", [day_start(date(END.year, END.month, 1)), start])
        recent = snap.sql("SELECT * FROM transactions WHERE created_at >= $1 ORDER BY created_at LIMIT 1", [start])
    assert len(old) == 2 and len(recent) == 1
    customer = old["customer_id"].iloc[0]
    assert found == [False]

    late = _records(recent)[0]  # a new payment in the scored month: the earlier months are untouched
    late["transaction_id"] = "txn_cache_test_new"
    wh.upsert("transactions", [late])
    with wh.snapshot() as snap:
        model.feature_table(snap, "window", end, start=start, end=end)
    assert found == [False, True]

    corrected = _records(old.iloc[:1])[0]  # that payment did not go through after all
    corrected.update(status="failed", completed_at=None, failed_at=corrected["created_at"] + timedelta(seconds=5))
    wh.upsert("transactions", [corrected])
    with wh.snapshot() as snap:
        after = model.feature_table(snap, "window", end, start=start, end=end).to_pandas()
    assert found == [False, True, False]
    monkeypatch.setenv("PAYMENT_ANALYTICS_METRIC_CACHE", "off")
    with wh.snapshot() as snap:
        whole = model.feature_table(snap, "window", end, start=start, end=end).to_pandas()
    pd.testing.assert_frame_equal(after, whole)
    mine = before["customer_id"] == customer
    assert mine.any()
    drop = before.loc[mine, "prior_successes"].to_numpy() - after.loc[after["customer_id"] == customer, "prior_successes"].to_numpy()
    assert (drop == 1).all()

    # an earlier month's payment captured only after the window began: it reaches the features
    # through the earlier history's late rows
    slow = _records(old.iloc[1:])[0]
    slow["completed_at"] = start  # after the month began, before the customer's scored attempts
    wh.upsert("transactions", [slow])
    with wh.snapshot() as snap:
        whole = model.feature_table(snap, "window", end, start=start, end=end).to_pandas()
    monkeypatch.setenv("PAYMENT_ANALYTICS_METRIC_CACHE", "on")
    with wh.snapshot() as snap:
        late_after = model.feature_table(snap, "window", end, start=start, end=end).to_pandas()
    assert found == [False, True, False, False]
    pd.testing.assert_frame_equal(late_after, whole)
    theirs = late_after["customer_id"] == slow["customer_id"]
    assert (late_after.loc[theirs, "created_at"] > pd.Timestamp(slow["completed_at"])).any()


@pytest.mark.parametrize("kernels", ["compiled", "sklearn"])
def test_fraud_components_are_the_same_in_any_batches(trained: dict, warehouse: Warehouse, kernels: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """components() encodes and scores batch by batch on two threads, from Arrow or pandas: any
    batch size gives what one whole-matrix pass of sklearn gives, bit for bit, whether the
    compiled trees score it or (for a model they do not compile) sklearn itself."""
    from analytics_lib.models import compiled
    from analytics_lib.models.fraud import FraudArtifact

    if kernels == "sklearn":
        monkeypatch.setattr(compiled, "boosting", lambda estimator: None)
        monkeypatch.setattr(compiled, "isolation", lambda forest: None)

    artifact: FraudArtifact = trained["fraud"][0].model
    scorer = artifact.scorer
    start, end = day_start(END - timedelta(days=365)), day_start(END + timedelta(days=1))
    with warehouse.snapshot() as snap:
        table = FraudModel().feature_table(snap, "window", end, start=start, end=end)
    assert table.num_rows > 3000
    x = scorer.classifier.matrix(table)
    numeric = scorer.classifier.numeric
    xa = x[:, [numeric.index(f) for f in scorer.anomaly_features]]
    xa = np.where(np.isnan(xa), scorer.anomaly_fill, xa).astype(np.float32)
    whole_p = scorer.classifier.estimator.predict_proba(x)[:, 1]
    whole_z = (-scorer.forest.score_samples(xa) - scorer.anomaly_center) / scorer.anomaly_scale
    for frame, batch in ((table, 1000), (table, 777), (table.to_pandas(), 1000), (table, 1 << 20)):
        p, z = scorer.components(frame, batch_rows=batch)
        assert np.array_equal(p, whole_p) and np.array_equal(z, whole_z), batch
    assert np.array_equal(scorer.classifier.predict_proba(table, batch_rows=500), whole_p)


@pytest.mark.parametrize("review,block", [(65, 75), (50, 50), (80, 60), (1, 99)])
def test_fraud_decisions_and_levels_follow_the_thresholds(review: int, block: int) -> None:
    """decisions() and fraud_risk_levels() (integer codes, then a lookup) apply the rules score by
    score: block at or above the block threshold, else review at or above the review threshold;
    critical / high for block / review, medium from 30, else low."""
    score = np.arange(100)
    decision = decisions(score, review, block)
    assert decision.dtype == object
    assert decision.tolist() == ["block" if s >= block else "review" if s >= review else "approve" for s in score]
    assert fraud_risk_levels(score, decision).tolist() == [
        {"block": "critical", "review": "high"}.get(d, "medium" if s >= 30 else "low")
        for s, d in zip(score, decision, strict=True)]


@pytest.mark.parametrize("thresholds", [(0.3, 0.6, 0.8), (0.5, 0.5, 0.9), (0.8, 0.6, 0.3)])
def test_risk_levels_are_the_scalar_rule(thresholds: tuple[float, float, float]) -> None:
    p = np.array([np.nan, -0.1, 0.0, 0.29, 0.3, 0.31, 0.5, 0.59, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2])
    levels = risk_levels(p, thresholds)
    assert levels.dtype == object
    assert levels.tolist() == [risk_level(v, thresholds) for v in p]


def test_platform_churn_rules_fire_above_their_thresholds() -> None:
    quiet = churn_risk_factors(_churn_row(payment_failure_rate_90d=0.10, days_since_last_activity=30.0,
                                          support_tickets_90d=3), [])
    assert quiet == []  # at the thresholds: nothing (the rules are strict inequalities)
    factors = churn_risk_factors(_churn_row(payment_failure_rate_90d=0.25, days_since_last_activity=31.0,
                                            support_tickets_90d=4), [])
    assert [(f.factor, f.importance) for f in factors] == [
        ("high_payment_failure_rate", 0.8), ("low_engagement", 0.7), ("high_support_tickets", 0.6)]
    # never active: days without login count from the subscription start
    never = churn_risk_factors(_churn_row(days_since_last_activity=float("nan"), tenure_days=45.0), [])
    assert [f.factor for f in never] == ["low_engagement"]
    strategies = retention_strategies(0.85, factors)
    assert [(a.strategy, a.priority, a.expected_impact) for a in strategies] == [
        ("immediate_intervention", "urgent", 0.6), ("payment_optimization", "high", 0.4),
        ("engagement_campaign", "medium", 0.3)]
    assert retention_strategies(0.8, []) == []  # "above 0.8"
    # the model's own payment drivers also call for payment optimisation
    model_driven = churn_risk_factors(_churn_row(), [("last_payment_failed", 0.3)])
    assert [a.strategy for a in retention_strategies(0.5, model_driven)] == ["payment_optimization"]


def test_support_ticket_rule_fires_on_the_demo_data(warehouse: Warehouse) -> None:
    """The demo data has a tail of heavy ticket writers, so the platform's "more than 3 support
    tickets" rule fires for real subscribers, and those subscribers do churn more."""
    model = ChurnModel()
    with warehouse.snapshot() as snap:
        split = model.default_split(snap)
        frame = model.features(snap, training_reference_dates(split, 30))
    heavy = frame["support_tickets_90d"] > 3
    assert heavy.sum() >= 10, frame["support_tickets_90d"].value_counts()
    assert frame.loc[heavy, "churned"].mean() > 2 * frame.loc[~heavy, "churned"].mean()
    fired = [churn_risk_factors(row, []) for row in frame[heavy].head(5).itertuples(index=False)]
    assert all("high_support_tickets" in {f.factor for f in factors} for factors in fired)


def test_estimated_churn_date_follows_the_probability() -> None:
    as_of = date(2025, 7, 1)
    assert estimated_churn_date(0.5, as_of, 30) == as_of + timedelta(days=30)
    assert estimated_churn_date(0.9, as_of, 30) < as_of + timedelta(days=30) < estimated_churn_date(0.2, as_of, 30)
    assert estimated_churn_date(0.0, as_of, 30) == as_of + timedelta(days=3650)


def test_failure_actions_follow_the_risk() -> None:
    row = SimpleNamespace(months_to_expiry=0, last_failure_reason="insufficient_funds", attempt_number=2,
                          local_hour=3, payment_method="card")
    factors = [RiskFactor("expiring_card", 0.7, "", 0), RiskFactor("recent_insufficient_funds", 0.7, "", 2.0)]
    strategies = [a.strategy for a in failure_actions(0.5, row, factors)]
    assert strategies[:2] == ["card_updater", "retry_timing"]
    assert "alternative_method" in strategies


def test_what_if_and_card_precision_by_hand() -> None:
    score = np.array([90, 80, 70, 60, 10])
    y = np.array([1, 0, 1, 0, 0])
    amount = np.array([100.0, 50.0, 20.0, 10.0, 5.0])
    table = what_if(score, y, amount, days=2, thresholds=(65, 75), block_threshold=75)
    first, second = table.to_dict(orient="records")
    assert (first["fraud_caught"], first["fraud_amount_caught"], first["good_blocked"]) == (2, 120.0, 1)
    assert first["review_per_day"] == 0.5  # one attempt (70) between 65 and 75 over 2 days
    assert (second["fraud_caught"], second["good_blocked"], second["review_per_day"]) == (1, 1, 0.0)
    frame = pd.DataFrame({"day": [1, 1, 1, 2, 2], "card": ["a", "a", "b", "a", "c"], "label": [1, 1, 0, 1, 1]})
    # day 1: top-1 card is a (fraud); day 2: a is known, c is the only card left (fraud)
    assert card_precision_top_k(frame, np.array([0.9, 0.1, 0.5, 0.99, 0.2]), k=1) == 1.0
    assert FraudScorer.risk_score(np.array([0.0, 0.5, 1.0])).tolist() == [0, 50, 99]


def test_renewals_at_risk_and_dunning_recovery(trained: dict, warehouse: Warehouse, registry: Registry) -> None:
    loaded = PaymentFailureModel().load(registry, trained["payment_failure"][1])
    with warehouse.snapshot() as snap:
        risk = renewals_at_risk(snap, loaded, as_of=date(2025, 6, 1))
        recovery = dunning_recovery_rate(snap, date(2024, 4, 1), date(2025, 6, 1))
    renewals = risk.renewals
    assert len(renewals) > 50
    due = pd.to_datetime(renewals["due_at"], utc=True)
    assert (due > datetime(2025, 6, 1, tzinfo=UTC)).all() and (due <= datetime(2025, 7, 1, tzinfo=UTC)).all()
    assert risk.amount_at_risk == pytest.approx(float((renewals["probability"] * renewals["amount_rc"]).sum()))
    assert 0 < recovery["recovery_rate"] < 1 and recovery["failed_renewals"] > 0
    assert risk.recovery_rate == pytest.approx(recovery["recovery_rate"])
    summary = risk.summary()
    assert summary["expected_recovered_by_dunning"] == pytest.approx(risk.amount_at_risk * risk.recovery_rate, abs=0.01)
    assert summary["expected_lost"] == pytest.approx(risk.amount_at_risk - risk.expected_recovered, abs=0.01)
    with warehouse.snapshot() as snap:
        predictions = PaymentFailureModel().predict(loaded, snap, as_of=date(2025, 6, 1), limit=3)
    assert all(p.details["kind"] == "upcoming_renewal" for p in predictions)
    assert predictions[0].details["dunning_recovery_rate"] == pytest.approx(loaded.model.recovery_rate)


# ---- notebooks --------------------------------------------------------------------------------
NOTEBOOKS = PROJECT_ROOT / "notebooks" / "models"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean(name: str) -> None:
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    first = book.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    for key in ("warehouse = None", "registry = None", "cutoff = None"):
        assert key in first.source
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert "def " not in cell.source and "class " not in cell.source and "ipywidgets" not in cell.source


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_under_papermill(name: str, warehouse: Warehouse, tmp_path: Path) -> None:
    papermill = pytest.importorskip("papermill")
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), kernel_name="python3",
                               parameters={"warehouse": str(warehouse.location),
                                           "registry": str(tmp_path / "registry")},
                               progress_bar=False, execution_timeout=600)
    executed = nbformat.read(out, as_version=4)
    assert not [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
                if o.get("output_type") == "error"]
    assert Registry(tmp_path / "registry").versions(name)
