"""What the three classifiers (churn, payment_failure, fraud) share.

:class:`TabularClassifier` (gradient boosting over named numeric and categorical columns, encoded
with the training vocabulary, scored in cache-sized batches on two threads, explained by
single-feature ablation), :func:`fit_tabular_classifier`, the :class:`RateBaseline` a classifier
must beat, scorecard helpers, the money and local-time parameters every feature query binds, and
time arithmetic.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

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
from analytics_lib.models.base import ModelError, data_range
from analytics_lib.models.scoring import Scorecard, TimeSplit, beats, classification_metrics
from analytics_lib.warehouse import Snapshot
from analytics_lib.warehouse.currency import CURRENCY_EXPONENTS

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


def candidates_feature_table(snapshot: Snapshot, model: str, candidates: str, candidate_params: dict[str, Any],
                             params: dict[str, Any], name: str = "features",
                             disabled_optimizers: str = "") -> pa.Table:
    """The feature query ``name`` of ``model`` over the rows of its query ``candidates``, in one
    statement: the candidates query becomes the feature query's materialized CTE
    ``<model>_candidates``. (Writing 1M candidates to a temporary table first, for the feature
    query to read, took 1.7 s of CPU where selecting them took 0.5-0.7 s.)

    ``disabled_optimizers``: DuckDB optimizers to switch off for this statement only (the
    connection's own setting is restored after it); see :data:`FRAUD_DISABLED_OPTIMIZERS` in
    ``fraud.py`` for why one model does."""
    queries = sqlfeatures.load_sql(model)
    body = queries[name]
    if not body.startswith("WITH "):
        raise ValueError(f"{model}.{name} must start with WITH to take the candidates as a CTE")
    shared = set(candidate_params) & set(params)
    if shared:
        raise ValueError(f"parameters bound twice: {', '.join(sorted(shared))}")
    sql = f"WITH {model}_candidates AS MATERIALIZED (\n{queries[candidates]}\n),\n{body[len('WITH '):]}"
    if not disabled_optimizers:
        return snapshot.con.sql(sql, params={**candidate_params, **params}).to_arrow_table()
    con = snapshot.con
    before = con.sql("SELECT current_setting('disabled_optimizers')").fetchall()[0][0]
    merged = ",".join(dict.fromkeys(o for o in f"{before},{disabled_optimizers}".split(",") if o.strip()))
    con.execute(f"SET disabled_optimizers = '{merged}'")
    try:
        return con.sql(sql, params={**candidate_params, **params}).to_arrow_table()
    finally:
        con.execute(f"SET disabled_optimizers = '{before}'")


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
        """Probability of the positive class, scored in batches. An Arrow table is encoded batch
        by batch in the scoring threads (Arrow's kernels release the GIL), so the encoding runs on
        both cores instead of before them on one."""
        if isinstance(frame, pa.Table):
            return map_batches(lambda lo, hi: (self.positive_proba(self.matrix(frame.slice(lo, hi - lo))),),
                               frame.num_rows, batch_rows)[0]
        x = frame if isinstance(frame, np.ndarray) else self.matrix(frame)
        return batched_positive_proba(self.estimator, x, batch_rows)

    def positive_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class for an encoded matrix, in one call (no batching)."""
        return positive_proba_of(self.estimator, x)

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
        x[:, j] = as_floats(frame[col])
    for j, (col, cats) in enumerate(categorical.items(), start=len(numeric)):
        values = frame[col] if isinstance(frame, pa.Table) else pa.array(frame[col], from_pandas=True)
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        codes = pc.index_in(values, value_set=pa.array(cats, pa.string()))
        x[:, j] = codes.to_numpy(zero_copy_only=False)
    return x


def as_floats(values: pd.Series | pa.ChunkedArray) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def text_column(values: pa.ChunkedArray) -> pd.Series:
    """An Arrow text column as a pandas column: pandas' ``str`` dtype keeps the Arrow buffers, so
    this is the column a DataFrame would infer from the values as Python strings, without making
    a Python object per row (0.2 s of CPU per million ids)."""
    return values.to_pandas()


def label_column(labels: tuple[str, ...], codes: np.ndarray) -> pd.Series:
    """``labels[code]`` for every code as a pandas ``str`` column (the same column as from an object
    array of the labels, built as an Arrow take instead of a Python object per row)."""
    return pa.array(labels, pa.string()).take(pa.array(np.asarray(codes))).to_pandas()


def positive_proba_of(estimator: Any, x: np.ndarray) -> np.ndarray:
    """``estimator.predict_proba(x)[:, 1]``, computed by the compiled trees of
    :mod:`analytics_lib.models.compiled` when the estimator is one they compile (the same
    numbers; for the fraud model's small trees a third of sklearn's CPU, for payment failure's
    larger ones four fifths), else by sklearn."""
    # imported here: numba loads when a model first scores, not when the package is imported
    from analytics_lib.models import compiled

    trees = compiled.boosting(estimator)
    return trees.positive_proba(x) if trees is not None else estimator.predict_proba(x)[:, 1]


def batched_positive_proba(estimator: Any, x: np.ndarray, batch_rows: int = PREDICT_BATCH_ROWS) -> np.ndarray:
    """``predict_proba[:, 1]`` in batches (see :func:`run_batched`)."""
    return run_batched(lambda part: positive_proba_of(estimator, part), x, batch_rows)


def run_batched(score: Any, x: np.ndarray, batch_rows: int = PREDICT_BATCH_ROWS) -> np.ndarray:
    """``score(batch) -> 1-d array`` over row batches of ``x`` (see :func:`map_batches`)."""
    return map_batches(lambda lo, hi: (score(x[lo:hi]),), len(x), batch_rows)[0]


def map_batches(fn: Any, rows: int, batch_rows: int = PREDICT_BATCH_ROWS, outputs: int = 1) -> tuple[np.ndarray, ...]:
    """``fn(lo, hi) -> tuple of outputs 1-d arrays`` for the rows ``[lo, hi)`` of each batch of
    ``rows`` rows, spread over :data:`MODEL_THREADS` threads; returns the ``outputs`` float arrays
    over all rows.

    Each batch runs with OpenMP limited to one thread: tree traversal releases the GIL, so
    batches run in parallel, and no OpenMP team busy-waits for a core another process holds
    (measured here on a shared 2-core machine: a 2-thread OpenMP fit or predict ran 2-10x slower
    than a single thread). The limit is per thread, so each worker sets it once when it starts
    (setting it costs about 3 ms of CPU: once per batch it was 0.1 s per million rows and model).
    """
    out = tuple(np.empty(rows, dtype=np.float64) for _ in range(outputs))
    bounds = [(lo, min(lo + batch_rows, rows)) for lo in range(0, rows, batch_rows)]

    def run(bound: tuple[int, int]) -> None:
        lo, hi = bound
        for target, values in zip(out, fn(lo, hi), strict=True):
            target[lo:hi] = values

    if len(bounds) <= 1 or MODEL_THREADS <= 1:
        with threadpool_limits(1, user_api="openmp"):
            for b in bounds:
                run(b)
    else:
        # the pool's threads end with it, so their limit needs no restoring
        with ThreadPoolExecutor(MODEL_THREADS, initializer=threadpool_limits, initargs=(1, "openmp")) as pool:
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
