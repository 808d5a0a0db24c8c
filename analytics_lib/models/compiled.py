"""Compiled scoring of fitted scikit-learn tree ensembles: the numbers sklearn gives, bit for bit,
for a fraction of the CPU.

Scoring a million checkout attempts spends most of its model time walking trees. sklearn walks
one tree at a time over a whole batch of rows (each row's features fetched again for each tree),
and a gradient-boosting prediction first re-encodes the categorical columns; an isolation forest
adds a joblib call and two gathers per tree. The kernels here (numba, compiled once and cached on
disk) walk every tree for one row while its features sit in the CPU cache, and fold the
categorical encoding into a per-split lookup table; the shallow isolation trees are laid out as
complete binary trees, so four rows walk them side by side without branches. Measured on the
fraud model (80 boosted trees of 15 leaves, 25 isolation trees of depth 7) for 1M attempts on one
core: boosting 4.7 -> 1.7 s of CPU, isolation 1.2 -> 0.6 s; payment failure's deeper trees (31
leaves) gain about a fifth (docs/performance.md).

What is compiled, and what is not:

- :func:`boosting`: a fitted binary :class:`~sklearn.ensemble.HistGradientBoostingClassifier`
  (log loss), alone or inside a :class:`~sklearn.calibration.CalibratedClassifierCV` with
  sigmoid or isotonic calibration of a frozen or prefit model. The trees, the categorical splits
  (with sklearn's ordinal encoding of the category values folded in), the missing-value
  directions and the order of the sum are sklearn's; the link and the calibrators are sklearn's
  own functions applied to the compiled raw score.
- :func:`isolation`: a fitted :class:`~sklearn.ensemble.IsolationForest` (dense input) whose
  trees are at most :data:`MAX_ISOLATION_DEPTH` deep.

Anything else (another loss, multiclass, a calibrator of another kind, a model from a scikit-learn
whose internals differ) gets ``None``, and the caller uses sklearn's own ``predict_proba`` /
``score_samples``. The tests (tests/test_models_compiled.py) require equal arrays, not close
ones, against sklearn on data with missing values, unseen and non-integer categories.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy.special import expit

#: category values a compiled categorical split can look up (sklearn allows at most 255 bins)
CATEGORY_SLOTS = 256

_cache: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@numba.njit(nogil=True, cache=True)
def _boosting_raw(x: np.ndarray, roots: np.ndarray, column: np.ndarray, threshold: np.ndarray, left: np.ndarray,
                  right: np.ndarray, leaf: np.ndarray, missing_left: np.ndarray, table_row: np.ndarray,
                  table: np.ndarray, value: np.ndarray, baseline: float, out: np.ndarray) -> None:  # pragma: no cover
    """Raw boosting score of each row of ``x``: the baseline plus every tree's leaf value, in
    tree order (sklearn's sum). A node with ``table_row >= 0`` is a categorical split: an
    integer category value in [0, 256) looks its direction up in ``table[table_row]``; a missing,
    negative, fractional or larger value is missing (sklearn's encoder maps values it did not see
    in training to missing)."""
    for i in range(x.shape[0]):
        acc = baseline
        for t in range(roots.shape[0]):
            node = roots[t]
            while not leaf[node]:
                v = x[i, column[node]]
                row = table_row[node]
                if np.isnan(v):
                    go_left = missing_left[node] != 0
                elif row >= 0:
                    if v >= 0 and v < table.shape[1] and v == np.floor(v):
                        go_left = table[row, np.int64(v)] != 0
                    else:
                        go_left = missing_left[node] != 0
                else:
                    go_left = v <= threshold[node]
                node = left[node] if go_left else right[node]
            acc += value[node]
        out[i] = acc


@numba.njit(nogil=True, cache=True, inline="always")
def _goes_right(v: float, threshold: float, missing_right: int) -> int:  # pragma: no cover
    return (v > threshold) | (np.isnan(v) & (missing_right != 0))


@numba.njit(nogil=True, cache=True)
def _isolation_depths(x: np.ndarray, columns: np.ndarray, fill: np.ndarray, depth: int, feature: np.ndarray,
                      threshold: np.ndarray, missing_right: np.ndarray, path: np.ndarray,
                      out: np.ndarray) -> None:  # pragma: no cover
    """Sum over the trees of (depth of the row's leaf + average path length of the leaf's samples
    - 1), sklearn's order. Tree features index ``columns`` of ``x``; a missing value is replaced
    by ``fill`` first, and values are compared as float32 (the forest's input type).

    The trees are complete binary trees of ``depth`` levels (a heap: the children of slot s are
    2s + 1 and 2s + 2; a leaf above the last level continues left to the bottom), so a step is
    arithmetic, not a branch, and four rows walk each tree side by side."""
    nf = columns.shape[0]
    inner = 2 ** depth - 1
    v = np.empty((4, nf))
    n = x.shape[0]
    for i0 in range(0, n, 4):
        m = min(4, n - i0)
        for k in range(4):
            r = i0 + k if k < m else i0  # a short last group repeats its first row
            for j in range(nf):
                a = x[r, columns[j]]
                if np.isnan(a):
                    a = fill[j]
                v[k, j] = np.float64(np.float32(a))
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for t in range(feature.shape[0]):
            s0 = 0
            s1 = 0
            s2 = 0
            s3 = 0
            for _ in range(depth):
                s0 = 2 * s0 + 1 + _goes_right(v[0, feature[t, s0]], threshold[t, s0], missing_right[t, s0])
                s1 = 2 * s1 + 1 + _goes_right(v[1, feature[t, s1]], threshold[t, s1], missing_right[t, s1])
                s2 = 2 * s2 + 1 + _goes_right(v[2, feature[t, s2]], threshold[t, s2], missing_right[t, s2])
                s3 = 2 * s3 + 1 + _goes_right(v[3, feature[t, s3]], threshold[t, s3], missing_right[t, s3])
            a0 += path[t, s0 - inner]
            a1 += path[t, s1 - inner]
            a2 += path[t, s2 - inner]
            a3 += path[t, s3 - inner]
        out[i0] = a0
        if m > 1:
            out[i0 + 1] = a1
        if m > 2:
            out[i0 + 2] = a2
        if m > 3:
            out[i0 + 3] = a3


@dataclass(frozen=True)
class CompiledBoosting:
    """The trees of a binary gradient-boosting classifier as flat node arrays (all trees in one),
    plus what turns the raw score into the probability sklearn returns."""

    roots: np.ndarray
    column: np.ndarray  # input column of each split
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    missing_left: np.ndarray
    table_row: np.ndarray  # row of ``table`` for a categorical split, -1 for a numeric one
    table: np.ndarray  # per categorical split, go-left (1) or right (0) for each category value
    value: np.ndarray
    baseline: float
    n_features: int
    calibration: tuple[Any, ...] = ()  # calibrators of a CalibratedClassifierCV, in its order

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The boosting model's decision function for the rows of ``x`` (columns as in fit)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix of {self.n_features} columns, got shape {x.shape}")
        out = np.empty(x.shape[0], dtype=np.float64)
        _boosting_raw(x, self.roots, self.column, self.threshold, self.left, self.right, self.leaf,
                      self.missing_left, self.table_row, self.table, self.value, self.baseline, out)
        return out

    def positive_proba(self, x: np.ndarray) -> np.ndarray:
        """``predict_proba(x)[:, 1]`` of the fitted estimator (calibrated, if it is)."""
        raw = self.raw(x)
        if not self.calibration:
            return expit(raw)
        total = np.zeros(len(raw))
        for calibrator in self.calibration:  # CalibratedClassifierCV: the mean of its classifiers
            p = calibrator.predict(raw)
            p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0  # sklearn's own clip, kept for identical numbers
            total += p
        total /= len(self.calibration)
        return total


@dataclass(frozen=True)
class CompiledIsolation:
    """The trees of an isolation forest as complete binary trees of one depth (one row per tree),
    with each leaf's path length at the bottom level."""

    depth: int
    feature: np.ndarray  # trees x (2^depth - 1): the forest's input feature of each split
    threshold: np.ndarray  # +inf where a leaf above the bottom continues left
    missing_right: np.ndarray
    path: np.ndarray  # trees x 2^depth: the leaf's depth + average path length of its samples - 1
    denominator: float
    n_features: int

    def anomaly(self, x: np.ndarray, columns: np.ndarray | list[int] | None = None,
                fill: np.ndarray | None = None) -> np.ndarray:
        """``-score_samples`` of the forest (higher = more unusual) for the rows of ``x``: the
        forest's features are the ``columns`` of ``x`` (default: all, in order), and a missing
        value becomes its ``fill`` (default: left missing) before the float32 conversion sklearn
        makes."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        columns = np.arange(x.shape[1]) if columns is None else np.asarray(columns)
        if x.ndim != 2 or len(columns) != self.n_features or (len(columns) and columns.max() >= x.shape[1]):
            raise ValueError(f"expected {self.n_features} forest features, got columns {list(columns)} of {x.shape}")
        fill = np.full(self.n_features, np.nan) if fill is None else np.asarray(fill, dtype=np.float64)
        depths = np.empty(x.shape[0], dtype=np.float64)
        _isolation_depths(x, columns.astype(np.int64), fill, self.depth, self.feature, self.threshold,
                          self.missing_right, self.path, depths)
        # sklearn's last step, as it writes it (a forest of one-sample trees scores 1)
        denominator = np.float64(self.denominator)
        return 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))


def boosting(estimator: Any) -> CompiledBoosting | None:
    """The compiled form of a fitted classifier (made once per estimator object), or None when it
    is not one this module compiles."""
    return _cached(estimator, _compile_boosting)


def isolation(forest: Any) -> CompiledIsolation | None:
    """The compiled form of a fitted isolation forest, or None."""
    return _cached(forest, _compile_isolation)


def _cached(estimator: Any, build: Any) -> Any:
    with _lock:
        try:
            if estimator in _cache:
                return _cache[estimator]
        except TypeError:  # not weakly referenceable: compile it every time
            return _safe(build, estimator)
        compiled = _safe(build, estimator)
        if compiled is not None:
            _warm(compiled)  # compile (or load) the kernel here, not in two scoring threads at once
        _cache[estimator] = compiled
        return compiled


def _safe(build: Any, estimator: Any) -> Any:
    try:
        return build(estimator)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return None  # internals of another scikit-learn: sklearn scores it itself


def _warm(compiled: CompiledBoosting | CompiledIsolation) -> None:
    x = np.zeros((1, compiled.n_features))
    if isinstance(compiled, CompiledBoosting):
        compiled.raw(x)
    else:
        compiled.anomaly(x)


def _compile_boosting(estimator: Any) -> CompiledBoosting | None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier

    if isinstance(estimator, HistGradientBoostingClassifier):
        return _boosting_trees(estimator)
    if not isinstance(estimator, CalibratedClassifierCV) or len(getattr(estimator, "classes_", [])) != 2:
        return None
    trees, calibrators = None, []
    for cc in estimator.calibrated_classifiers_:
        inner = cc.estimator
        inner = getattr(inner, "estimator", inner) if type(inner).__name__ == "FrozenEstimator" else inner
        if cc.method not in ("sigmoid", "isotonic") or len(cc.calibrators) != 1:
            return None
        if not isinstance(inner, HistGradientBoostingClassifier) or not np.array_equal(inner.classes_, cc.classes):
            return None
        if trees is None:
            trees, first = _boosting_trees(inner), inner
            if trees is None:
                return None
        elif inner is not first:  # an ensemble of differently fitted models: not compiled
            return None
        calibrators.append(cc.calibrators[0])
    if trees is None:
        return None
    return CompiledBoosting(**{**trees.__dict__, "calibration": tuple(calibrators)})


def _boosting_trees(hgb: Any) -> CompiledBoosting | None:
    from sklearn._loss.loss import HalfBinomialLoss

    if hgb.n_trees_per_iteration_ != 1 or not isinstance(hgb._loss, HalfBinomialLoss) or len(hgb.classes_) != 2:
        return None
    n_features = int(hgb.n_features_in_)
    order, categories = _input_columns(hgb, n_features)
    if order is None:
        return None
    known, known_row = hgb._bin_mapper.make_known_categories_bitsets()
    predictors = [p[0] for p in hgb._predictors]
    sizes = [len(p.nodes) for p in predictors]
    starts = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
    nodes = np.concatenate([p.nodes for p in predictors])
    offset = np.repeat(starts, sizes)
    feature = nodes["feature_idx"].astype(np.int64)
    leaf = nodes["is_leaf"].astype(np.uint8)
    missing_left = nodes["missing_go_to_left"].astype(np.uint8)
    table_row = np.full(len(nodes), -1, dtype=np.int64)
    rows: list[np.ndarray] = []
    for p, start in zip(predictors, starts, strict=True):
        for j in np.flatnonzero(p.nodes["is_categorical"] & ~p.nodes["is_leaf"].astype(bool)):
            node = p.nodes[j]
            f = int(node["feature_idx"])
            ordinal = categories.get(f)
            if ordinal is None:
                return None
            row = np.full(CATEGORY_SLOTS, node["missing_go_to_left"], dtype=np.uint8)
            for value, code in ordinal.items():  # input value -> the encoder's code -> its bin
                seen = _bit(known[known_row[f]], code)
                row[value] = _bit(p.raw_left_cat_bitsets[node["bitset_idx"]], code) if seen else node["missing_go_to_left"]
            table_row[start + j] = len(rows)
            rows.append(row)
    table = np.array(rows, dtype=np.uint8) if rows else np.zeros((1, CATEGORY_SLOTS), dtype=np.uint8)
    return CompiledBoosting(
        roots=starts, column=order[feature], threshold=nodes["num_threshold"].astype(np.float64),
        left=(nodes["left"] + offset).astype(np.int64), right=(nodes["right"] + offset).astype(np.int64),
        leaf=leaf, missing_left=missing_left, table_row=table_row, table=table,
        value=nodes["value"].astype(np.float64), baseline=float(np.asarray(hgb._baseline_prediction).ravel()[0]),
        n_features=n_features)


def _bit(bitset: np.ndarray, k: int) -> int:
    return int((int(bitset[k // 32]) >> (k % 32)) & 1)


def _input_columns(hgb: Any, n_features: int) -> tuple[np.ndarray | None, dict[int, dict[int, int]]]:
    """Where each feature the trees split on comes from: its input column, and for a categorical
    one, the encoder's code of each input value (sklearn puts the categorical columns first and
    encodes their values in sorted order; a value it did not see becomes missing)."""
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    pre = getattr(hgb, "_preprocessor", None)
    if pre is None:
        if hgb.is_categorical_ is not None and np.any(hgb.is_categorical_):
            return None, {}
        return np.arange(n_features), {}
    order: list[int] = []
    categories: dict[int, dict[int, int]] = {}
    for _, transformer, columns in pre.transformers_:
        picked = np.flatnonzero(columns) if np.asarray(columns).dtype == bool else np.asarray(columns, dtype=int)
        if len(picked) == 0 or transformer == "drop":
            continue
        if isinstance(transformer, OrdinalEncoder):
            if not (isinstance(transformer.unknown_value, float) and np.isnan(transformer.unknown_value)):
                return None, {}
            if not np.isnan(transformer.encoded_missing_value):
                return None, {}
            for column, cats in zip(picked, transformer.categories_, strict=True):
                codes = {}
                for code, value in enumerate(np.asarray(cats, dtype=np.float64)):
                    if np.isnan(value):
                        continue  # missing is missing either way
                    if value != int(value) or not 0 <= value < CATEGORY_SLOTS:
                        return None, {}
                    codes[int(value)] = code
                categories[len(order)] = codes
                order.append(int(column))
        elif isinstance(transformer, FunctionTransformer) or transformer == "passthrough":
            order.extend(int(c) for c in picked)
        else:
            return None, {}
    if sorted(order) != list(range(n_features)):
        return None, {}
    return np.array(order, dtype=np.int64), categories


#: deepest isolation trees compiled (sklearn's default of 256 samples grows them 8 deep); a
#: complete tree doubles with each level
MAX_ISOLATION_DEPTH = 10


def _compile_isolation(forest: Any) -> CompiledIsolation | None:
    from sklearn.ensemble import IsolationForest
    from sklearn.ensemble._iforest import _average_path_length

    if not isinstance(forest, IsolationForest):
        return None
    n_features = int(forest.n_features_in_)
    subsample = forest._max_features != n_features
    trees = [e.tree_ for e in forest.estimators_]
    depth = max(int(t.max_depth) for t in trees)
    if depth > MAX_ISOLATION_DEPTH:
        return None
    inner = 2 ** depth - 1
    feature = np.zeros((len(trees), inner), dtype=np.int64)
    threshold = np.full((len(trees), inner), np.inf)
    missing_right = np.zeros((len(trees), inner), dtype=np.uint8)
    path = np.zeros((len(trees), inner + 1))
    for k, (tree, features) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
        lengths = forest._decision_path_lengths[k] + forest._average_path_length_per_tree[k] - 1.0
        stack = [(0, 0)]  # (sklearn node, heap slot)
        while stack:
            node, slot = stack.pop()
            if tree.children_left[node] < 0:
                while slot < inner:  # a leaf above the bottom: the padding goes left
                    slot = 2 * slot + 1
                path[k, slot - inner] = lengths[node]
                continue
            f = int(tree.feature[node])
            feature[k, slot] = int(np.asarray(features)[f]) if subsample else f
            threshold[k, slot] = tree.threshold[node]
            missing_right[k, slot] = 0 if tree.missing_go_to_left[node] else 1
            stack += [(int(tree.children_left[node]), 2 * slot + 1), (int(tree.children_right[node]), 2 * slot + 2)]
    return CompiledIsolation(
        depth=depth, feature=feature, threshold=threshold, missing_right=missing_right, path=path,
        denominator=float(len(forest.estimators_) * _average_path_length([forest._max_samples])[0]),
        n_features=n_features)
