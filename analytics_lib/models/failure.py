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

The pieces the three classifiers share live in :mod:`analytics_lib.models.classifier`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

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
    RateBaseline,
    TabularClassifier,
    add_months,
    as_floats,
    as_instant,
    candidates_feature_table,
    check_rates,
    day_start,
    fit_tabular_classifier,
    label_column,
    last_data_day,
    local_params,
    money_params,
    require_ids,
    scorecard_for,
    text_column,
)
from analytics_lib.models.registry import LoadedModel, feature_fingerprint
from analytics_lib.models.scoring import (
    RISK_LEVELS,
    Scorecard,
    TimeSplit,
    confidence_from_margin,
    risk_level,
    risk_level_codes,
)
from analytics_lib.warehouse import Snapshot

# TabularClassifier and RateBaseline stay importable from here: models saved before they moved
# to analytics_lib.models.classifier name this module in their pickles
__all__ = ["FailureArtifact", "PaymentFailureModel", "RateBaseline", "RenewalsAtRisk", "TabularClassifier",
           "dunning_recovery_rate", "renewals_at_risk"]


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
        """Feature rows of the candidates of the named query (``window``, ``attempts``, ``ids``,
        ``upcoming_renewals``) as an Arrow table."""
        table = candidates_feature_table(snapshot, "failure", f"candidates_{candidates}", params,
                                         {**money_params(), **local_params()})
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
        amount = as_floats(table["amount_rc"])
        return pd.DataFrame({
            "transaction_id": text_column(table["transaction_id"]),
            "customer_id": text_column(table["customer_id"]),
            "subscription_id": text_column(table["subscription_id"]),
            "created_at": table["created_at"].to_pandas(),
            "payment_method": text_column(table["payment_method"]),
            "amount_rc": amount,
            "probability": p,
            "risk_level": label_column(RISK_LEVELS, risk_level_codes(p, FAILURE_RISK_THRESHOLDS)),
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
