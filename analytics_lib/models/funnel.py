"""Payment-flow optimisation: the checkout funnel, where it leaks, what to try, and how to test it.

* The funnel comes from ``checkout_events`` (sessions reaching view_product -> begin_checkout ->
  enter_payment -> submit_payment -> payment_succeeded), overall and per segment (device,
  country, payment method, campaign).
* A step whose drop-off to the next step is above 10 % (the platform's rule) is flagged, with
  recommended changes for that step.
* Each flagged step gets an A/B test plan: the sessions per arm needed to detect a given relative
  lift in the step's conversion (two-sided two-proportion test, power analysis with statsmodels),
  how many days that takes at the current traffic, and the expected monthly revenue impact if
  the lift is real.
* As a model it predicts each segment's step conversion from the training window; the scorecard
  compares those predictions on later sessions with the baseline that every segment converts at
  the overall rate (out of time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from analytics_lib.models import features
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
from analytics_lib.models.scoring import Scorecard, TimeSplit
from analytics_lib.warehouse import Snapshot
from analytics_lib.warehouse.currency import CURRENCY_EXPONENTS
from analytics_lib.warehouse.schema import CHECKOUT_STEPS

DROP_OFF_THRESHOLD = 0.10
SEGMENTS = ("device_class", "country_code", "payment_method", "campaign_id")
#: smallest number of sessions at a step for a segment's rate to be reported on its own
MIN_SEGMENT_SESSIONS = 30

RECOMMENDATIONS: dict[str, list[str]] = {
    "view_product": ["Make the price and what is included visible above the fold",
                     "Add a prominent call to action and social proof (ratings, learners)",
                     "Offer a free preview lesson"],
    "begin_checkout": ["Allow guest checkout or one-click sign-in",
                       "Cut the checkout form to the fields payment needs",
                       "Show the total in the local currency before the payment step"],
    "enter_payment": ["Offer the wallets and local methods the segment uses (Apple Pay, Google Pay, "
                      "bank transfer, local cards)",
                      "Autofill and inline card validation; fewer fields on mobile",
                      "Show trust signals and the refund policy next to the pay button"],
    "submit_payment": ["Route to the provider with the best authorisation rate for the card's country",
                       "Apply 3-D Secure only where the risk calls for it",
                       "Retry soft declines and offer an alternative method after a decline"],
}


@dataclass
class FunnelModelState:
    """What a trained payment-flow model holds: rates from the training window."""

    overall: dict[str, float]
    segments: dict[str, dict[str, dict[str, float]]]
    training_window: dict[str, str]


def _window(day_from: date, day_to: date) -> dict[str, datetime]:
    return {"start": datetime.combine(day_from, time(0), UTC), "end": datetime.combine(day_to, time(0), UTC)}


def session_frame(snapshot: Snapshot, start: date, end: date) -> pd.DataFrame:
    """One row per checkout session started in [start, end) with the furthest step reached."""
    return features.query(snapshot, "payment_flow", "sessions", _window(start, end))


def funnel_table(sessions: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Sessions reaching each step, conversion to the next step and drop-off (per segment)."""
    steps = list(CHECKOUT_STEPS)
    groups = [("all", sessions)] if by is None else list(sessions.groupby(by, dropna=False))
    rows = []
    for key, frame in groups:
        furthest = frame["furthest_step"].to_numpy()
        reached = [int((furthest >= i + 1).sum()) for i in range(len(steps))]
        for i, step in enumerate(steps):
            nxt = reached[i + 1] if i + 1 < len(steps) else None
            conv = (nxt / reached[i]) if nxt is not None and reached[i] else None
            rows.append({
                "segment": key if by else "all", "step": step, "step_no": i + 1, "sessions": reached[i],
                "next_step": steps[i + 1] if i + 1 < len(steps) else None,
                "conversion": conv, "drop_off": None if conv is None else 1 - conv,
                "overall_conversion": reached[-1] / reached[0] if reached[0] else None,
            })
    out = pd.DataFrame(rows)
    if by:
        out = out.rename(columns={"segment": by})
    return out


def sample_size_per_arm(baseline_rate: float, relative_lift: float, alpha: float = 0.05,
                        power: float = 0.8) -> int:
    """Sessions per arm to detect ``baseline -> baseline x (1 + lift)`` (two-sided z-test)."""
    if not 0 < baseline_rate < 1:
        raise ModelError(f"baseline conversion must be between 0 and 1, got {baseline_rate}")
    target = min(baseline_rate * (1 + relative_lift), 0.999999)
    if target <= baseline_rate:
        raise ModelError("the lift to detect must be positive")
    effect = abs(proportion_effectsize(target, baseline_rate))
    n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0,
                                     alternative="two-sided")
    return int(math.ceil(n))


def ab_test_plan(step_row: pd.Series, daily_sessions: float, relative_lift: float, downstream: float,
                 order_value: float, alpha: float = 0.05, power: float = 0.8) -> dict[str, Any]:
    """Sample size, duration and expected monthly revenue impact of testing a fix at one step."""
    base = float(step_row["conversion"])
    n = sample_size_per_arm(base, relative_lift, alpha, power)
    days = math.ceil(2 * n / daily_sessions) if daily_sessions > 0 else None
    extra_conversions = daily_sessions * 30 * base * relative_lift * downstream
    return {
        "step": step_row["step"], "baseline_conversion": base, "relative_lift": relative_lift,
        "target_conversion": min(base * (1 + relative_lift), 1.0), "alpha": alpha, "power": power,
        "sessions_per_arm": n, "daily_sessions_at_step": daily_sessions, "duration_days": days,
        "expected_extra_payments_per_month": extra_conversions,
        "expected_revenue_impact_per_month_usd": extra_conversions * order_value,
    }


def _order_value(snapshot: Snapshot, start: date, end: date) -> float:
    paid = features.query(snapshot, "payment_flow", "paid_amounts", _window(start, end))
    if paid.empty:
        return 0.0
    scale = paid["currency"].map(lambda c: 10 ** CURRENCY_EXPONENTS.get(c, 2)).astype(float)
    usd = paid["amount_minor"] / scale * paid["usd_per_unit"]
    return float(usd.dropna().mean()) if usd.notna().any() else 0.0


def optimise(snapshot: Snapshot, start: date, end: date, relative_lift: float = 0.10,
             threshold: float = DROP_OFF_THRESHOLD) -> dict[str, Any]:
    """The funnel of [start, end): overall and per segment, flagged steps with recommendations,
    A/B test plans and expected revenue impact (the platform's flow optimisation)."""
    sessions = session_frame(snapshot, start, end)
    if sessions.empty:
        raise ModelError(f"no checkout sessions between {start} and {end}")
    days = max((end - start).days, 1)
    overall = funnel_table(sessions)
    order_value = _order_value(snapshot, start, end)
    by_segment = {seg: funnel_table(sessions, seg) for seg in SEGMENTS}
    flagged, plans = [], []
    reached_last = overall.iloc[-1]["sessions"]
    for _, row in overall.iterrows():
        if row["drop_off"] is None or pd.isna(row["drop_off"]) or row["drop_off"] <= threshold:
            continue
        downstream = reached_last / overall[overall["step_no"] == row["step_no"] + 1].iloc[0]["sessions"]
        worst = []
        for seg, table in by_segment.items():
            if seg == "payment_method" and row["step_no"] < 3:
                continue  # the method is only known from enter_payment on
            at_step = table[(table["step"] == row["step"]) & (table["sessions"] >= MIN_SEGMENT_SESSIONS)]
            if not at_step.empty:
                top = at_step.sort_values("drop_off", ascending=False).iloc[0]
                worst.append({"segment": seg, "value": top[seg], "drop_off": float(top["drop_off"]),
                              "sessions": int(top["sessions"])})
        worst.sort(key=lambda w: -w["drop_off"])
        flagged.append({"step": row["step"], "next_step": row["next_step"], "drop_off": float(row["drop_off"]),
                        "sessions": int(row["sessions"]), "worst_segments": worst[:3],
                        "recommendations": RECOMMENDATIONS.get(row["step"], [])})
        plans.append(ab_test_plan(row, row["sessions"] / days, relative_lift, downstream, order_value))
    return {
        "window": {"start": start.isoformat(), "end": (end - timedelta(days=1)).isoformat()},
        "sessions": int(len(sessions)),
        "overall_conversion": float(overall.iloc[0]["overall_conversion"] or 0),
        "average_order_value_usd": order_value,
        "funnel": overall,
        "segments": by_segment,
        "flagged_steps": flagged,
        "ab_tests": plans,
        "expected_revenue_impact_per_month_usd": float(sum(p["expected_revenue_impact_per_month_usd"] for p in plans)),
    }


def _rates(sessions: pd.DataFrame) -> tuple[dict[str, float], dict[str, dict[str, dict[str, float]]]]:
    overall = funnel_table(sessions)
    o = {r["step"]: float(r["conversion"]) for _, r in overall.iterrows() if r["conversion"] is not None}
    seg: dict[str, dict[str, dict[str, float]]] = {}
    for s in SEGMENTS:
        t = funnel_table(sessions, s)
        seg[s] = {}
        for _, r in t.iterrows():
            if r["conversion"] is not None and r["sessions"] >= MIN_SEGMENT_SESSIONS:
                seg[s].setdefault(str(r[s]), {})[r["step"]] = float(r["conversion"])
    return o, seg


def _predict_sessions(state: FunnelModelState, sessions: pd.DataFrame, segment: str | None) -> pd.DataFrame:
    """Per (session, step reached): predicted probability of reaching the next step, and outcome."""
    rows = []
    steps = list(CHECKOUT_STEPS)[:-1]
    for i, step in enumerate(steps, start=1):
        at = sessions[sessions["furthest_step"] >= i]
        if at.empty:
            continue
        if segment is None:
            p = np.full(len(at), state.overall.get(step, np.nan))
        else:
            table = state.segments.get(segment, {})
            p = np.array([table.get(str(v), {}).get(step, state.overall.get(step, np.nan))
                          for v in at[segment]])
        rows.append(pd.DataFrame({"step": step, "p": p, "y": (at["furthest_step"] >= i + 1).astype(int)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["step", "p", "y"])


def _log_loss(frame: pd.DataFrame) -> float:
    p = np.clip(frame["p"].to_numpy(dtype=float), 1e-6, 1 - 1e-6)
    y = frame["y"].to_numpy()
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class PaymentFlowModel(Model):
    name: ClassVar[str] = "payment_flow"
    description: ClassVar[str] = "checkout funnel drop-off by segment, flagged steps, A/B test plans"
    feature_version: ClassVar[str] = feature_fingerprint(list(SEGMENTS), "furthest-step-sessions-v1")

    def default_split(self, snapshot: Snapshot) -> TimeSplit:
        first, last = data_range(snapshot, "checkout_events", "occurred_at")
        end = last + timedelta(days=1)
        cutoff = end - timedelta(days=30)
        return TimeSplit(max(first, cutoff - timedelta(days=90)), cutoff, end)

    def train(self, snapshot: Snapshot, split: TimeSplit, **params: Any) -> TrainResult:
        train = session_frame(snapshot, split.train_start, split.cutoff)
        test = session_frame(snapshot, split.cutoff, split.evaluation_end)
        if train.empty or test.empty:
            raise ModelError("not enough checkout sessions before and after the cutoff to train and evaluate")
        overall, segments = _rates(train)
        state = FunnelModelState(overall, segments, split.to_dict())
        segment = params.get("segment", "device_class")
        if segment not in SEGMENTS:
            raise ModelError(f"segment must be one of {', '.join(SEGMENTS)}")
        model_pred = _predict_sessions(state, test, segment)
        base_pred = _predict_sessions(state, test, None)
        metrics = {"log_loss": _log_loss(model_pred),
                   "mae_step_conversion": _segment_mae(state, test, segment, True),
                   "rows": len(model_pred)}
        baseline = {"log_loss": _log_loss(base_pred),
                    "mae_step_conversion": _segment_mae(state, test, segment, False), "rows": len(base_pred)}
        card = Scorecard(
            model=self.name, split=split.to_dict(),
            sizes={"train_sessions": len(train), "evaluation_sessions": len(test)},
            metrics=metrics, baseline_name="overall step conversion for every segment", baseline=baseline,
            beats_baseline=metrics["log_loss"] < baseline["log_loss"], primary_metric="log_loss",
            notes=[f"predicts each {segment} segment's step conversion from the training window; "
                   "lower log loss and MAE are better"],
        )
        return TrainResult(state, card, list(SEGMENTS), {"segment": segment},
                           {"train": len(train), "evaluation": len(test)}, split)

    def evaluate(self, loaded: LoadedModel, snapshot: Snapshot) -> dict[str, Any]:
        window = loaded.metadata.training_window
        cutoff = date.fromisoformat(window["cutoff"])
        _, last = data_range(snapshot, "checkout_events", "occurred_at")
        test = session_frame(snapshot, cutoff, last + timedelta(days=1))
        if test.empty:
            raise ModelError("no checkout sessions after the model's cutoff yet")
        segment = loaded.metadata.params.get("segment", "device_class")
        m, b = _predict_sessions(loaded.model, test, segment), _predict_sessions(loaded.model, test, None)
        card = dict(loaded.scorecard)
        card["metrics"] = {"log_loss": _log_loss(m),
                           "mae_step_conversion": _segment_mae(loaded.model, test, segment, True), "rows": len(m)}
        card["baseline"] = {"log_loss": _log_loss(b),
                            "mae_step_conversion": _segment_mae(loaded.model, test, segment, False), "rows": len(b)}
        card["beats_baseline"] = card["metrics"]["log_loss"] < card["baseline"]["log_loss"]
        card["sizes"] = {"evaluation_sessions": len(test)}
        return card

    def predict(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None,
                ids: list[str] | None = None, limit: int | None = None) -> list[Prediction]:
        """One prediction per flagged step of the last 30 days before ``as_of``: its drop-off,
        the segments that leak most, recommended changes and the A/B test plan."""
        _, last = data_range(snapshot, "checkout_events", "occurred_at")
        end = (as_of or last + timedelta(days=1))
        result = optimise(snapshot, end - timedelta(days=30), end)
        out = []
        plans = {p["step"]: p for p in result["ab_tests"]}
        for flag in result["flagged_steps"]:
            if ids and flag["step"] not in ids:
                continue
            drop = flag["drop_off"]
            level = "critical" if drop > 0.5 else "high" if drop > 0.3 else "medium" if drop > 0.2 else "low"
            factors = [RiskFactor(f"{w['segment']}={w['value']}", round(w["drop_off"], 4),
                                  f"{w['drop_off']:.0%} of {w['sessions']} sessions leave at {flag['step']}",
                                  w["drop_off"]) for w in flag["worst_segments"]]
            plan = plans[flag["step"]]
            actions = [Action("fix_step", "high" if drop > 0.3 else "medium", flag["recommendations"],
                              expected_impact=plan["relative_lift"]),
                       Action("ab_test", "medium",
                              [f"A/B test the change: {plan['sessions_per_arm']:,} sessions per arm, about "
                               f"{plan['duration_days']} days at current traffic"],
                              expected_impact=plan["expected_revenue_impact_per_month_usd"])]
            out.append(Prediction(flag["step"], drop, level, min(1.0, 0.5 + flag["sessions"] / 20000),
                                  factors, actions, details={"ab_test": plan, "next_step": flag["next_step"]}))
        if ids:
            missing = sorted(set(ids) - {p.entity_id for p in out} - set(CHECKOUT_STEPS))
            if missing:
                raise ModelError(f"unknown funnel steps: {', '.join(missing)}; steps: {', '.join(CHECKOUT_STEPS)}")
        out.sort(key=lambda p: -(p.probability or 0))
        return out[:limit] if limit else out


def _segment_mae(state: FunnelModelState, sessions: pd.DataFrame, segment: str, use_segment_rates: bool) -> float:
    """Mean absolute error of predicted vs observed step conversion per ``segment`` value
    (weighted by sessions); the baseline predicts the overall rate for every value."""
    actual = funnel_table(sessions, segment)
    errors, weights = [], []
    for _, r in actual.iterrows():
        if r["conversion"] is None or pd.isna(r["conversion"]) or r["sessions"] < MIN_SEGMENT_SESSIONS:
            continue
        pred = state.overall.get(r["step"])
        if use_segment_rates:
            pred = state.segments.get(segment, {}).get(str(r[segment]), {}).get(r["step"], pred)
        if pred is None:
            continue
        errors.append(abs(pred - r["conversion"]))
        weights.append(r["sessions"])
    return float(np.average(errors, weights=weights)) if errors else float("nan")
