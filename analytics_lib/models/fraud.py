"""Fraud: a 0-99 risk score for checkout payments, with review and block thresholds.

Two views of each attempt are combined. A supervised gradient-boosted tree model learns from
labelled history (fraud chargebacks and fraud alerts confirmed by reviewers); an isolation forest
scores how unusual the attempt is without labels, which catches patterns the labels have not
shown yet. A logistic regression fitted on the last training months (after the trees, never on
the rows they learned from) weighs the two into a fraud probability; the risk score is
``round(99 x probability)``. Attempts at or above ``review_threshold`` (default 65) go to manual
review, at or above ``block_threshold`` (default 75) are declined.

Only what exists at authorization time is used (``sql/fraud.sql``): the attempt, the customer
record, and velocity and history strictly before the attempt. Labels arrive late: a fraud
chargeback comes 30-90 days after the payment. So the evaluation window ends ``label_delay_days``
(default 90) before the data's last day, where labels have matured; and training stops the same
delay before the cutoff, so the model learns only from labels that were known on the cutoff day
(the handbook's "delay period"). The baseline is the platform's own stored risk score, used as a
ranking on the same attempts.

:func:`what_if` tabulates, per threshold, fraud caught, good volume blocked and the review load;
:class:`FraudScorer` is the estimator, reused unchanged by the outside benchmark on the fraud
handbook's data (tests/test_models_fraud_handbook.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from analytics_lib.metrics.cache import HistoryCache, digest
from analytics_lib.models import features as sqlfeatures
from analytics_lib.models.base import (
    Action,
    Model,
    ModelError,
    Prediction,
    RiskFactor,
    TrainResult,
    data_range,
)
from analytics_lib.models.classifier import (
    HGB_DEFAULTS,
    PREDICT_BATCH_ROWS,
    TabularClassifier,
    add_months,
    as_instant,
    candidates_feature_table,
    check_rates,
    curves,
    day_start,
    encode_matrix,
    fit_tabular_classifier,
    label_column,
    local_params,
    map_batches,
    money_params,
    require_ids,
    text_column,
)
from analytics_lib.models.registry import LoadedModel, feature_fingerprint
from analytics_lib.models.scoring import (
    RISK_LEVELS,
    Scorecard,
    TimeSplit,
    beats,
    classification_metrics,
    confidence_from_margin,
    labels_of,
)
from analytics_lib.warehouse import Snapshot
from analytics_lib.warehouse.schema import TABLES

NUMERIC = [
    "amount_rc", "card_age_days", "new_card", "months_to_expiry", "foreign_card", "ip_card_mismatch",
    "ip_abroad", "local_hour", "weekday", "account_age_hours", "is_guest", "from_campaign", "direct_visit",
    "has_discount", "customer_attempts_1h", "customer_attempts_24h", "card_changes_24h", "ip_attempts_1h",
    "ip_attempts_24h", "failures_1h", "prior_successes", "prior_alerts", "platform_risk_score",
]
CATEGORICAL = ["payment_method", "card_brand", "billing_reason", "country_code", "device_class", "acquisition_channel"]
#: numeric features the isolation forest sees (what makes an attempt unusual, not who it is)
ANOMALY_FEATURES = [
    "amount_rc", "card_age_days", "months_to_expiry", "ip_card_mismatch", "local_hour", "account_age_hours",
    "customer_attempts_1h", "customer_attempts_24h", "card_changes_24h", "ip_attempts_24h", "failures_1h",
    "prior_successes",
]
REVIEW_THRESHOLD = 65
BLOCK_THRESHOLD = 75
LABEL_DELAY_DAYS = 90
MIN_TRAINING_FRAUD = 30
EVALUATION_DAYS = 91
RECENT_DAYS = 7
WHAT_IF_THRESHOLDS = tuple(range(5, 100, 5))
#: smaller trees, learning more slowly, than the shared defaults: better average precision here and
#: on the fraud handbook benchmark, and each tree is cheaper to score at volume. At most 80 of them:
#: scoring time grows with the number of trees, and early stopping kept 122-175 trees for the same
#: average precision (demo 0.933 with 175, 0.935 with 80; handbook 0.683 with 122, 0.682 with 80)
FRAUD_HGB: dict[str, Any] = {"max_leaf_nodes": 15, "learning_rate": 0.05, "max_iter": 80}
#: the isolation forest: 25 trees on samples of 128 rows (trees of depth 7) score 1M rows in under
#: half the time of 50 trees on 256, with the same anomaly-only ROC AUC on the demo (0.82) and the
#: same stacked average precision on the demo and the fraud handbook
FOREST_TREES = 25
FOREST_SAMPLES = 128
#: DuckDB optimizers switched off for the feature query. The candidates enter it as a materialized
#: CTE whose row estimate is far too low (28,320 for 1M candidates), so DuckDB's build-side choice
#: builds the final LEFT joins' hash tables on the wide candidate rows instead of the narrow
#: per-attempt counts; without that choice each join builds on its right side, as written. Same
#: rows; at 10M, 1M candidates: 11-20 % less CPU, 2.5M: 22-25 % less (alternating runs in one
#: process); the demo's 38k: the same. The payment-failure query gains nothing from it.
FRAUD_DISABLED_OPTIMIZERS = "build_side_probe_side"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


#: the history tables the feature query reads, and the queries of ``sql/fraud.sql`` that make them
HISTORY_TABLES = {"fraud_before": "history_before", "fraud_late": "history_late"}
HISTORY_BLOCK = "fraud_history"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@contextmanager
def earlier_history(snapshot: Snapshot, start: datetime | None) -> Iterator[datetime]:
    """Make the feature query's two history tables for candidates from ``start`` on; yields the
    instant (``$history_from``) from which the query reads the transactions itself.

    The time lines start a day before the first candidate. Everything created before the first
    day (UTC) of that day's month enters as per-customer totals and as the few earlier attempts
    that completed or failed later. Building those tables reads every earlier transaction, so
    they are kept in the warehouse's cache (``_cache/models/fraud_history/``), keyed by the SQL,
    that day and the Parquet files of the months before it: ingesting new payments adds files to
    later months and keeps the entry; compaction, a backfill or a correction of an earlier month
    makes a new one. Without a start (scoring by id), without earlier months, with the cache off
    (``PAYMENT_ANALYTICS_METRIC_CACHE=off``) or on a warehouse that is not a local folder, the
    tables are empty and the query reads the whole history itself: the same features, the cost
    of building the tables every call saved. The tables are dropped afterwards."""
    con = snapshot.con
    queries = sqlfeatures.load_sql("fraud")
    history_from = EPOCH
    kind = "TABLE"  # or VIEW: a cache entry's files, read by the query
    cache = HistoryCache.for_warehouse(snapshot.location, "models")
    if start is not None and cache is not None:
        day = start.astimezone(UTC) - timedelta(days=1)  # the time line starts after it
        month_start = datetime(day.year, day.month, 1, tzinfo=UTC)
        files = _files_before(snapshot, "transactions", f"{month_start:%Y-%m}")
        if files:  # None: not known; (): no earlier month
            key = (month_start.isoformat(), files)
            entry = digest(HISTORY_BLOCK, queries["history_before"] + queries["history_late"], key, {})
            if cache.load(con, HISTORY_BLOCK, entry, list(HISTORY_TABLES), views=True):
                kind = "VIEW"
            else:
                for table, query in HISTORY_TABLES.items():
                    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {queries[query]}",
                                {"history_from": month_start})
                cache.store(con, HISTORY_BLOCK, entry, list(HISTORY_TABLES))
            history_from = month_start
    if history_from == EPOCH:
        for table, query in HISTORY_TABLES.items():
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM ({queries[query]}) WHERE false",
                        {"history_from": EPOCH})
    try:
        yield history_from
    finally:
        for table in HISTORY_TABLES:
            con.execute(f"DROP {kind} IF EXISTS {table}")


def _files_before(snapshot: Snapshot, table: str, month: str) -> tuple[str, ...] | None:
    """The Parquet files of ``table``'s month partitions before ``month`` (sorted), as the
    snapshot reads them; None if they are not known (a view read through delta-rs, or a file
    outside a month partition)."""
    files = snapshot.files.get(table)
    partition = TABLES[table].partition_by
    if files is None or not partition:
        return None
    before = []
    for uri in files:
        found = re.search(rf"/{re.escape(partition[0])}=(\d{{4}}-\d{{2}})/", uri)
        if found is None:
            return None
        if found.group(1) < month:
            before.append(uri)
    return tuple(sorted(before))


@dataclass
class FraudScorer:
    """Supervised trees + isolation forest, stacked into a fraud probability and a 0-99 score.

    ``fit`` takes two time-ordered masks: the trees and the forest learn from ``fit_rows``; the
    stacking regression (and the trees' early stopping) use the later ``stack_rows``.
    """

    numeric: list[str]
    categorical: list[str]
    anomaly_features: list[str]
    classifier: TabularClassifier | None = None
    forest: IsolationForest | None = None
    anomaly_center: float = 0.0
    anomaly_scale: float = 1.0
    anomaly_fill: np.ndarray | None = None
    stacker: LogisticRegression | None = None
    hgb_params: dict[str, Any] = field(default_factory=dict)
    forest_trees: int = FOREST_TREES
    forest_samples: int = FOREST_SAMPLES
    random_state: int = 0

    def fit(self, frame: pd.DataFrame, y: np.ndarray, fit_rows: np.ndarray, stack_rows: np.ndarray) -> FraudScorer:
        y = np.asarray(y, dtype=int)
        fit_rows, stack_rows = np.asarray(fit_rows, bool), np.asarray(stack_rows, bool)
        self.classifier = fit_tabular_classifier(frame, y, self.numeric, self.categorical, fit_rows, stack_rows,
                                                 method="none", hgb_params=self.hgb_params)
        xa = encode_matrix(frame.loc[fit_rows], self.anomaly_features, {})
        self.anomaly_fill = np.nanmedian(xa, axis=0)
        xa = np.where(np.isnan(xa), self.anomaly_fill, xa)
        self.forest = IsolationForest(n_estimators=self.forest_trees, max_samples=min(self.forest_samples, len(xa)),
                                      random_state=self.random_state)
        with threadpool_limits(1, user_api="openmp"):
            self.forest.fit(xa)
        raw = -self.forest.score_samples(xa)
        self.anomaly_center, self.anomaly_scale = float(np.mean(raw)), float(np.std(raw) or 1.0)
        p_sup, z = self.components(frame.loc[stack_rows])
        self.stacker = LogisticRegression(C=1.0).fit(np.column_stack([_logit(p_sup), z]), y[stack_rows])
        return self

    def components(self, frame: pd.DataFrame | pa.Table,
                   batch_rows: int = PREDICT_BATCH_ROWS) -> tuple[np.ndarray, np.ndarray]:
        """Supervised probability and standardised anomaly score (higher = more unusual).

        One pass over row batches on the scoring threads: each batch is encoded, scored by the
        trees, and its anomaly columns (taken from the same matrix when the classifier has them
        all) scored by the forest, so encoding and forest run on both cores as well. Both tree
        models are walked by the compiled kernels of :mod:`analytics_lib.models.compiled` (the
        numbers sklearn gives)."""
        assert self.classifier is not None and self.forest is not None and self.anomaly_fill is not None
        classifier, forest, fill = self.classifier, self.forest, self.anomaly_fill
        numeric = classifier.numeric
        shared = [numeric.index(f) for f in self.anomaly_features] if all(
            f in numeric for f in self.anomaly_features) else None
        table = isinstance(frame, pa.Table)

        from analytics_lib.models import compiled  # numba loads when a model first scores

        trees = compiled.isolation(forest)

        def score(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
            part = frame.slice(lo, hi - lo) if table else frame.iloc[lo:hi]
            x = classifier.matrix(part)
            # the forest's columns: from the same matrix, or encoded on their own
            source, columns = (x, shared) if shared is not None else (
                encode_matrix(part, self.anomaly_features, {}), None)
            if trees is not None:  # the compiled forest fills the gaps and reads the columns itself
                anomaly = trees.anomaly(source, columns, fill)
            else:
                xa = source if columns is None else source[:, columns]
                # the forest compares float32 thresholds: converting here saves sklearn a copy
                anomaly = -forest.score_samples(np.where(np.isnan(xa), fill, xa).astype(np.float32))
            return classifier.positive_proba(x), anomaly

        n = frame.num_rows if table else len(frame)
        p_sup, raw = map_batches(score, n, batch_rows, outputs=2)
        return p_sup, (raw - self.anomaly_center) / self.anomaly_scale

    def probability(self, frame: pd.DataFrame | pa.Table) -> np.ndarray:
        p_sup, z = self.components(frame)
        return self.combine(p_sup, z)

    def combine(self, p_sup: np.ndarray, z: np.ndarray) -> np.ndarray:
        assert self.stacker is not None
        return self.stacker.predict_proba(np.column_stack([_logit(p_sup), z]))[:, 1]

    @staticmethod
    def risk_score(probability: np.ndarray) -> np.ndarray:
        """0-99 integer score."""
        return np.rint(99 * np.clip(probability, 0, 1)).astype(int)

    @property
    def weights(self) -> dict[str, float]:
        assert self.stacker is not None
        return {"supervised_logit": float(self.stacker.coef_[0][0]), "anomaly_z": float(self.stacker.coef_[0][1]),
                "intercept": float(self.stacker.intercept_[0])}


@dataclass
class FraudArtifact:
    scorer: FraudScorer
    review_threshold: int
    block_threshold: int
    label_delay_days: int
    meta: dict[str, Any] = field(default_factory=dict)


# ---- metrics ---------------------------------------------------------------------------------
def precision_at_k(y: np.ndarray, score: np.ndarray, k: int) -> float | None:
    y = np.asarray(y)
    if len(y) == 0:
        return None
    top = np.argsort(-np.asarray(score, dtype=float), kind="stable")[: min(k, len(y))]
    return float(y[top].mean())


def card_precision_top_k(frame: pd.DataFrame, score: np.ndarray, k: int = 100, day: str = "day",
                         card: str = "card", label: str = "label") -> float:
    """The fraud handbook's daily card precision@k, averaged over days: each day, a card's score
    is its highest transaction score, the k highest-scored cards are checked, and cards found
    compromised on earlier days are no longer counted."""
    data = pd.DataFrame({"day": frame[day].to_numpy(), "card": frame[card].to_numpy(),
                         "label": frame[label].to_numpy(), "score": np.asarray(score, dtype=float)})
    known: set[Any] = set()
    daily = []
    for _, part in data.groupby("day", sort=True):
        part = part[~part["card"].isin(known)]
        cards = part.groupby("card").agg(score=("score", "max"), label=("label", "max"))
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        caught = top.index[top["label"] == 1]
        daily.append(len(caught) / k)
        known.update(caught)
    return float(np.mean(daily)) if daily else float("nan")


def what_if(score: np.ndarray, y: np.ndarray, amount: np.ndarray, days: float,
            thresholds: tuple[int, ...] = WHAT_IF_THRESHOLDS, block_threshold: int = BLOCK_THRESHOLD) -> pd.DataFrame:
    """Per threshold t on the 0-99 score, if attempts with score >= t were stopped: fraud caught
    (count, share of all fraud, amount), good attempts stopped (count, amount, share); and the
    review load if t were the review threshold with the block threshold kept: attempts per day
    with t <= score < block_threshold (0 when t >= block_threshold)."""
    score, y, amount = np.asarray(score), np.asarray(y, dtype=int), np.asarray(amount, dtype=float)
    fraud, good = y == 1, y == 0
    rows = []
    for t in thresholds:
        hit = score >= t
        rows.append({
            "threshold": int(t),
            "fraud_caught": int((hit & fraud).sum()),
            "fraud_caught_share": float((hit & fraud).sum() / max(fraud.sum(), 1)),
            "fraud_amount_caught": round(float(amount[hit & fraud].sum()), 2),
            "good_blocked": int((hit & good).sum()),
            "good_blocked_share": float((hit & good).sum() / max(good.sum(), 1)),
            "good_amount_blocked": round(float(amount[hit & good].sum()), 2),
            "precision": float((hit & fraud).sum() / hit.sum()) if hit.any() else None,
            "review_per_day": round(float(((score >= t) & (score < block_threshold)).sum() / max(days, 1e-9)), 2),
        })
    return pd.DataFrame(rows)


# ---- the model -------------------------------------------------------------------------------
class FraudModel(Model):
    name: ClassVar[str] = "fraud"
    description: ClassVar[str] = "0-99 fraud risk score for checkout payments with review/block thresholds"
    feature_version: ClassVar[str] = "fraud-1-" + feature_fingerprint(
        [*NUMERIC, *CATEGORICAL, "|anomaly|", *ANOMALY_FEATURES],
        "velocity strictly before the attempt; card key brand|country|expiry; labels fraudulent "
        "disputes + confirmed alerts; categories from training vocabulary")

    def default_split(self, snapshot: Snapshot) -> TimeSplit:
        first, last = data_range(snapshot)
        mature_end = last + timedelta(days=1) - timedelta(days=LABEL_DELAY_DAYS)
        cutoff = mature_end - timedelta(days=EVALUATION_DAYS)
        if cutoff - timedelta(days=LABEL_DELAY_DAYS) <= first + timedelta(days=60):
            raise ModelError(
                f"fraud needs about 11 months of transactions (3 months of mature training labels, a "
                f"{LABEL_DELAY_DAYS}-day label delay, {EVALUATION_DAYS} evaluation days and {LABEL_DELAY_DAYS} more "
                f"days for their chargebacks to arrive); the warehouse holds {first} .. {last}")
        return TimeSplit(first, cutoff, mature_end)

    def feature_table(self, snapshot: Snapshot, candidates: str, label_at: date | datetime, **params: Any) -> pa.Table:
        """Feature rows of the candidates of the named query (``window``, ``ids``), labelled as
        known at ``label_at``, as an Arrow table."""
        start = params.get("start") if candidates == "window" else None
        with earlier_history(snapshot, as_instant(start) if start is not None else None) as history_from:
            table = candidates_feature_table(snapshot, "fraud", f"candidates_{candidates}", params,
                                             {**money_params(), "tz": local_params()["tz"],
                                              "label_at": as_instant(label_at), "history_from": history_from},
                                             disabled_optimizers=FRAUD_DISABLED_OPTIMIZERS)
        check_rates(table, "fraud features")
        return table

    def features(self, snapshot: Snapshot, candidates: str, label_at: date | datetime, **params: Any) -> pd.DataFrame:
        """:meth:`feature_table` as a DataFrame."""
        return self.feature_table(snapshot, candidates, label_at, **params).to_pandas()

    # -- batch scoring ----------------------------------------------------------------------
    def score(self, loaded: LoadedModel | FraudArtifact, snapshot: Snapshot, start: date | datetime,
              end: date | datetime) -> pd.DataFrame:
        """Fraud score of every checkout attempt created in ``[start, end)`` (days are UTC
        midnights): features in SQL, fetched as Arrow, encoded and scored in vectorised batches.
        One row per attempt, in time order: ids, time, amount in the reporting currency,
        ``probability``, ``risk_score`` (0-99), ``decision`` (approve / review / block),
        ``risk_level``, the supervised probability, the anomaly score and the platform's score.
        Explanations and actions are left to :meth:`predict`, for the attempts someone asks about."""
        artifact: FraudArtifact = loaded.model if isinstance(loaded, LoadedModel) else loaded
        table = self.feature_table(snapshot, "window", end, start=as_instant(start), end=as_instant(end))
        p_sup, z = artifact.scorer.components(table)
        p = artifact.scorer.combine(p_sup, z)
        score = FraudScorer.risk_score(p)
        decision = decision_codes(score, artifact.review_threshold, artifact.block_threshold)
        return pd.DataFrame({
            "transaction_id": text_column(table["transaction_id"]),
            "customer_id": text_column(table["customer_id"]),
            "created_at": table["created_at"].to_pandas(),
            "amount_rc": table["amount_rc"].to_numpy(zero_copy_only=False),
            "probability": p,
            "risk_score": score,
            "decision": label_column(DECISIONS, decision),
            "risk_level": label_column(RISK_LEVELS, fraud_risk_level_codes(score, decision)),
            "supervised_probability": p_sup,
            "anomaly_z": z,
            "platform_risk_score": table["platform_risk_score"].to_numpy(zero_copy_only=False),
        })

    def train(self, snapshot: Snapshot, split: TimeSplit, **params: Any) -> TrainResult:
        review = int(params.pop("review_threshold", REVIEW_THRESHOLD))
        block = int(params.pop("block_threshold", BLOCK_THRESHOLD))
        delay = int(params.pop("label_delay_days", LABEL_DELAY_DAYS))
        stack_months = int(params.pop("stack_months", 3))
        forest_trees = int(params.pop("forest_trees", FOREST_TREES))
        forest_samples = int(params.pop("forest_samples", FOREST_SAMPLES))
        hgb_params = {**FRAUD_HGB, **{k: params.pop(k) for k in list(params) if k in HGB_DEFAULTS}}
        if params:
            raise ModelError(f"unknown fraud parameters: {', '.join(sorted(params))}")
        if not 0 < review <= block <= 99:
            raise ModelError(f"thresholds must satisfy 0 < review ({review}) <= block ({block}) <= 99")
        train_frame, eval_frame, labels_at = self.frames(snapshot, split, delay)
        train_end = split.cutoff - timedelta(days=delay)
        if train_frame.empty:
            raise ModelError(f"fraud: no checkout attempts between {split.train_start} and {train_end}")
        y = train_frame["is_fraud"].to_numpy(dtype=int)
        # the stacking slice: the last `stack_months`, but never more than the last third of training
        span = (train_end - split.train_start).days
        stack_from = max(add_months(train_end, -stack_months), train_end - timedelta(days=span // 3))
        stack_rows = (train_frame["created_at"] >= day_start(stack_from)).to_numpy()
        scorer = FraudScorer(NUMERIC, CATEGORICAL, ANOMALY_FEATURES, hgb_params=hgb_params, forest_trees=forest_trees,
                             forest_samples=forest_samples)
        scorer.fit(train_frame, y, ~stack_rows, stack_rows)
        artifact = FraudArtifact(scorer, review, block, delay, {"stack_months": stack_months})
        sizes = {"train_rows": len(train_frame), "fit_rows": int((~stack_rows).sum()),
                 "stack_rows": int(stack_rows.sum()), "train_fraud": int(y.sum()),
                 "evaluation_rows": len(eval_frame), "evaluation_fraud": int(eval_frame["is_fraud"].sum())}
        card = self._scorecard(artifact, eval_frame, split, sizes, labels_at)
        if y.sum() < MIN_TRAINING_FRAUD:
            card.notes.append(f"only {int(y.sum())} fraud labels in training (fewer than {MIN_TRAINING_FRAUD}): "
                              "the supervised part has little to learn from; load more history")
        features = scorer.classifier.features if scorer.classifier else []
        return TrainResult(model=artifact, scorecard=card, features=features, rows=sizes, split=split,
                           params={"review_threshold": review, "block_threshold": block, "label_delay_days": delay,
                                   "stack_months": stack_months, "forest_trees": forest_trees,
                                   "forest_samples": forest_samples, **hgb_params})

    def frames(self, snapshot: Snapshot, split: TimeSplit, delay: int = LABEL_DELAY_DAYS,
               ) -> tuple[pd.DataFrame, pd.DataFrame, date]:
        """Training rows: attempts in [train_start, cutoff - delay), labelled with what was known
        at the cutoff. Evaluation rows: attempts in [cutoff, evaluation_end), labelled with what
        is known ``delay`` days after the evaluation end (or at the data's end, if earlier)."""
        last = data_range(snapshot)[1]
        train_end = split.cutoff - timedelta(days=delay)
        if train_end <= split.train_start:
            raise ModelError(f"fraud: no training rows before {train_end} (cutoff {split.cutoff} minus the "
                             f"{delay}-day label delay); choose a later cutoff")
        train_frame = self.features(snapshot, "window", split.cutoff, start=day_start(split.train_start),
                                    end=day_start(train_end))
        labels_at = min(last + timedelta(days=1), split.evaluation_end + timedelta(days=delay))
        eval_frame = self.features(snapshot, "window", labels_at, start=day_start(split.cutoff),
                                   end=day_start(split.evaluation_end))
        return train_frame, eval_frame, labels_at

    def _scorecard(self, artifact: FraudArtifact, frame: pd.DataFrame, split: TimeSplit, sizes: dict[str, int],
                   labels_at: date) -> Scorecard:
        if frame.empty:
            raise ModelError(f"fraud: no checkout attempts to evaluate in {split.cutoff} .. {split.evaluation_end}")
        y = frame["is_fraud"].to_numpy(dtype=int)
        p_sup, z = artifact.scorer.components(frame)
        p = artifact.scorer.combine(p_sup, z)
        score = FraudScorer.risk_score(p)
        baseline_score = frame["platform_risk_score"].fillna(0).to_numpy(dtype=float)
        metrics = classification_metrics(y, p)
        baseline = classification_metrics(y, baseline_score / 100.0)
        k = 100
        metrics["precision_at_100"] = precision_at_k(y, p, k)
        baseline["precision_at_100"] = precision_at_k(y, baseline_score, k)
        metrics["supervised_only_pr_auc"] = classification_metrics(y, p_sup)["pr_auc"]
        metrics["anomaly_only_roc_auc"] = classification_metrics(y, 1 / (1 + np.exp(-z)))["roc_auc"]
        days = max((split.evaluation_end - split.cutoff).days, 1)
        amount = frame["amount_rc"].to_numpy(dtype=float)
        table = what_if(score, y, amount, days, block_threshold=artifact.block_threshold)
        at = {}
        for name, t in (("review", artifact.review_threshold), ("block", artifact.block_threshold)):
            row = what_if(score, y, amount, days, (t,), artifact.block_threshold).to_dict(orient="records")[0]
            at[name] = {key: (None if isinstance(v, float) and np.isnan(v) else v) for key, v in row.items()}
        comparison = {m: beats(metrics, baseline, m) for m in ("roc_auc", "pr_auc", "precision_at_100")}
        comparison["brier"] = beats(metrics, baseline, "brier", higher_is_better=False)
        return Scorecard(
            model=self.name, split=split.to_dict(), sizes=sizes, metrics=metrics,
            baseline_name="platform risk_score (ranking; /100 as probability)", baseline=baseline,
            beats_baseline=comparison["pr_auc"], primary_metric="pr_auc",
            notes=[
                "population: checkout attempts (purchase, subscription_create)",
                "label: a 'fraudulent' dispute or a confirmed fraud alert",
                f"evaluation labels as known on {labels_at}: the window ends {artifact.label_delay_days} days "
                "before the data does, so chargebacks (30-90 days late) have arrived",
                f"training rows end {artifact.label_delay_days} days before the cutoff, with labels known at the cutoff",
                "baseline Brier uses risk_score/100, which is a ranking, not a probability",
            ],
            extra={"beats_by_metric": comparison, "what_if": table.to_dict(orient="records"),
                   "curves": {"model": curves(y, p), "baseline": curves(y, baseline_score)},
                   "at_thresholds": at, "review_threshold": artifact.review_threshold,
                   "block_threshold": artifact.block_threshold, "stacking_weights": artifact.scorer.weights,
                   "evaluation_days": days},
        )

    def evaluate(self, loaded: LoadedModel, snapshot: Snapshot) -> dict[str, Any]:
        artifact: FraudArtifact = loaded.model
        window = loaded.metadata.training_window
        cutoff = date.fromisoformat(window["cutoff"])
        last = data_range(snapshot)[1]
        end = last + timedelta(days=1) - timedelta(days=artifact.label_delay_days)
        if end <= cutoff:
            raise ModelError(f"no attempts with mature labels after the cutoff {cutoff} yet "
                             f"(labels need {artifact.label_delay_days} days)")
        split = TimeSplit(date.fromisoformat(window["train_start"]), cutoff, end)
        frame = self.features(snapshot, "window", last + timedelta(days=1), start=day_start(cutoff), end=day_start(end))
        return self._scorecard(artifact, frame, split, {"evaluation_rows": len(frame)}, last + timedelta(days=1)).to_dict()

    def predict(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None,
                ids: list[str] | None = None, limit: int | None = None) -> list[Prediction]:
        """Attempts named by ``ids``, or the checkout attempts of the 7 days before ``as_of``
        (default: the day after the data), riskiest first."""
        artifact: FraudArtifact = loaded.model
        as_of = as_of or data_range(snapshot)[1] + timedelta(days=1)
        if ids:
            frame = self.features(snapshot, "ids", as_of, ids=list(ids))
            require_ids(list(ids), set(frame["transaction_id"]), "transaction ids")
        else:
            frame = self.features(snapshot, "window", as_of, start=day_start(as_of - timedelta(days=RECENT_DAYS)),
                                  end=day_start(as_of))
            if frame.empty:
                raise ModelError(f"no checkout attempts in the {RECENT_DAYS} days before {as_of}")
        p_sup, z = artifact.scorer.components(frame)
        p = artifact.scorer.combine(p_sup, z)
        order = np.argsort(-p, kind="stable")
        if limit and not ids:
            order = order[:limit]
        # explanations (one extra prediction per feature) only for the attempts returned
        frame, p, p_sup, z = frame.iloc[order].reset_index(drop=True), p[order], p_sup[order], z[order]
        assert artifact.scorer.classifier is not None
        contributions = artifact.scorer.classifier.contributions(frame)
        scores = FraudScorer.risk_score(p)
        decision = decisions(scores, artifact.review_threshold, artifact.block_threshold)
        levels = fraud_risk_levels(scores, decision)
        rc = money_params()["rc"]
        out = []
        for i, row in enumerate(frame.itertuples(index=False)):
            score = int(scores[i])
            factors = fraud_risk_factors(row, float(z[i]), contributions[i])
            out.append(Prediction(
                entity_id=str(row.transaction_id), probability=float(p[i]), risk_level=str(levels[i]),
                confidence=confidence_from_margin(float(p[i])), key_risk_factors=factors,
                recommended_actions=fraud_actions(str(decision[i]), factors),
                details={
                    "risk_score": score, "decision": str(decision[i]), "review_threshold": artifact.review_threshold,
                    "block_threshold": artifact.block_threshold, "supervised_probability": round(float(p_sup[i]), 4),
                    "anomaly_z": round(float(z[i]), 3),
                    "platform_risk_score": None if pd.isna(row.platform_risk_score) else float(row.platform_risk_score),
                    "customer_id": row.customer_id, "created_at": pd.Timestamp(row.created_at).isoformat(),
                    "amount": round(float(row.amount_rc), 2), "currency": rc, "payment_method": row.payment_method,
                    "explanation_method": "rule checks, then single-feature ablation of the supervised model",
                },
            ))
        return out


#: the decisions in order; :func:`decision_codes` indexes this
DECISIONS = ("approve", "review", "block")


def decision_codes(score: np.ndarray, review_threshold: int, block_threshold: int) -> np.ndarray:
    """Index into :data:`DECISIONS` for each 0-99 score: block at or above the block threshold,
    else review at or above the review threshold, else approve."""
    score = np.asarray(score)
    return np.where(score >= block_threshold, 2, np.where(score >= review_threshold, 1, 0)).astype(np.int8)


def decisions(score: np.ndarray, review_threshold: int, block_threshold: int) -> np.ndarray:
    """approve / review / block for each 0-99 score."""
    return labels_of(DECISIONS, decision_codes(score, review_threshold, block_threshold))


def fraud_risk_level_codes(score: np.ndarray, decision_code: np.ndarray) -> np.ndarray:
    """Index into :data:`RISK_LEVELS` (low, medium, high, critical): critical when blocked, high
    when reviewed, medium from a score of 30, else low."""
    score, decision_code = np.asarray(score), np.asarray(decision_code)
    return np.where(decision_code == 2, 3, np.where(decision_code == 1, 2, (score >= 30).astype(np.int8))).astype(np.int8)


def fraud_risk_levels(score: np.ndarray, decision: np.ndarray) -> np.ndarray:
    """critical when blocked, high when reviewed, medium from a score of 30, else low."""
    decision = np.asarray(decision)
    code = np.where(decision == "block", 2, np.where(decision == "review", 1, 0))
    return labels_of(RISK_LEVELS, fraud_risk_level_codes(score, code))


FEATURE_LABELS = {
    "amount_rc": "amount", "card_age_days": "card age", "new_card": "card never seen before",
    "months_to_expiry": "months to card expiry", "foreign_card": "card issued abroad",
    "ip_card_mismatch": "IP country differs from card country", "ip_abroad": "paying from abroad",
    "local_hour": "hour of day", "weekday": "weekday", "account_age_hours": "account age",
    "is_guest": "guest checkout", "from_campaign": "campaign visit", "direct_visit": "no referrer",
    "has_discount": "discount code", "customer_attempts_1h": "customer attempts in the last hour",
    "customer_attempts_24h": "customer attempts in the last day", "card_changes_24h": "cards switched in the last day",
    "ip_attempts_1h": "attempts from this IP in the last hour", "ip_attempts_24h": "attempts from this IP in the last day",
    "failures_1h": "declines in the last hour", "prior_successes": "earlier successful payments",
    "prior_alerts": "earlier fraud alerts", "platform_risk_score": "the platform's own risk score",
    "payment_method": "payment method", "card_brand": "card brand",
    "billing_reason": "billing reason", "country_code": "country", "device_class": "device",
    "acquisition_channel": "acquisition channel",
}


def _flag(value: Any) -> bool:
    """True for a set 0/1 flag; missing (e.g. no card on a PayPal payment) is not set."""
    return bool(pd.notna(value) and value)


def fraud_risk_factors(row: Any, anomaly_z: float, contributions: list[tuple[str, float]]) -> list[RiskFactor]:
    factors: list[RiskFactor] = []
    if row.card_changes_24h >= 2:
        factors.append(RiskFactor("card_testing", 0.9, "Several different cards tried by this customer in a day",
                                  int(row.card_changes_24h)))
    if row.customer_attempts_1h >= 2:
        factors.append(RiskFactor("velocity", 0.8, "Several attempts by this customer in the last hour",
                                  int(row.customer_attempts_1h)))
    if _flag(row.ip_card_mismatch):
        factors.append(RiskFactor("country_mismatch", 0.7, "IP country differs from the card's issuing country", 1))
    if pd.notna(row.account_age_hours) and row.account_age_hours < 24:
        factors.append(RiskFactor("new_account", 0.6, "Account created less than a day before the payment",
                                  round(float(row.account_age_hours), 2)))
    if _flag(row.new_card):
        factors.append(RiskFactor("new_card", 0.5, "Card never seen on the platform before",
                                  None if pd.isna(row.card_age_days) else int(row.card_age_days)))
    if anomaly_z >= 2:
        factors.append(RiskFactor("unusual_pattern", 0.5, "Unusual combination of amount, timing and history "
                                  "(isolation forest)", round(anomaly_z, 2)))
    named = {f.factor for f in factors}
    for feature, delta in contributions:
        key = f"model:{feature}"
        if key in named:
            continue
        value = getattr(row, feature, None)
        factors.append(RiskFactor(key, round(min(delta, 1.0), 3),
                                  f"{FEATURE_LABELS.get(feature, feature)} raises the supervised fraud probability "
                                  f"by {delta:.1%} against a typical attempt",
                                  None if value is None or (isinstance(value, float) and np.isnan(value))
                                  else (value if isinstance(value, str) else round(float(value), 3))))
    return sorted(factors, key=lambda f: -f.importance)


def fraud_actions(decision: str, factors: list[RiskFactor]) -> list[Action]:
    names = {f.factor for f in factors}
    if decision == "block":
        actions = [Action("block", "urgent", [
            "Decline the payment",
            "Block the card and the IP for 24 hours",
            "Flag the account for review before any further purchase",
        ], expected_impact=0.9)]
        if "card_testing" in names:
            actions[0].actions.append("Rate-limit checkout attempts for this account and IP (card testing)")
        return actions
    if decision == "review":
        return [Action("manual_review", "high", [
            "Hold the payment for manual review before fulfilment",
            "Step up with 3-D Secure authentication",
            "Check the billing and IP country against the card",
        ], expected_impact=0.6)]
    return [Action("approve", "low", ["Approve; keep monitoring velocity on this account"], expected_impact=None)]
