"""Churn: the probability that an active subscriber cancels within a horizon (default 30 days).

Rows are active subscribers (a paid period in force, no cancellation requested) at monthly
reference dates; their features (``sql/churn.sql``) use only rows before the reference date:
payment failures, engagement and its trend, support tickets, tenure, plan terms and the customer
record. The label is a cancel event (voluntary or after failed dunning) in the horizon after the
date. Training takes reference dates whose horizon ends by the cutoff; evaluation takes dates at
or after the cutoff whose horizon the data fully covers.

The model is gradient boosting fitted on the earlier training dates, early-stopped and calibrated
(sigmoid, by default) on the last training dates, so its probabilities are calibrated on months
it did not learn from. The baseline ranks by recency (days since last activity), turned into a
probability by an isotonic fit on the training rows.

Predictions carry the platform's rule-based risk factors (failure rate above 10 %, no login for
more than 30 days, more than 3 support tickets) plus the model's strongest per-customer
contributions, the platform's retention strategies, and an estimated churn date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

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
    TabularClassifier,
    add_months,
    check_rates,
    day_start,
    feature_frame,
    fit_tabular_classifier,
    local_params,
    money_params,
    require_ids,
    scorecard_for,
)
from analytics_lib.models.registry import LoadedModel, feature_fingerprint
from analytics_lib.models.scoring import Scorecard, TimeSplit, confidence_from_margin, risk_level
from analytics_lib.warehouse import Snapshot

HORIZON_DAYS = 30
NUMERIC = [
    "annual", "discount_percent", "mrr_rc", "tenure_days", "upgrades", "downgrades", "reactivations", "had_trial",
    "days_to_renewal", "renews_within_horizon", "payment_attempts_90d", "payment_failures_90d",
    "payment_failure_rate_90d", "payment_failures_30d", "last_payment_failed", "days_since_last_activity",
    "active_days_30d", "active_days_prev_30d", "activity_trend", "logins_30d", "lesson_views_30d", "minutes_30d",
    "minutes_trend", "support_tickets_90d", "support_tickets_30d", "billing_tickets_90d", "technical_tickets_90d",
    "refund_tickets_90d", "home_country", "account_age_days",
]
CATEGORICAL = ["tier", "country_code", "acquisition_channel", "device_class"]

#: the platform's churn rules: failure rate, days without login, support tickets
FAILURE_RATE_RULE = 0.10
INACTIVE_DAYS_RULE = 30
TICKETS_RULE = 3
IMMEDIATE_INTERVENTION_ABOVE = 0.8
PAYMENT_FEATURES = {"payment_failures_90d", "payment_failure_rate_90d", "payment_failures_30d", "last_payment_failed",
                    "payment_attempts_90d", "billing_tickets_90d"}
ENGAGEMENT_FEATURES = {"days_since_last_activity", "active_days_30d", "active_days_prev_30d", "activity_trend",
                       "logins_30d", "lesson_views_30d", "minutes_30d", "minutes_trend"}


@dataclass
class RecencyBaseline:
    """Churn probability from days since last activity alone (isotonic in recency)."""

    isotonic: IsotonicRegression

    @staticmethod
    def recency(frame: pd.DataFrame) -> np.ndarray:
        """Days since last activity; never active = days since the subscription started."""
        days = pd.to_numeric(frame["days_since_last_activity"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return np.where(np.isnan(days), frame["tenure_days"].to_numpy(dtype=float), days)

    @classmethod
    def fit(cls, frame: pd.DataFrame, y: np.ndarray) -> RecencyBaseline:
        iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
        return cls(iso.fit(cls.recency(frame), np.asarray(y, dtype=float)))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.isotonic.predict(self.recency(frame))


@dataclass
class ChurnArtifact:
    classifier: TabularClassifier
    baseline: RecencyBaseline
    horizon_days: int
    meta: dict[str, Any] = field(default_factory=dict)


def training_reference_dates(split: TimeSplit, horizon_days: int, min_history_days: int = 60) -> list[date]:
    """Monthly dates whose horizon ends by the cutoff, newest first reversed to oldest first."""
    out, k = [], 0
    last = split.cutoff - timedelta(days=horizon_days)
    while True:
        d = add_months(last, -k)
        if d < split.train_start + timedelta(days=min_history_days):
            break
        out.append(d)
        k += 1
    return sorted(out)


def evaluation_reference_dates(cutoff: date, end: date, horizon_days: int) -> list[date]:
    """Monthly dates from the cutoff whose horizon ends by ``end`` (exclusive day)."""
    out, k = [], 0
    while (d := add_months(cutoff, k)) + timedelta(days=horizon_days) <= end:
        out.append(d)
        k += 1
    return out


class ChurnModel(Model):
    name: ClassVar[str] = "churn"
    description: ClassVar[str] = "Probability that an active subscriber cancels within 30 days"
    feature_version: ClassVar[str] = "churn-1-" + feature_fingerprint(
        [*NUMERIC, *CATEGORICAL], "as of UTC midnight of the reference date; 30/60/90-day windows; "
        "categories from training vocabulary; mrr in reporting currency")

    # -- split ------------------------------------------------------------------------------
    def default_split(self, snapshot: Snapshot) -> TimeSplit:
        first, last = data_range(snapshot, "subscription_events", "occurred_at")
        end = last + timedelta(days=1)
        cutoff = add_months(end, -3)
        split = TimeSplit(first, cutoff, end) if first < cutoff else None
        if split is None or len(training_reference_dates(split, HORIZON_DAYS)) < 4:
            raise ModelError(f"churn needs about 9 months of subscription history (4 monthly training dates, "
                             f"3 evaluation months); the warehouse holds {first} .. {last}")
        return split

    # -- features ---------------------------------------------------------------------------
    def features(self, snapshot: Snapshot, ref_dates: list[date], horizon_days: int = HORIZON_DAYS,
                 ids: list[str] | None = None, labels: bool = True) -> pd.DataFrame:
        """Feature rows of the active subscribers at each reference date (and their labels)."""
        sqlfeatures.query(snapshot, "churn", "population",
                          {"ref_dates": [day_start(d) for d in ref_dates], "ids": list(ids or [])})
        frame = feature_frame(snapshot, "churn", "features", {
            **money_params(), "home": local_params()["home"], "horizon_days": horizon_days})
        check_rates(frame, "churn features")
        if labels:
            y = sqlfeatures.query(snapshot, "churn", "labels", {"horizon_days": horizon_days})
            frame = frame.merge(y, on=["ref_at", "customer_id"], how="left", validate="one_to_one")
        return frame

    # -- training ---------------------------------------------------------------------------
    def train(self, snapshot: Snapshot, split: TimeSplit, **params: Any) -> TrainResult:
        horizon = int(params.pop("horizon_days", HORIZON_DAYS))
        calibration_dates = int(params.pop("calibration_dates", 2))
        method = str(params.pop("calibration", "sigmoid"))
        hgb_params = {k: params.pop(k) for k in list(params) if k in HGB_DEFAULTS}
        if params:
            raise ModelError(f"unknown churn parameters: {', '.join(sorted(params))}")
        train_dates = training_reference_dates(split, horizon)
        eval_dates = evaluation_reference_dates(split.cutoff, split.evaluation_end, horizon)
        if len(train_dates) < calibration_dates + 2:
            raise ModelError(f"churn: only {len(train_dates)} training reference dates between {split.train_start} "
                             f"and {split.cutoff} - {horizon} days; choose a later cutoff or load more history")
        if not eval_dates:
            raise ModelError(f"churn: no evaluation date after {split.cutoff} whose {horizon}-day horizon ends by "
                             f"{split.evaluation_end}; choose an earlier cutoff")
        frame = self.features(snapshot, train_dates + eval_dates, horizon)
        rows = self.partition(frame, split, train_dates, calibration_dates)
        train, fit, calib = rows["train"], rows["fit"], rows["calibration"]
        y = frame["churned"].to_numpy(dtype=int)
        clf = fit_tabular_classifier(frame, y, NUMERIC, CATEGORICAL, fit, calib, method, hgb_params)
        baseline = RecencyBaseline.fit(frame[train], y[train])
        artifact = ChurnArtifact(clf, baseline, horizon, {"calibration_dates": calibration_dates})
        sizes = {"train_rows": int(train.sum()), "fit_rows": int(fit.sum()), "calibration_rows": int(calib.sum()),
                 "evaluation_rows": int(rows["evaluation"].sum()), "train_reference_dates": len(train_dates),
                 "evaluation_reference_dates": len(eval_dates)}
        card = self._scorecard(artifact, frame[rows["evaluation"]], split, sizes, importance=True)
        card.extra["reference_dates"] = {"train": [d.isoformat() for d in train_dates],
                                         "evaluation": [d.isoformat() for d in eval_dates]}
        return TrainResult(model=artifact, scorecard=card, features=clf.features, rows=sizes, split=split,
                           params={"horizon_days": horizon, "calibration_dates": calibration_dates,
                                   "calibration": method, **hgb_params})

    @staticmethod
    def partition(frame: pd.DataFrame, split: TimeSplit, train_dates: list[date],
                  calibration_dates: int = 2) -> dict[str, np.ndarray]:
        """Row masks by reference date: training = before the cutoff (the trees learn from the
        earlier dates, the last ``calibration_dates`` early-stop and calibrate them), evaluation =
        at or after the cutoff."""
        ref = frame["ref_at"]
        train = (ref < day_start(split.cutoff)).to_numpy()
        calib = train & (ref >= day_start(train_dates[-calibration_dates])).to_numpy()
        return {"train": train, "fit": train & ~calib, "calibration": calib, "evaluation": ~train}

    def _scorecard(self, artifact: ChurnArtifact, evaluation: pd.DataFrame, split: TimeSplit, sizes: dict[str, int],
                   importance: bool = False) -> Scorecard:
        if evaluation.empty:
            raise ModelError(f"churn: no active subscribers to evaluate after {split.cutoff}")
        y = evaluation["churned"].to_numpy(dtype=int)
        p = artifact.classifier.predict_proba(evaluation)
        pb = artifact.baseline.predict(evaluation)
        extra: dict[str, Any] = {"calibration": artifact.classifier.calibration}
        if importance and 0 < y.sum() < len(y):
            extra["permutation_importance_roc_auc"] = permutation_ranking(artifact.classifier, evaluation, y)
        return scorecard_for(
            self.name, split, sizes, y, p, pb, "recency (days since last activity, isotonic)", "roc_auc",
            notes=[
                f"rows: active subscribers at monthly reference dates; label: cancel (voluntary or payment_failed) "
                f"within {artifact.horizon_days} days",
                "features use only rows before each reference date",
                f"model: gradient boosting, calibrated ({artifact.classifier.calibration}) on the last "
                f"{artifact.meta.get('calibration_dates')} training reference dates",
            ],
            extra=extra,
        )

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, loaded: LoadedModel, snapshot: Snapshot) -> dict[str, Any]:
        artifact: ChurnArtifact = loaded.model
        window = loaded.metadata.training_window
        cutoff = date.fromisoformat(window["cutoff"])
        end = data_range(snapshot, "subscription_events", "occurred_at")[1] + timedelta(days=1)
        dates = evaluation_reference_dates(cutoff, end, artifact.horizon_days)
        if not dates:
            raise ModelError(f"no reference date after the cutoff {cutoff} has a fully observed "
                             f"{artifact.horizon_days}-day horizon yet")
        split = TimeSplit(date.fromisoformat(window["train_start"]), cutoff, end)
        frame = self.features(snapshot, dates, artifact.horizon_days)
        return self._scorecard(artifact, frame, split, {"evaluation_rows": len(frame),
                                                         "evaluation_reference_dates": len(dates)}).to_dict()

    # -- prediction -------------------------------------------------------------------------
    def predict(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None,
                ids: list[str] | None = None, limit: int | None = None) -> list[Prediction]:
        """Active subscribers at ``as_of`` (default: the day after the data), riskiest first."""
        artifact: ChurnArtifact = loaded.model
        as_of = as_of or data_range(snapshot, "subscription_events", "occurred_at")[1] + timedelta(days=1)
        if ids:
            known = sqlfeatures.query(snapshot, "churn", "customers_known", {"ids": list(ids)})
            require_ids(list(ids), set(known["customer_id"]), "customer ids")
        frame = self.features(snapshot, [as_of], artifact.horizon_days, ids=ids, labels=False)
        if ids:
            require_ids(list(ids), set(frame["customer_id"]), f"active subscribers on {as_of} (customer ids)")
        if frame.empty:
            raise ModelError(f"no active subscribers on {as_of}: nothing to predict")
        p = artifact.classifier.predict_proba(frame)
        order = np.argsort(-p, kind="stable")
        if limit and not ids:
            order = order[:limit]
        frame, p = frame.iloc[order].reset_index(drop=True), p[order]
        contributions = artifact.classifier.contributions(frame)
        rc = money_params()["rc"]
        out = []
        for i, row in enumerate(frame.itertuples(index=False)):
            prob = float(p[i])
            factors = churn_risk_factors(row, contributions[i])
            out.append(Prediction(
                entity_id=str(row.customer_id), probability=prob, risk_level=risk_level(prob),
                confidence=confidence_from_margin(prob), key_risk_factors=factors,
                recommended_actions=retention_strategies(prob, factors),
                details={
                    "as_of": as_of.isoformat(), "time_horizon_days": artifact.horizon_days,
                    "subscription_id": row.subscription_id,
                    "predicted_churn_date": estimated_churn_date(prob, as_of, artifact.horizon_days).isoformat(),
                    "current_period_end": None if pd.isna(row.next_renewal_at)
                    else pd.Timestamp(row.next_renewal_at).date().isoformat(),
                    "mrr": round(float(row.mrr_rc), 2), "currency": rc,
                    "mrr_at_risk": round(prob * float(row.mrr_rc), 2),
                    "explanation_method": "platform rules, then single-feature ablation against the training "
                                          "median / mode",
                },
            ))
        return out


def permutation_ranking(classifier: TabularClassifier, frame: pd.DataFrame, y: np.ndarray,
                        max_rows: int = 20_000, repeats: int = 3) -> list[dict[str, Any]]:
    """ROC AUC lost when each feature is shuffled on the evaluation rows (model-level importance)."""
    x = classifier.matrix(frame)
    if len(x) > max_rows:
        idx = np.random.default_rng(0).choice(len(x), max_rows, replace=False)
        x, y = x[idx], y[idx]

    class _Scorer:
        def __call__(self, est: Any, xs: np.ndarray, ys: np.ndarray) -> float:
            return float(roc_auc_score(ys, classifier.predict_proba(xs)))

    result = permutation_importance(classifier.estimator, x, y, scoring=_Scorer(), n_repeats=repeats, random_state=0)
    ranking = sorted(zip(classifier.features, result.importances_mean, strict=True), key=lambda t: -t[1])
    return [{"feature": f, "roc_auc_drop": round(float(v), 5)} for f, v in ranking]


FEATURE_LABELS = {
    "annual": "annual plan", "discount_percent": "discount", "mrr_rc": "monthly price", "tenure_days": "tenure",
    "upgrades": "upgrades", "downgrades": "downgrades", "reactivations": "earlier cancellations taken back",
    "had_trial": "started with a trial", "days_to_renewal": "days to the next renewal",
    "renews_within_horizon": "renewal due within the horizon", "payment_attempts_90d": "payment attempts (90 days)",
    "payment_failures_90d": "payment failures (90 days)", "payment_failure_rate_90d": "payment failure rate (90 days)",
    "payment_failures_30d": "payment failures (30 days)", "last_payment_failed": "last payment failed",
    "days_since_last_activity": "days since last activity", "active_days_30d": "active days (30 days)",
    "active_days_prev_30d": "active days (previous 30 days)", "activity_trend": "change in active days",
    "logins_30d": "logins (30 days)", "lesson_views_30d": "lesson views (30 days)", "minutes_30d": "minutes watched (30 days)",
    "minutes_trend": "change in minutes watched", "support_tickets_90d": "support tickets (90 days)",
    "support_tickets_30d": "support tickets (30 days)", "billing_tickets_90d": "billing tickets (90 days)",
    "technical_tickets_90d": "technical tickets (90 days)", "refund_tickets_90d": "refund requests (90 days)",
    "home_country": "home market", "account_age_days": "account age", "tier": "plan tier", "country_code": "country",
    "acquisition_channel": "acquisition channel", "device_class": "device",
}


def days_since_login(row: Any) -> float:
    """Days without activity; a subscriber never seen active counts from the subscription start."""
    value = row.days_since_last_activity
    return float(row.tenure_days if pd.isna(value) else value)


def churn_risk_factors(row: Any, contributions: list[tuple[str, float]]) -> list[RiskFactor]:
    """The platform's three rules, then the model's strongest contributions for this customer."""
    factors: list[RiskFactor] = []
    rate = row.payment_failure_rate_90d
    if pd.notna(rate) and rate > FAILURE_RATE_RULE:
        factors.append(RiskFactor("high_payment_failure_rate", 0.8, "Customer has a high payment failure rate "
                                  "(last 90 days)", round(float(rate), 3)))
    inactive = days_since_login(row)
    if inactive > INACTIVE_DAYS_RULE:
        factors.append(RiskFactor("low_engagement", 0.7, "Customer has not logged in for more than 30 days",
                                  round(inactive, 1)))
    if row.support_tickets_90d > TICKETS_RULE:
        factors.append(RiskFactor("high_support_tickets", 0.6, "Customer has many support issues (last 90 days)",
                                  int(row.support_tickets_90d)))
    for feature, delta in contributions:
        value = getattr(row, feature, None)
        factors.append(RiskFactor(
            f"model:{feature}", round(min(delta, 1.0), 3),
            f"{FEATURE_LABELS.get(feature, feature)} raises the churn probability by {delta:.1%} against a typical "
            "subscriber",
            None if value is None or (isinstance(value, float) and np.isnan(value))
            else (value if isinstance(value, str) else round(float(value), 3))))
    return sorted(factors, key=lambda f: -f.importance)


def retention_strategies(probability: float, factors: list[RiskFactor]) -> list[Action]:
    """The platform's strategies; payment and engagement ones also follow the model's top drivers."""
    names = {f.factor for f in factors}
    drivers = {f.factor.removeprefix("model:") for f in factors if f.factor.startswith("model:")}
    out: list[Action] = []
    if probability > IMMEDIATE_INTERVENTION_ABOVE:
        out.append(Action("immediate_intervention", "urgent", [
            "Personal outreach from the account manager", "Special discount offer", "Priority customer support",
        ], expected_impact=0.6))
    if "high_payment_failure_rate" in names or drivers & PAYMENT_FEATURES:
        out.append(Action("payment_optimization", "high", [
            "Update the payment method", "Offer alternative payment options", "Optimise payment retry timing",
        ], expected_impact=0.4))
    if "low_engagement" in names or drivers & ENGAGEMENT_FEATURES:
        out.append(Action("engagement_campaign", "medium", [
            "Personalised content recommendations", "Gamification elements", "Educational e-mail series",
        ], expected_impact=0.3))
    return out


def estimated_churn_date(probability: float, as_of: date, horizon_days: int) -> date:
    """When half of the customers with this churn probability would have left.

    A constant daily hazard h with 1 - exp(-h x horizon) = p gives the median time to churn
    ln 2 / h = horizon x ln 2 / -ln(1 - p): inside the horizon when p > 0.5, beyond it otherwise
    (capped at 10 years for near-zero probabilities).
    """
    p = min(max(probability, 1e-6), 1 - 1e-9)
    days = horizon_days * math.log(2) / -math.log1p(-p)
    return as_of + timedelta(days=min(days, 3650.0))
