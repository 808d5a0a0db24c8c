"""Scorecards: how good a model is on data after its training cutoff, next to a baseline.

Every classifier is scored the same way (ROC AUC, PR AUC, Brier score, calibration curve, lift in
the top decile), and a scorecard always carries the baseline's numbers on the same split, the
data window and the sizes, so a reader can judge the model before trusting it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


@dataclass(frozen=True)
class TimeSplit:
    """Out-of-time split: train on [train_start, cutoff), evaluate on [cutoff, evaluation_end)."""

    train_start: date
    cutoff: date
    evaluation_end: date

    def __post_init__(self) -> None:
        if not self.train_start < self.cutoff < self.evaluation_end:
            raise ValueError(
                f"split must satisfy train_start < cutoff < evaluation_end, got "
                f"{self.train_start} / {self.cutoff} / {self.evaluation_end}")

    def to_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in asdict(self).items()}


def classification_metrics(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """ROC AUC, PR AUC (average precision), Brier score, calibration curve, top-decile lift."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        raise ValueError("no evaluation rows")
    base_rate = float(y.mean())
    out: dict[str, Any] = {"rows": int(len(y)), "positives": int(y.sum()), "base_rate": base_rate}
    if 0 < y.sum() < len(y):
        out["roc_auc"] = float(roc_auc_score(y, p))
        out["pr_auc"] = float(average_precision_score(y, p))
    else:
        out["roc_auc"] = out["pr_auc"] = None
    out["brier"] = float(brier_score_loss(y, np.clip(p, 0, 1)))
    out["lift_top_decile"] = top_decile_lift(y, p)
    try:
        frac, mean_pred = calibration_curve(y, np.clip(p, 0, 1), n_bins=bins, strategy="quantile")
        out["calibration"] = [{"predicted": float(a), "observed": float(b)} for a, b in zip(mean_pred, frac, strict=True)]
    except ValueError:
        out["calibration"] = []
    return out


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float | None:
    """Positive rate among the 10 % highest scores / overall positive rate."""
    y = np.asarray(y)
    if len(y) < 10 or y.mean() == 0:
        return None
    k = max(1, len(y) // 10)
    # stable sort so ties keep a deterministic order
    top = np.argsort(-np.asarray(p), kind="stable")[:k]
    return float(y[top].mean() / y.mean())


@dataclass
class Scorecard:
    model: str
    split: dict[str, str]
    sizes: dict[str, int]
    metrics: dict[str, Any]
    baseline_name: str
    baseline: dict[str, Any]
    beats_baseline: bool
    primary_metric: str
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def beats(metrics: dict[str, Any], baseline: dict[str, Any], metric: str, higher_is_better: bool = True) -> bool:
    a, b = metrics.get(metric), baseline.get(metric)
    if a is None or b is None:
        return False
    return a > b if higher_is_better else a < b


def risk_level(probability: float, thresholds: tuple[float, float, float] = (0.3, 0.6, 0.8)) -> str:
    """low / medium / high / critical."""
    low, medium, high = thresholds
    if probability >= high:
        return "critical"
    if probability >= medium:
        return "high"
    if probability >= low:
        return "medium"
    return "low"


#: the risk levels in order; :func:`risk_level_codes` indexes this
RISK_LEVELS = ("low", "medium", "high", "critical")


def risk_level_codes(probability: np.ndarray, thresholds: tuple[float, float, float] = (0.3, 0.6, 0.8)) -> np.ndarray:
    """Index into :data:`RISK_LEVELS` of every probability (0 low .. 3 critical)."""
    p = np.asarray(probability, dtype=float)
    low, medium, high = thresholds
    return (p >= low).astype(np.int8) + (p >= medium) + (p >= high) if low <= medium <= high else \
        np.select([p >= high, p >= medium, p >= low], [3, 2, 1], 0).astype(np.int8)


def risk_levels(probability: np.ndarray, thresholds: tuple[float, float, float] = (0.3, 0.6, 0.8)) -> np.ndarray:
    """:func:`risk_level` of every probability at once."""
    return labels_of(RISK_LEVELS, risk_level_codes(probability, thresholds))


def labels_of(labels: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    """``labels[code]`` for every code, as an object array (a lookup, not a string comparison per row)."""
    return np.array(labels, dtype=object)[np.asarray(codes)]


def confidence_from_margin(probability: float) -> float:
    """How far from a coin flip a probability is, 0.5-1.0 (the platform's prediction confidence)."""
    return float(0.5 + abs(probability - 0.5))


def iso(value: date | datetime) -> str:
    return value.isoformat()
