"""Outside benchmark: the fraud model's estimator on the fraud handbook's simulated card data.

The "Reproducible Machine Learning for Credit Card Fraud Detection - Practical Handbook" (Le
Borgne et al., ULB MLG) publishes baselines on this data (../shared/data/README.md): train on the
7 days from 2018-07-25, skip 7 days (the delay before fraud labels are known), test on the next
7 days, with the cards found compromised in training and in the delay period removed from each
test day. On the test week it reports ROC AUC / average precision / card precision@100 of
decision tree 0.763 / 0.496 / 0.241, logistic regression 0.871 / 0.606 / 0.291 and random forest
0.867 / 0.658 / 0.287.

Here the same :class:`~analytics_lib.models.fraud.FraudScorer` the warehouse model uses (gradient
boosting + isolation forest, stacked on the later training days) runs on the handbook's 15
features plus the project's feature ideas expressed on this data's columns: velocity in the
last hour (customer, terminal), the amount against the customer's own history, time since the
customer's previous transaction, recent bursts against the 30-day rate, and how many recent
transactions of the customer were unusually large (a compromised card's trace). Every added
feature uses only transactions strictly before the one scored; TX_FRAUD_SCENARIO is never used.
"""

from __future__ import annotations

import time

import duckdb
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.models.fraud import FRAUD_HGB, FraudScorer, card_precision_top_k

pytestmark = pytest.mark.shared_data

DATA = PROJECT_ROOT.parent / "shared" / "data" / "fraud_handbook" / "transactions.parquet"

PUBLISHED = {  # test week: ROC AUC, average precision, card precision@100
    "decision_tree_depth_2": (0.763, 0.496, 0.241),
    "logistic_regression": (0.871, 0.606, 0.291),
    "random_forest": (0.867, 0.658, 0.287),
}
HANDBOOK_FEATURES = [
    "TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_1DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW", "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_30DAY_WINDOW", "TERMINAL_ID_RISK_30DAY_WINDOW",
]
PROJECT_FEATURES = [
    "customer_tx_1h", "terminal_tx_1h", "hours_since_previous", "amount_vs_prior_mean", "amount_vs_30d",
    "amount_vs_7d", "avg_1d_vs_30d", "customer_rate_1d_vs_30d", "terminal_rate_1d_vs_30d", "hour",
    "large_tx_7d", "max_amount_ratio_14d",
]
# The project's feature ideas on this data's columns; windows end strictly before each transaction.
FEATURE_SQL = """
WITH f AS (
    SELECT *,
        count(*) OVER (PARTITION BY CUSTOMER_ID ORDER BY TX_DATETIME
                       RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS customer_tx_1h,
        count(*) OVER (PARTITION BY TERMINAL_ID ORDER BY TX_DATETIME
                       RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS terminal_tx_1h,
        date_diff('second', lag(TX_DATETIME) OVER (PARTITION BY CUSTOMER_ID ORDER BY TX_DATETIME, TRANSACTION_ID),
                  TX_DATETIME) / 3600.0 AS hours_since_previous,
        TX_AMOUNT / nullif(avg(TX_AMOUNT) OVER (PARTITION BY CUSTOMER_ID ORDER BY TX_DATETIME, TRANSACTION_ID
                                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS amount_vs_prior_mean,
        TX_AMOUNT / nullif(CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW, 0) AS amount_vs_30d,
        TX_AMOUNT / nullif(CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW, 0) AS amount_vs_7d,
        CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW / nullif(CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW, 0) AS avg_1d_vs_30d,
        CUSTOMER_ID_NB_TX_1DAY_WINDOW / nullif(CUSTOMER_ID_NB_TX_30DAY_WINDOW / 30.0, 0) AS customer_rate_1d_vs_30d,
        TERMINAL_ID_NB_TX_1DAY_WINDOW / nullif(TERMINAL_ID_NB_TX_30DAY_WINDOW / 30.0, 0) AS terminal_rate_1d_vs_30d,
        hour(TX_DATETIME) AS hour
    FROM tx
)
SELECT *,
    coalesce(sum((amount_vs_prior_mean > 3)::INTEGER) OVER (
        PARTITION BY CUSTOMER_ID ORDER BY TX_DATETIME
        RANGE BETWEEN INTERVAL 7 DAY PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW), 0) AS large_tx_7d,
    coalesce(max(amount_vs_prior_mean) OVER (
        PARTITION BY CUSTOMER_ID ORDER BY TX_DATETIME
        RANGE BETWEEN INTERVAL 14 DAY PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW), 0) AS max_amount_ratio_14d
FROM f
ORDER BY TX_DATETIME, TRANSACTION_ID
"""
#: the same settings as the warehouse fraud model (FRAUD_HGB), stacked on the last 2 training days
STACK_DAYS = 2


@pytest.fixture(scope="module")
def handbook() -> dict:
    if not DATA.exists():
        pytest.skip(f"fraud handbook data not found at {DATA} (../shared/data is outside the repository)")
    started = time.perf_counter()
    raw = pd.read_parquet(DATA)
    con = duckdb.connect()
    con.register("tx", raw)
    frame = con.execute(FEATURE_SQL).df()
    con.close()
    start = int(frame["TX_TIME_DAYS"].min())  # 2018-07-25
    assert str(frame.loc[frame["TX_TIME_DAYS"] == start, "TX_DATETIME"].min().date()) == "2018-07-25"
    train = frame[(frame["TX_TIME_DAYS"] >= start) & (frame["TX_TIME_DAYS"] < start + 7)]
    # the handbook's test week: days 14..20 after the start; each day drops the cards known
    # compromised by then (frauds of the training week and of the delay days before it)
    known = set(train.loc[train["TX_FRAUD"] == 1, "CUSTOMER_ID"])
    days = []
    for day in range(7):
        test_day = frame[frame["TX_TIME_DAYS"] == start + 14 + day]
        delay_day = frame[frame["TX_TIME_DAYS"] == start + 7 + day - 1]
        known |= set(delay_day.loc[delay_day["TX_FRAUD"] == 1, "CUSTOMER_ID"])
        days.append(test_day[~test_day["CUSTOMER_ID"].isin(known)])
    test = pd.concat(days)
    stack = (train["TX_TIME_DAYS"] >= start + 7 - STACK_DAYS).to_numpy()
    results = {}
    for name, features in (("handbook features", HANDBOOK_FEATURES),
                           ("handbook + project features", HANDBOOK_FEATURES + PROJECT_FEATURES)):
        fit_started = time.perf_counter()
        scorer = FraudScorer(features, [], features, hgb_params=FRAUD_HGB)
        scorer.fit(train, train["TX_FRAUD"].to_numpy(), ~stack, stack)
        p_sup, z = scorer.components(test)
        p = scorer.combine(p_sup, z)
        y = test["TX_FRAUD"].to_numpy()
        results[name] = {
            "roc_auc": roc_auc_score(y, p),
            "average_precision": average_precision_score(y, p),
            "card_precision_at_100": card_precision_top_k(test.assign(label=y), p, 100, day="TX_TIME_DAYS",
                                                          card="CUSTOMER_ID", label="label"),
            "supervised_only_average_precision": average_precision_score(y, p_sup),
            "stacking_weights": scorer.weights,
            "seconds": time.perf_counter() - fit_started,
        }
    return {"train": train, "test": test, "results": results, "seconds": time.perf_counter() - started}


def test_protocol_matches_the_handbook(handbook: dict) -> None:
    train, test = handbook["train"], handbook["test"]
    # the handbook's training and test set sizes for this protocol
    assert (len(train), int(train["TX_FRAUD"].sum())) == (67240, 598)
    assert (len(test), int(test["TX_FRAUD"].sum())) == (58264, 385)
    assert "TX_FRAUD_SCENARIO" not in HANDBOOK_FEATURES + PROJECT_FEATURES


def test_beats_the_handbook_logistic_regression(handbook: dict) -> None:
    result = handbook["results"]["handbook + project features"]
    for name, numbers in handbook["results"].items():
        print(f"\n{name}: ROC AUC {numbers['roc_auc']:.4f}, AP {numbers['average_precision']:.4f}, "
              f"card precision@100 {numbers['card_precision_at_100']:.4f} "
              f"(supervised only AP {numbers['supervised_only_average_precision']:.4f}; "
              f"weights {numbers['stacking_weights']}; {numbers['seconds']:.1f} s)")
    auc, ap, _ = PUBLISHED["logistic_regression"]
    assert result["roc_auc"] > auc
    assert result["average_precision"] > ap


def test_beats_the_handbook_random_forest_average_precision(handbook: dict) -> None:
    """The goal: beat the handbook's best published average precision (random forest, 0.658)."""
    result = handbook["results"]["handbook + project features"]
    auc, ap, card = PUBLISHED["random_forest"]
    assert result["average_precision"] > ap, result
    assert result["roc_auc"] > auc
    assert result["card_precision_at_100"] > card
    # no wall-clock bound here: on the shared 2-core machine the same fit took 10 s alone and over
    # 60 s beside other suites; its time is printed by the logistic-regression test
