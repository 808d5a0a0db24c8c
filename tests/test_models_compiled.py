"""The compiled tree kernels give sklearn's numbers exactly (equal arrays, not close ones)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
)
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from analytics_lib.models import compiled
from analytics_lib.models.classifier import TabularClassifier, batched_positive_proba

N_NUMERIC, CATEGORY_SIZES = 4, (3, 7)
#: sklearn's binning of the infinite values below warns; the values are there on purpose
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _data(n: int, seed: int, unseen: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Numeric columns with gaps and infinities, categorical codes with gaps; ``unseen`` adds
    codes training never had, fractional, negative and too large ones."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, N_NUMERIC + len(CATEGORY_SIZES)))
    x[:, :N_NUMERIC] = rng.normal(size=(n, N_NUMERIC)) * [1, 10, 100, 0.1]
    x[:, 1] = np.round(x[:, 1])  # an integer-valued column: values fall on both sides of every split
    for j, k in enumerate(CATEGORY_SIZES, start=N_NUMERIC):
        x[:, j] = rng.integers(0, k, size=n)
    x[rng.random((n, x.shape[1])) < 0.08] = np.nan
    x[rng.random(n) < 0.01, 2] = np.inf
    x[rng.random(n) < 0.01, 0] = -np.inf
    logit = (x[:, 0] > 0.3) * 1.5 + np.nan_to_num(x[:, 2], posinf=50, neginf=-50) / 80 + (x[:, 4] == 2) * 2.0 \
        - (x[:, 5] % 3 == 1) * 1.2 + np.isnan(x[:, 3]) * 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit - 0.5)))).astype(int)
    if unseen:
        cat = x[:, N_NUMERIC:]
        pick = rng.random(cat.shape)
        cat[pick < 0.05] = 9  # never seen in training
        cat[(pick >= 0.05) & (pick < 0.08)] = 1.5
        cat[(pick >= 0.08) & (pick < 0.10)] = -1
        cat[(pick >= 0.10) & (pick < 0.12)] = 300
    return x, y


def _at_thresholds(hgb: HistGradientBoostingClassifier, like: np.ndarray) -> np.ndarray:
    """Rows whose numeric values sit exactly on the model's split thresholds (where ``<=``
    and ``<`` part ways)."""
    rows = []
    for predictor in hgb._predictors:
        nodes = predictor[0].nodes
        for node in nodes[(nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)]:
            row = like[len(rows) % len(like)].copy()
            row[node["feature_idx"] if hgb._preprocessor is None else _numeric_input(hgb, node["feature_idx"])] = \
                node["num_threshold"]
            rows.append(row)
    return np.array(rows)


def _numeric_input(hgb: HistGradientBoostingClassifier, feature: int) -> int:
    """The input column of a numeric feature (sklearn puts categorical features first)."""
    n_cat = int(np.sum(hgb.is_categorical_))
    return int(np.flatnonzero(~hgb.is_categorical_)[feature - n_cat])


def _hgb(categorical: bool = True, **params: object) -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    x, y = _data(4000, seed=1)
    mask = np.array([False] * N_NUMERIC + [True] * len(CATEGORY_SIZES)) if categorical else None
    if not categorical:
        x = x[:, :N_NUMERIC]
    hgb = HistGradientBoostingClassifier(categorical_features=mask, max_iter=40, max_leaf_nodes=15,
                                         learning_rate=0.2, random_state=0, **params).fit(x, y)
    test, _ = _data(3000, seed=2, unseen=categorical)
    test = test if categorical else test[:, :N_NUMERIC]
    return hgb, np.vstack([test, _at_thresholds(hgb, test)])


@pytest.mark.parametrize("categorical", [True, False])
def test_boosting_gives_sklearns_probabilities(categorical: bool) -> None:
    hgb, x = _hgb(categorical)
    trees = compiled.boosting(hgb)
    assert trees is not None
    expected = hgb.predict_proba(x)[:, 1]
    assert np.array_equal(trees.positive_proba(x), expected)
    assert np.array_equal(trees.raw(x), hgb.decision_function(x))
    # the same numbers from any memory layout, and from a model read back from disk
    assert np.array_equal(trees.positive_proba(np.asfortranarray(x)), expected)
    assert np.array_equal(trees.positive_proba(x[::2]), expected[::2])
    copy = pickle.loads(pickle.dumps(hgb))
    assert np.array_equal(compiled.boosting(copy).positive_proba(x), expected)


def test_boosting_routes_unseen_and_odd_categories_as_missing() -> None:
    hgb, x = _hgb(True)
    odd = np.isin(x[:, N_NUMERIC:], [9, 1.5, -1, 300]).any(axis=1)
    assert odd.sum() > 500  # the comparison above covers them; make sure they are there
    assert np.array_equal(compiled.boosting(hgb).positive_proba(x[odd]), hgb.predict_proba(x[odd])[:, 1])


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrated_boosting_gives_sklearns_probabilities(method: str) -> None:
    hgb, x = _hgb(True)
    xc, yc = _data(2000, seed=3)
    calibrated = CalibratedClassifierCV(FrozenEstimator(hgb), method=method).fit(xc, yc)
    trees = compiled.boosting(calibrated)
    assert trees is not None and len(trees.calibration) == 1
    assert np.array_equal(trees.positive_proba(x), calibrated.predict_proba(x)[:, 1])


def test_tabular_classifier_scores_with_the_compiled_trees() -> None:
    hgb, x = _hgb(True)
    classifier = TabularClassifier(hgb, ["a", "b", "c", "d"], {"e": [], "f": []}, {})
    expected = hgb.predict_proba(x)[:, 1]
    assert np.array_equal(classifier.positive_proba(x), expected)
    assert np.array_equal(batched_positive_proba(hgb, x, batch_rows=777), expected)


def test_what_is_not_compiled_is_left_to_sklearn() -> None:
    x, y = _data(1500, seed=4)
    x = np.nan_to_num(x[:, :N_NUMERIC], posinf=9, neginf=-9)
    three = np.where(x[:, 0] > 1, 2, y)
    assert compiled.boosting(HistGradientBoostingClassifier(max_iter=5).fit(x, three)) is None  # multiclass
    assert compiled.boosting(HistGradientBoostingRegressor(max_iter=5).fit(x, y)) is None
    assert compiled.boosting(LogisticRegression().fit(x, y)) is None
    # cross-validated calibration: several differently fitted models, averaged
    cv = CalibratedClassifierCV(HistGradientBoostingClassifier(max_iter=5), cv=3).fit(x, y)
    assert compiled.boosting(cv) is None
    # calibration of a model that is not gradient boosting
    frozen = CalibratedClassifierCV(FrozenEstimator(LogisticRegression().fit(x, y))).fit(x, y)
    assert compiled.boosting(frozen) is None
    # and the classifier scores them with sklearn
    classifier = TabularClassifier(cv, ["a", "b", "c", "d"], {}, {})
    assert np.array_equal(classifier.positive_proba(x), cv.predict_proba(x)[:, 1])


def test_boosting_refuses_a_matrix_of_another_width() -> None:
    hgb, x = _hgb(True)
    with pytest.raises(ValueError, match="6 columns"):
        compiled.boosting(hgb).positive_proba(x[:, :5])


def _forest_data(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3000, 5)) * [1, 5, 50, 0.01, 1000]


@pytest.mark.parametrize("params", [{}, {"max_features": 0.6, "max_samples": 64, "n_estimators": 30}])
def test_isolation_gives_sklearns_scores(params: dict) -> None:
    forest = IsolationForest(random_state=0, **params).fit(_forest_data(5).astype(np.float32))
    trees = compiled.isolation(forest)
    assert trees is not None
    x = _forest_data(6)
    split = [t.tree_ for t in forest.estimators_]
    on_threshold = np.array([[t.threshold[0]] * 5 for t in split])  # exactly on a root split
    x = np.vstack([x, on_threshold, on_threshold.astype(np.float32)])
    expected = -forest.score_samples(x.astype(np.float32))
    assert np.array_equal(trees.anomaly(x), expected)
    for rows in (0, 1, 2, 3, 5, 3001):  # rows are walked four at a time
        assert np.array_equal(trees.anomaly(x[:rows]), expected[:rows]), rows


def test_isolation_value_equal_to_a_split_goes_left() -> None:
    """sklearn's isolation thresholds are almost never float32 values, so put one there: a value
    equal to it goes left (``<=``), as in sklearn."""
    forest = IsolationForest(n_estimators=5, random_state=0).fit(_forest_data(5).astype(np.float32))
    roots = []
    for estimator in forest.estimators_:
        state = estimator.tree_.__getstate__()
        nodes = state["nodes"].copy()
        nodes["threshold"][0] = 0.5
        estimator.tree_.__setstate__({**state, "nodes": nodes})
        roots.append(int(nodes["feature"][0]))
    x = _forest_data(6)[:40]
    for i, feature in enumerate(roots):
        x[i, feature] = 0.5
    assert np.array_equal(compiled.isolation(forest).anomaly(x), -forest.score_samples(x.astype(np.float32)))


def test_isolation_trees_too_deep_to_compile_are_left_to_sklearn() -> None:
    forest = IsolationForest(n_estimators=3, max_samples=3000, random_state=0).fit(_forest_data(5))
    assert max(e.tree_.max_depth for e in forest.estimators_) > compiled.MAX_ISOLATION_DEPTH
    assert compiled.isolation(forest) is None


def test_isolation_reads_its_columns_and_fills_gaps_like_the_fraud_scorer() -> None:
    forest = IsolationForest(n_estimators=25, max_samples=128, random_state=0).fit(_forest_data(7))
    wide = np.column_stack([np.full(3000, 7.0), _forest_data(8)[:, ::-1], np.arange(3000.0)])
    wide[np.random.default_rng(9).random(wide.shape) < 0.1] = np.nan
    columns = np.array([5, 4, 3, 2, 1])  # the forest's features, reversed inside the wide matrix
    fill = np.array([0.5, np.nan, 3.0, 0.0, -2.0])  # a column without a fill stays missing
    xa = wide[:, columns]
    xa = np.where(np.isnan(xa), fill, xa).astype(np.float32)
    expected = -forest.score_samples(xa)
    assert np.array_equal(compiled.isolation(forest).anomaly(wide, columns, fill), expected)
    with pytest.raises(ValueError, match="5 forest features"):
        compiled.isolation(forest).anomaly(wide, columns[:4], fill[:4])
    assert compiled.isolation(LogisticRegression()) is None
