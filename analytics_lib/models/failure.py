"""Payment failure: the probability that a payment attempt fails, and the renewals at risk.

The model scores an attempt from what is known when it is made (method, provider, country,
amount in the reporting currency, card age and expiry, attempt number, local hour and weekday,
billing reason, and the customer's earlier outcomes); the features are the named queries in
``sql/failure.sql``. It is a gradient-boosted tree model (``HistGradientBoostingClassifier``)
fitted on the attempts before the cutoff except the last months, early-stopped and calibrated on
those last months (time-respecting), and scored on the attempts after the cutoff next to a
baseline: the failure rate of the attempt's payment method and attempt number in the training
window.

Beyond single attempts, :func:`renewals_at_risk` prices the subscription renewals due in the next
30 days: predicted failure probability x amount, and the share of it that dunning is expected to
recover at the recovery rate observed in history.

This module also holds the pieces the three classifiers share (:class:`TabularClassifier`,
:class:`RateBaseline`, money parameters, time arithmetic); ``churn`` and ``fraud`` import them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import roc_curve
from threadpoolctl import threadpool_limits

from analytics_lib.config import get_settings
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
from analytics_lib.models.registry import LoadedModel, feature_fingerprint
from analytics_lib.models.scoring import (
    Scorecard,
    TimeSplit,
    beats,
    classification_metrics,
    confidence_from_margin,
    risk_level,
    risk_levels,
)
from analytics_lib.warehouse import Snapshot
from analytics_lib.warehouse.currency import CURRENCY_EXPONENTS

# =============================================================================================
# Shared by the classifiers (churn, payment_failure, fraud)
# =============================================================================================
#: rows per predict_proba call: the trees are walked one at a time over a whole batch, so a batch
#: small enough to stay in the CPU cache (32,768 rows x 30 features = 8 MB) scored 1M fraud rows
#: in 4.5 s against 6.2 s at 131,072 rows; much smaller batches pay sklearn's per-call overhead
PREDICT_BATCH_ROWS = 32_768
#: Python threads that score batches in parallel (each with single-threaded OpenMP)
MODEL_THREADS = max(1, min(2, os.cpu_count() or 1))


def money_params(reporting_currency: str | None = None) -> dict[str, Any]:
    """Bound parameters every feature query uses to convert money: $rc, $codes, $scales."""
    settings = get_settings()
    codes = sorted(CURRENCY_EXPONENTS)
    return {
        "rc": (reporting_currency or settings.reporting_currency).upper(),
        "codes": codes,
        "scales": [float(10 ** CURRENCY_EXPONENTS[c]) for c in codes],
    }


def local_params() -> dict[str, Any]:
    settings = get_settings()
    return {"tz": settings.timezone, "home": settings.home_country}


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day`` (the instant "as of" a date means here)."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def add_months(day: date, months: int) -> date:
    """Calendar months later (or earlier), the day clipped to the month's length."""
    m = day.month - 1 + months
    year, month = day.year + m // 12, m % 12 + 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


def feature_table(snapshot: Snapshot, model: str, name: str, params: dict[str, Any]) -> pa.Table:
    """Run a named feature query and fetch it as an Arrow table (about 10x faster than ``.df()``
    for a million rows of text columns); batch scoring encodes straight from it."""
    sql = sqlfeatures.load_sql(model)[name]
    return snapshot.con.sql(sql, params=params).to_arrow_table()


def feature_frame(snapshot: Snapshot, model: str, name: str, params: dict[str, Any]) -> pd.DataFrame:
    """:func:`feature_table` as a DataFrame (numbers with gaps arrive as floats with NaN)."""
    return feature_table(snapshot, model, name, params).to_pandas()


def check_rates(frame: pd.DataFrame | pa.Table, what: str) -> None:
    """A feature row whose money could not be converted is an error naming currency and date."""
    if isinstance(frame, pa.Table):
        if "missing_rate" not in frame.column_names:
            return
        flags = pc.fill_null(frame["missing_rate"], False)
        if not pc.any(flags).as_py():
            return
        row = frame.slice(pc.index(flags, True).as_py(), 1).to_pylist()[0]
    else:
        if "missing_rate" not in frame:
            return
        mask = frame["missing_rate"].fillna(False).astype(bool)
        if not mask.any():
            return
        row = frame[mask].iloc[0]
    raise ModelError(f"{what}: no fx rate for {row['currency']} on "
                     f"{pd.Timestamp(row['created_at']).date()}; load fx_rates first")


@dataclass
class TabularClassifier:
    """A fitted classifier over named numeric and categorical feature columns.

    Categories are encoded with the vocabulary seen in training (unseen values become missing,
    which the trees route like any missing value). ``reference`` holds a typical value per
    feature (training median or most frequent category) for :meth:`contributions`.
    """

    estimator: Any
    numeric: list[str]
    categorical: dict[str, list[str]]
    reference: dict[str, float]
    calibration: str = "none"

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def matrix(self, frame: pd.DataFrame | pa.Table) -> np.ndarray:
        """Feature frame (or Arrow table) -> float matrix in the fitted column order (vectorised)."""
        return encode_matrix(frame, self.numeric, self.categorical)

    def predict_proba(self, frame: pd.DataFrame | pa.Table | np.ndarray,
                      batch_rows: int = PREDICT_BATCH_ROWS) -> np.ndarray:
        """Probability of the positive class, scored in batches."""
        x = frame if isinstance(frame, np.ndarray) else self.matrix(frame)
        return batched_positive_proba(self.estimator, x, batch_rows)

    def contributions(self, frame: pd.DataFrame, top: int = 3, min_delta: float = 0.005) -> list[list[tuple[str, float]]]:
        """Per row, the features that raise the probability most, by single-feature ablation.

        For each row and feature, the feature is replaced by its typical value (training median
        or most frequent category) and the row is scored again; the drop in probability is that
        feature's contribution. It is exact for this model and this row (no approximation of
        the trees), but measures each feature alone, not their interactions.
        """
        x = self.matrix(frame)
        n, k = x.shape
        out: list[list[tuple[str, float]]] = []
        if n == 0:
            return out
        ref = np.array([self.reference[f] for f in self.features], dtype=float)
        names = self.features
        chunk = max(1, 200_000 // k)  # bounded memory: chunk x k x k cells at a time
        for lo in range(0, n, chunk):
            xc = x[lo: lo + chunk]
            m = len(xc)
            base = self.predict_proba(xc)
            stacked = np.repeat(xc[None, :, :], k, axis=0)  # feature x row x column
            for j in range(k):
                stacked[j, :, j] = ref[j]
            delta = base[None, :] - self.predict_proba(stacked.reshape(k * m, k)).reshape(k, m)
            for i in range(m):
                order = np.argsort(-delta[:, i], kind="stable")[:top]
                out.append([(names[j], float(delta[j, i])) for j in order if delta[j, i] >= min_delta])
        return out


def encode_matrix(frame: pd.DataFrame | pa.Table, numeric: list[str], categorical: dict[str, list[str]]) -> np.ndarray:
    """Numeric columns as floats (missing = NaN) and categories as their index in the training
    vocabulary (unseen or missing = NaN), in one float matrix. Takes a DataFrame or, without a
    detour through pandas, an Arrow table."""
    n = len(frame) if isinstance(frame, pd.DataFrame) else frame.num_rows
    x = np.empty((n, len(numeric) + len(categorical)), dtype=np.float64)
    for j, col in enumerate(numeric):
        x[:, j] = _floats(frame[col])
    for j, (col, cats) in enumerate(categorical.items(), start=len(numeric)):
        values = frame[col] if isinstance(frame, pa.Table) else pa.array(frame[col], from_pandas=True)
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        codes = pc.index_in(values, value_set=pa.array(cats, pa.string()))
        x[:, j] = codes.to_numpy(zero_copy_only=False)
    return x


def _floats(values: pd.Series | pa.ChunkedArray) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def batched_positive_proba(estimator: Any, x: np.ndarray, batch_rows: int = PREDICT_BATCH_ROWS) -> np.ndarray:
    """``predict_proba[:, 1]`` in batches (see :func:`run_batched`)."""
    return run_batched(lambda part: estimator.predict_proba(part)[:, 1], x, batch_rows)


def run_batched(score: Any, x: np.ndarray, batch_rows: int = PREDICT_BATCH_ROWS) -> np.ndarray:
    """``score(batch) -> 1-d array`` over row batches, spread over :data:`MODEL_THREADS` threads.

    Each batch runs with OpenMP limited to one thread: tree traversal releases the GIL, so
    batches run in parallel, and no OpenMP team busy-waits for a core another process holds
    (measured here on a shared 2-core machine: a 2-thread OpenMP fit or predict ran 2-10x slower
    than a single thread).
    """
    out = np.empty(len(x), dtype=np.float64)
    bounds = [(lo, min(lo + batch_rows, len(x))) for lo in range(0, len(x), batch_rows)]

    def run(bound: tuple[int, int]) -> None:
        lo, hi = bound
        with threadpool_limits(1, user_api="openmp"):
            out[lo:hi] = score(x[lo:hi])

    if len(bounds) <= 1 or MODEL_THREADS <= 1:
        for b in bounds:
            run(b)
    else:
        with ThreadPoolExecutor(MODEL_THREADS) as pool:
            list(pool.map(run, bounds))
    return out


#: gradient boosting defaults shared by the classifiers (overridable per model as train params)
HGB_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1, "max_iter": 300, "max_leaf_nodes": 31, "min_samples_leaf": 40,
    "l2_regularization": 1.0, "n_iter_no_change": 30, "random_state": 0,
}


def fit_tabular_classifier(frame: pd.DataFrame, y: np.ndarray, numeric: list[str], categorical: list[str],
                           fit_rows: np.ndarray, calibration_rows: np.ndarray, method: str = "sigmoid",
                           hgb_params: dict[str, Any] | None = None) -> TabularClassifier:
    """Gradient boosting fitted on ``fit_rows``, early-stopped and calibrated on the later
    ``calibration_rows`` (both boolean masks over ``frame``; the calibration rows must come
    after the fit rows in time, so the probabilities are calibrated the way they will be used:
    on data the trees have not seen, later than what they learned from)."""
    y = np.asarray(y, dtype=int)
    fit_rows, calibration_rows = np.asarray(fit_rows, bool), np.asarray(calibration_rows, bool)
    for name, mask in (("fitting", fit_rows), ("calibration", calibration_rows)):
        labels = y[mask]
        if len(labels) == 0 or labels.min() == labels.max():
            raise ModelError(f"the {name} rows ({int(mask.sum())}) do not hold both outcomes; "
                             "use more history or an earlier cutoff")
    vocab = {c: sorted(frame.loc[fit_rows, c].dropna().astype(str).unique().tolist()) for c in categorical}
    x = encode_matrix(frame, numeric, vocab)
    params = {**HGB_DEFAULTS, **(hgb_params or {})}
    is_cat = np.array([False] * len(numeric) + [True] * len(categorical))
    hgb = HistGradientBoostingClassifier(categorical_features=is_cat, early_stopping=True, **params)
    with threadpool_limits(1, user_api="openmp"):  # see run_batched
        hgb.fit(x[fit_rows], y[fit_rows], X_val=x[calibration_rows], y_val=y[calibration_rows])
        if method == "none":
            estimator: Any = hgb
        else:
            estimator = CalibratedClassifierCV(FrozenEstimator(hgb), method=method)
            estimator.fit(x[calibration_rows], y[calibration_rows])
    reference: dict[str, float] = {}
    for j, col in enumerate(numeric):
        values = x[fit_rows, j]
        reference[col] = float(np.nanmedian(values)) if np.isfinite(values).any() else np.nan
    for j, col in enumerate(categorical, start=len(numeric)):
        codes = x[fit_rows, j]
        codes = codes[np.isfinite(codes)]
        reference[col] = float(np.bincount(codes.astype(int)).argmax()) if len(codes) else np.nan
    return TabularClassifier(estimator, list(numeric), vocab, reference, method)


@dataclass
class RateBaseline:
    """Outcome rate per key from the training window, falling back to coarser keys, then the
    overall rate: the simple baseline a classifier must beat."""

    keys: list[list[str]]  # finest first, e.g. [["payment_method", "attempt"], ["payment_method"]]
    tables: list[dict[tuple, float]]
    overall: float
    min_rows: int = 30

    @classmethod
    def fit(cls, frame: pd.DataFrame, y: np.ndarray, keys: list[list[str]], min_rows: int = 30) -> RateBaseline:
        data = frame.assign(_y=np.asarray(y, dtype=float))
        tables = []
        for key in keys:
            g = data.groupby(key, dropna=False)["_y"].agg(["mean", "size"])
            g = g[g["size"] >= min_rows]
            tables.append({(k if isinstance(k, tuple) else (k,)): float(v) for k, v in g["mean"].items()})
        return cls(keys, tables, float(data["_y"].mean()), min_rows)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.full(len(frame), np.nan)
        for key, table in zip(self.keys, self.tables, strict=True):
            todo = np.isnan(out)
            if not todo.any():
                break
            tuples = pd.MultiIndex.from_frame(frame.loc[todo, key].astype(object)).to_flat_index()
            out[todo] = np.array([table.get(t, np.nan) for t in tuples], dtype=float)
        return np.where(np.isnan(out), self.overall, out)

    def describe(self) -> str:
        return " -> ".join(" x ".join(k) for k in self.keys) + " -> overall"


def curves(y: np.ndarray, p: np.ndarray, points: int = 60) -> dict[str, Any]:
    """Chart data for a scorecard: the ROC curve (thinned to about ``points`` points) and the
    cumulative lift per decile (positive rate in the top 10 %, 20 %, ... over the overall rate)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    out: dict[str, Any] = {"roc": [], "lift_by_decile": []}
    if len(y) == 0 or y.min() == y.max():
        return out
    fpr, tpr, _ = roc_curve(y, p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).round().astype(int))
    out["roc"] = [[round(float(a), 5), round(float(b), 5)] for a, b in zip(fpr[keep], tpr[keep], strict=True)]
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(y[order])
    for decile in range(1, 11):
        k = max(1, round(len(y) * decile / 10))
        out["lift_by_decile"].append(round(float(hits[k - 1] / k / y.mean()), 4))
    return out


def scorecard_for(name: str, split: TimeSplit, sizes: dict[str, int], y: np.ndarray, p_model: np.ndarray,
                  p_baseline: np.ndarray, baseline_name: str, primary: str, notes: list[str],
                  extra: dict[str, Any] | None = None) -> Scorecard:
    """Model and baseline scored with the same metrics on the same evaluation rows."""
    if len(y) == 0:
        raise ModelError(f"{name}: no evaluation rows after the cutoff {split.cutoff}; "
                         "choose an earlier cutoff or load more recent data")
    metrics = classification_metrics(y, p_model)
    baseline = classification_metrics(y, p_baseline)
    comparison = {m: beats(metrics, baseline, m, higher_is_better=(m != "brier"))
                  for m in ("roc_auc", "pr_auc", "brier", "lift_top_decile")}
    return Scorecard(
        model=name, split=split.to_dict(), sizes=sizes, metrics=metrics, baseline_name=baseline_name,
        baseline=baseline, beats_baseline=comparison[primary], primary_metric=primary, notes=notes,
        extra={"beats_by_metric": comparison, "mean_predicted": float(np.mean(p_model)),
               "baseline_mean_predicted": float(np.mean(p_baseline)),
               "curves": {"model": curves(y, p_model), "baseline": curves(y, p_baseline)}, **(extra or {})},
    )


def comparison_table(scorecard: dict[str, Any] | Scorecard) -> pd.DataFrame:
    """A scorecard's headline metrics, model next to baseline (one row per metric)."""
    card = scorecard.to_dict() if isinstance(scorecard, Scorecard) else scorecard
    names = [m for m in ("roc_auc", "pr_auc", "brier", "lift_top_decile", "precision_at_100", "base_rate", "rows",
                         "positives") if m in card["metrics"]]
    table = pd.DataFrame({"model": [card["metrics"][m] for m in names],
                          card["baseline_name"]: [card["baseline"].get(m) for m in names]}, index=names)
    beats_by = card.get("extra", {}).get("beats_by_metric", {})
    table["model better"] = [beats_by.get(m) for m in names]
    table.index.name = "metric"
    return table


def require_ids(requested: list[str], found: set[str], what: str) -> None:
    missing = [i for i in requested if i not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise ModelError(f"unknown {what}: {shown}")


def last_data_day(snapshot: Snapshot) -> date:
    return data_range(snapshot)[1]


def as_instant(value: date | datetime) -> datetime:
    """A day means its midnight UTC; an instant is kept (a naive one is read as UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return day_start(value)


# =============================================================================================
# The payment failure model
# =============================================================================================
NUMERIC = [
    "amount_rc", "attempt_number", "card_age_days", "months_to_expiry", "local_hour", "weekday",
    "foreign_card", "ip_abroad", "ip_card_mismatch", "home_country", "account_age_days", "prior_attempts",
    "prior_failures", "prior_failure_rate", "failures_30d", "days_since_failure",
]
CATEGORICAL = [
    "payment_method", "provider", "country_code", "currency", "card_brand", "billing_reason",
    "device_class", "last_failure_reason",
]
#: low / medium / high / critical failure risk (attempts fail ~10 % of the time on average)
FAILURE_RISK_THRESHOLDS = (0.15, 0.35, 0.6)
UPCOMING_DAYS = 30
NIGHT_HOURS = range(0, 6)


@dataclass
class FailureArtifact:
    """What the registry stores for payment_failure."""

    classifier: TabularClassifier
    baseline: RateBaseline
    recovery_rate: float | None
    trained_through: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RenewalsAtRisk:
    """Renewals due in a window, priced by their predicted failure probability."""

    as_of: date
    days: int
    renewals: pd.DataFrame  # one row per renewal: ids, due date, amount_rc, probability, at_risk
    recovery_rate: float | None
    currency: str

    @property
    def amount_due(self) -> float:
        return float(self.renewals["amount_rc"].sum()) if len(self.renewals) else 0.0

    @property
    def amount_at_risk(self) -> float:
        return float(self.renewals["amount_at_risk"].sum()) if len(self.renewals) else 0.0

    @property
    def expected_recovered(self) -> float:
        return self.amount_at_risk * (self.recovery_rate or 0.0)

    @property
    def expected_lost(self) -> float:
        return self.amount_at_risk - self.expected_recovered

    def summary(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(), "days": self.days, "currency": self.currency,
            "renewals": int(len(self.renewals)), "amount_due": round(self.amount_due, 2),
            "expected_failures": round(float(self.renewals["probability"].sum()), 2) if len(self.renewals) else 0.0,
            "amount_at_risk": round(self.amount_at_risk, 2),
            "dunning_recovery_rate": self.recovery_rate,
            "expected_recovered_by_dunning": round(self.expected_recovered, 2),
            "expected_lost": round(self.expected_lost, 2),
        }


class PaymentFailureModel(Model):
    name: ClassVar[str] = "payment_failure"
    description: ClassVar[str] = "Probability that a payment attempt fails; renewals at risk in the next 30 days"
    feature_version: ClassVar[str] = "failure-1-" + feature_fingerprint(
        [*NUMERIC, *CATEGORICAL], "categories from training vocabulary; amount in reporting currency; "
        "history strictly before the attempt; hour/weekday in business time zone")

    # -- split ------------------------------------------------------------------------------
    def default_split(self, snapshot: Snapshot) -> TimeSplit:
        first, last = data_range(snapshot)
        end = last + timedelta(days=1)
        cutoff = add_months(last.replace(day=1), -2)
        if cutoff <= first + timedelta(days=90):
            raise ModelError(f"payment_failure needs about 6 months of transactions; the warehouse "
                             f"holds {first} .. {last}")
        return TimeSplit(first, cutoff, end)

    # -- features ---------------------------------------------------------------------------
    def feature_table(self, snapshot: Snapshot, candidates: str, **params: Any) -> pa.Table:
        """Stage candidates with the named query (``window``, ``attempts``, ``ids``,
        ``upcoming_renewals``) and return their feature rows as an Arrow table."""
        sqlfeatures.query(snapshot, "failure", f"candidates_{candidates}", params)
        table = feature_table(snapshot, "failure", "features", {**money_params(), **local_params()})
        check_rates(table, "payment_failure features")
        return table

    def features(self, snapshot: Snapshot, candidates: str, **params: Any) -> pd.DataFrame:
        """:meth:`feature_table` as a DataFrame."""
        return self.feature_table(snapshot, candidates, **params).to_pandas()

    # -- batch scoring ----------------------------------------------------------------------
    def score(self, loaded: LoadedModel | FailureArtifact, snapshot: Snapshot, start: date | datetime,
              end: date | datetime) -> pd.DataFrame:
        """Failure probability of every payment attempt created in ``[start, end)`` (days are
        UTC midnights), whatever its status: features in SQL, fetched as Arrow, encoded and scored
        in vectorised batches. One row per attempt, in time order: ids, time, method, amount in
        the reporting currency, ``probability``, ``risk_level`` and ``amount_at_risk``
        (probability x amount). Explanations and actions are left to :meth:`predict`, for the
        attempts someone asks about."""
        artifact: FailureArtifact = loaded.model if isinstance(loaded, LoadedModel) else loaded
        table = self.feature_table(snapshot, "attempts", start=as_instant(start), end=as_instant(end))
        p = artifact.classifier.predict_proba(table)
        amount = _floats(table["amount_rc"])
        return pd.DataFrame({
            "transaction_id": table["transaction_id"].to_numpy(zero_copy_only=False),
            "customer_id": table["customer_id"].to_numpy(zero_copy_only=False),
            "subscription_id": table["subscription_id"].to_numpy(zero_copy_only=False),
            "created_at": table["created_at"].to_pandas(),
            "payment_method": table["payment_method"].to_numpy(zero_copy_only=False),
            "amount_rc": amount,
            "probability": p,
            "risk_level": risk_levels(p, FAILURE_RISK_THRESHOLDS),
            "amount_at_risk": p * amount,
        })

    # -- training ---------------------------------------------------------------------------
    def train(self, snapshot: Snapshot, split: TimeSplit, **params: Any) -> TrainResult:
        calibration_months = int(params.pop("calibration_months", 2))
        method = str(params.pop("calibration", "sigmoid"))
        hgb_params = {k: params.pop(k) for k in list(params) if k in HGB_DEFAULTS}
        if params:
            raise ModelError(f"unknown payment_failure parameters: {', '.join(sorted(params))}")
        frame = self.features(snapshot, "window", start=day_start(split.train_start),
                              end=day_start(split.evaluation_end))
        rows = self.partition(frame, split, calibration_months)
        train, fit, calib, evaluation = rows["train"], rows["fit"], rows["calibration"], rows["evaluation"]
        y = frame["failed"].to_numpy(dtype=int)
        if not train.any():
            raise ModelError(f"payment_failure: no attempts before the cutoff {split.cutoff}")
        clf = fit_tabular_classifier(frame, y, NUMERIC, CATEGORICAL, fit, calib, method, hgb_params)
        base_frame = _baseline_keys(frame)
        baseline = RateBaseline.fit(base_frame[train], y[train], [["payment_method", "attempt"], ["payment_method"]])
        recovery = dunning_recovery_rate(snapshot, split.train_start, split.cutoff)
        artifact = FailureArtifact(clf, baseline, recovery["recovery_rate"], split.cutoff.isoformat(),
                                   {"calibration_months": calibration_months})
        scorecard = self._scorecard(artifact, frame[evaluation], split, {
            "train_rows": int(train.sum()), "fit_rows": int(fit.sum()), "calibration_rows": int(calib.sum()),
            "evaluation_rows": int(evaluation.sum())}, recovery)
        return TrainResult(model=artifact, scorecard=scorecard, features=clf.features,
                           params={"calibration_months": calibration_months, "calibration": method, **hgb_params},
                           rows=scorecard.sizes, split=split)

    @staticmethod
    def partition(frame: pd.DataFrame, split: TimeSplit, calibration_months: int = 2) -> dict[str, np.ndarray]:
        """Row masks by attempt time: training = before the cutoff (the trees learn from its
        earlier part, the last ``calibration_months`` early-stop and calibrate them), evaluation =
        from the cutoff to the evaluation end."""
        created = frame["created_at"]
        train = (created >= day_start(split.train_start)).to_numpy() & (created < day_start(split.cutoff)).to_numpy()
        evaluation = (created >= day_start(split.cutoff)).to_numpy() & (created < day_start(split.evaluation_end)).to_numpy()
        calib = train & (created >= day_start(add_months(split.cutoff, -calibration_months))).to_numpy()
        return {"train": train, "fit": train & ~calib, "calibration": calib, "evaluation": evaluation}

    def _scorecard(self, artifact: FailureArtifact, evaluation: pd.DataFrame, split: TimeSplit,
                   sizes: dict[str, int], recovery: dict[str, Any]) -> Scorecard:
        y = evaluation["failed"].to_numpy(dtype=int)
        p = artifact.classifier.predict_proba(evaluation)
        pb = artifact.baseline.predict(_baseline_keys(evaluation))
        return scorecard_for(
            self.name, split, sizes, y, p, pb, "failure rate by method x attempt number", "roc_auc",
            notes=[
                "label: latest status 'failed' (declines, provider errors and fraud blocks); pending attempts excluded",
                f"model: gradient boosting on {len(artifact.classifier.features)} attempt features, "
                f"calibrated ({artifact.classifier.calibration}) on the last "
                f"{artifact.meta.get('calibration_months')} training months",
                f"baseline: training-window failure rate by {artifact.baseline.describe()}",
            ],
            extra={"dunning": recovery, "calibration": artifact.classifier.calibration},
        )

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, loaded: LoadedModel, snapshot: Snapshot) -> dict[str, Any]:
        artifact: FailureArtifact = loaded.model
        window = loaded.metadata.training_window
        cutoff = date.fromisoformat(window["cutoff"])
        end = last_data_day(snapshot) + timedelta(days=1)
        if end <= cutoff:
            raise ModelError(f"no attempts after the cutoff {cutoff} in the warehouse yet")
        split = TimeSplit(date.fromisoformat(window["train_start"]), cutoff, end)
        frame = self.features(snapshot, "window", start=day_start(cutoff), end=day_start(end))
        recovery = dunning_recovery_rate(snapshot, split.train_start, cutoff)
        return self._scorecard(artifact, frame, split, {"evaluation_rows": len(frame)}, recovery).to_dict()

    # -- prediction -------------------------------------------------------------------------
    def predict(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None,
                ids: list[str] | None = None, limit: int | None = None) -> list[Prediction]:
        """Attempts named by ``ids`` (transaction ids, or subscription ids for their next renewal),
        or else every renewal due in the 30 days after ``as_of`` (default: the day after the data)."""
        artifact: FailureArtifact = loaded.model
        as_of = as_of or last_data_day(snapshot) + timedelta(days=1)
        if ids:
            # transaction ids score the attempt as it was made; subscription ids their next renewal
            attempts = self.features(snapshot, "ids", ids=list(ids)).assign(kind="attempt")
            rest = [i for i in ids if i not in set(attempts["transaction_id"])]
            frames = [attempts]
            if rest:
                renewals = self.features(snapshot, "upcoming_renewals", as_of=day_start(as_of), days=UPCOMING_DAYS)
                frames.append(renewals[renewals["subscription_id"].isin(rest)].assign(kind="upcoming_renewal"))
                require_ids(rest, set(frames[-1]["subscription_id"]),
                            f"transaction ids, or subscriptions with a renewal due in the {UPCOMING_DAYS} days "
                            f"after {as_of}")
            frame = pd.concat([f for f in frames if len(f)], ignore_index=True)
        else:
            frame = self.features(snapshot, "upcoming_renewals", as_of=day_start(as_of), days=UPCOMING_DAYS)
            if frame.empty:
                raise ModelError(f"no subscription renewals due in the {UPCOMING_DAYS} days after {as_of}")
            frame = frame.assign(kind="upcoming_renewal")
        p = artifact.classifier.predict_proba(frame)
        order = np.argsort(-p, kind="stable")
        if limit and not ids:
            order = order[:limit]
        frame = frame.iloc[order].reset_index(drop=True)
        p = p[order]
        contributions = artifact.classifier.contributions(frame)
        rc = money_params()["rc"]
        out = []
        for i, row in enumerate(frame.itertuples(index=False)):
            prob = float(p[i])
            factors = failure_risk_factors(row, contributions[i])
            amount = float(row.amount_rc)
            details = {
                "kind": row.kind, "transaction_id": row.transaction_id, "customer_id": row.customer_id,
                "subscription_id": row.subscription_id, "attempt_at": pd.Timestamp(row.created_at).isoformat(),
                "amount": round(amount, 2), "currency": rc, "payment_method": row.payment_method,
                "provider": row.provider, "attempt_number": int(row.attempt_number),
                "months_to_expiry": None if pd.isna(row.months_to_expiry) else int(row.months_to_expiry),
                "amount_at_risk": round(prob * amount, 2),
                "dunning_recovery_rate": artifact.recovery_rate,
                "expected_recovered_by_dunning": round(prob * amount * (artifact.recovery_rate or 0.0), 2),
                "explanation_method": "single-feature ablation against the training median / mode",
            }
            out.append(Prediction(
                entity_id=str(row.transaction_id if row.kind == "attempt" else row.subscription_id),
                probability=prob, risk_level=risk_level(prob, FAILURE_RISK_THRESHOLDS),
                confidence=confidence_from_margin(prob), key_risk_factors=factors,
                recommended_actions=failure_actions(prob, row, factors), details=details,
            ))
        return out


def _baseline_keys(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "payment_method": frame["payment_method"].astype(object).to_numpy(),
        "attempt": np.minimum(frame["attempt_number"].to_numpy(dtype=int), 4),
    })


FEATURE_LABELS = {
    "amount_rc": "amount", "attempt_number": "dunning retry number", "card_age_days": "card age",
    "months_to_expiry": "months to card expiry", "local_hour": "hour of day", "weekday": "weekday",
    "foreign_card": "card issued abroad", "ip_abroad": "paying from abroad", "home_country": "home market",
    "account_age_days": "account age", "prior_attempts": "earlier attempts", "prior_failures": "earlier failures",
    "prior_failure_rate": "earlier failure rate", "failures_30d": "failures in the last 30 days",
    "days_since_failure": "days since the last failure", "ip_card_mismatch": "IP and card countries differ",
    "payment_method": "payment method",
    "provider": "provider", "country_code": "country", "currency": "currency", "card_brand": "card brand",
    "billing_reason": "billing reason", "device_class": "device", "last_failure_reason": "last failure reason",
}


def failure_risk_factors(row: Any, contributions: list[tuple[str, float]]) -> list[RiskFactor]:
    """Rule factors a payments team recognises, then the model's strongest contributions."""
    factors: list[RiskFactor] = []
    mte = row.months_to_expiry
    if pd.notna(mte) and mte < 0:
        factors.append(RiskFactor("expired_card", 0.9, "The card on file has expired", int(mte)))
    elif pd.notna(mte) and mte <= 1:
        factors.append(RiskFactor("expiring_card", 0.7, "The card on file expires this month or next", int(mte)))
    if row.last_failure_reason == "insufficient_funds" and pd.notna(row.days_since_failure) and row.days_since_failure <= 30:
        factors.append(RiskFactor("recent_insufficient_funds", 0.7,
                                  "The last payment failed for insufficient funds in the last 30 days",
                                  round(float(row.days_since_failure), 1)))
    if row.attempt_number > 1:
        factors.append(RiskFactor("dunning_retry", 0.6, "A retry of a failed renewal: the cause usually persists",
                                  int(row.attempt_number)))
    if row.local_hour in NIGHT_HOURS:
        factors.append(RiskFactor("night_attempt", 0.3, "Attempted between 00:00 and 06:00 local time", int(row.local_hour)))
    if pd.notna(row.foreign_card) and row.foreign_card:
        factors.append(RiskFactor("foreign_card", 0.4, "Card issued outside the buyer's country", row.card_brand))
    if pd.notna(row.card_age_days) and row.card_age_days < 7:
        factors.append(RiskFactor("new_card", 0.4, "Card first seen less than a week ago", int(row.card_age_days)))
    named = {f.factor for f in factors}
    for feature, delta in contributions:
        key = f"model:{feature}"
        if key in named:
            continue
        value = getattr(row, feature, None)
        factors.append(RiskFactor(key, round(min(delta, 1.0), 3),
                                  f"{FEATURE_LABELS.get(feature, feature)} raises the failure probability by "
                                  f"{delta:.1%} against a typical attempt", _plain(value)))
    return sorted(factors, key=lambda f: -f.importance)


def failure_actions(prob: float, row: Any, factors: list[RiskFactor]) -> list[Action]:
    names = {f.factor for f in factors}
    actions: list[Action] = []
    if "expired_card" in names or "expiring_card" in names or row.last_failure_reason == "expired_card":
        actions.append(Action("card_updater", "high", [
            "Request fresh card details through the network account updater before the charge",
            "Ask the customer to update the card (in-app banner and e-mail)",
        ], expected_impact=0.45))
    if "recent_insufficient_funds" in names or (row.attempt_number > 1 and row.last_failure_reason == "insufficient_funds"):
        actions.append(Action("retry_timing", "high", [
            "Retry after the usual payday (1st or 15th) or in 3-5 days, not immediately",
            "Schedule the retry in daytime local hours, not between 00:00 and 06:00",
        ], expected_impact=0.25))
    elif prob >= FAILURE_RISK_THRESHOLDS[0] and row.local_hour in NIGHT_HOURS:
        actions.append(Action("retry_timing", "medium", ["Move the charge to daytime local hours"], expected_impact=0.1))
    if prob >= FAILURE_RISK_THRESHOLDS[1]:
        actions.append(Action("alternative_method", "medium", [
            "Offer an alternative method (wallet, PayPal or bank transfer where available)",
            "Prompt the customer to add a backup payment method",
        ], expected_impact=0.3))
    if row.payment_method == "card" and ("foreign_card" in names or "new_card" in names
                                         or row.last_failure_reason == "authentication_required"):
        actions.append(Action("three_d_secure", "medium", [
            "Request 3-D Secure authentication for this card",
        ], expected_impact=0.2))
    return actions


def _plain(value: Any) -> float | str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return round(float(value), 3)
    return str(value)


# =============================================================================================
# Renewals at risk and dunning recovery
# =============================================================================================
def dunning_recovery_rate(snapshot: Snapshot, start: date | None = None, end: date | None = None,
                          grace_days: int = 14) -> dict[str, Any]:
    """Share of failed first renewal charges that a dunning retry later captured.

    Failures in ``[start, end)`` (default: all history) whose dunning could still be running at
    the data's end (failed within ``grace_days`` of it) are left out.
    """
    first, last = data_range(snapshot)
    start, end = start or first, end or last + timedelta(days=1)
    row = sqlfeatures.query(snapshot, "failure", "dunning_recovery", {
        "start": day_start(start), "end": day_start(end), "grace_days": grace_days}).iloc[0]
    rate = None if pd.isna(row["recovery_rate"]) else float(row["recovery_rate"])
    return {"failed_renewals": int(row["failed_renewals"]), "recovered": int(row["recovered"]),
            "recovery_rate": rate, "window": [start.isoformat(), end.isoformat()]}


def renewals_at_risk(snapshot: Snapshot, loaded: LoadedModel, as_of: date | None = None,
                     days: int = UPCOMING_DAYS) -> RenewalsAtRisk:
    """Renewals of active subscriptions due in the ``days`` after ``as_of``: each one's failure
    probability x amount (reporting currency), and the share dunning is expected to recover
    (recovery rate observed in all history before ``as_of``)."""
    artifact: FailureArtifact = loaded.model
    as_of = as_of or last_data_day(snapshot) + timedelta(days=1)
    model = PaymentFailureModel()
    frame = model.features(snapshot, "upcoming_renewals", as_of=day_start(as_of), days=days)
    p = artifact.classifier.predict_proba(frame) if len(frame) else np.zeros(0)
    renewals = pd.DataFrame({
        "subscription_id": frame["subscription_id"].to_numpy(), "customer_id": frame["customer_id"].to_numpy(),
        "due_at": frame["created_at"].to_numpy(), "payment_method": frame["payment_method"].to_numpy(),
        "amount_rc": frame["amount_rc"].to_numpy(dtype=float), "probability": p,
    })
    renewals["amount_at_risk"] = renewals["probability"] * renewals["amount_rc"]
    renewals = renewals.sort_values("amount_at_risk", ascending=False, kind="stable").reset_index(drop=True)
    first, _ = data_range(snapshot)
    recovery = dunning_recovery_rate(snapshot, first, as_of) if as_of > first else {"recovery_rate": None}
    return RenewalsAtRisk(as_of, days, renewals, recovery["recovery_rate"], money_params()["rc"])
