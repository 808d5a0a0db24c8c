"""Payment-flow optimisation: funnel counts worked out by hand, power analysis against the
textbook formula, flagged steps, A/B plans, the out-of-time scorecard and the CLI."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from scipy import stats

from analytics_lib.cli import main
from analytics_lib.models import ModelError
from analytics_lib.models import funnel as fl
from analytics_lib.models.registry import Registry
from analytics_lib.warehouse import Warehouse

STEPS = ["view_product", "begin_checkout", "enter_payment", "submit_payment", "payment_succeeded"]


def _events(session: str, reached: int, device: str, day: int = 3) -> list[dict]:
    at = datetime(2024, 5, day, 10, tzinfo=UTC)
    return [dict(event_id=f"{session}-{i}", session_id=session, step=STEPS[i], device_class=device,
                 country_code="TR", payment_method="card" if i >= 2 else None,
                 occurred_at=at + timedelta(minutes=i), occurred_month="2024-05") for i in range(reached)]


@pytest.fixture
def tiny(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    rows = []
    # 10 sessions reaching 5,5,5,5,4,3,3,2,1,1 steps: 10 view, 8 begin, 7 enter, 5 submit, 4 paid;
    # the 2 mobile ones stop at view
    plan = [5, 5, 5, 5, 4, 3, 3, 2, 1, 1]
    for i, reached in enumerate(plan):
        rows += _events(f"s{i}", reached, "mobile" if reached == 1 else "desktop")
    # a session whose begin_checkout event was lost still counts as having reached it
    lost = _events("s_lost", 3, "desktop")
    rows += [lost[0], lost[2]]
    wh.upsert("checkout_events", rows)
    return wh


def test_funnel_counts_by_hand(tiny):
    with tiny.snapshot() as snap:
        sessions = fl.session_frame(snap, date(2024, 5, 1), date(2024, 6, 1))
    table = fl.funnel_table(sessions).set_index("step")
    # plus the session with a lost begin_checkout event (it reached enter_payment)
    assert table["sessions"].tolist() == [11, 9, 8, 5, 4]
    assert table.loc["view_product", "drop_off"] == pytest.approx(2 / 11)
    assert table.loc["enter_payment", "conversion"] == pytest.approx(5 / 8)
    assert table.loc["view_product", "overall_conversion"] == pytest.approx(4 / 11)
    by_device = fl.funnel_table(sessions, "device_class")
    mobile = by_device[(by_device["device_class"] == "mobile") & (by_device["step"] == "view_product")].iloc[0]
    assert (mobile["sessions"], mobile["drop_off"]) == (2, 1.0)


def test_sample_size_matches_the_textbook_formula():
    # Fleiss' formula for p1 = 0.10 -> p2 = 0.12, alpha 0.05 two-sided, power 0.8: about 3,841 per arm
    p1, p2 = 0.10, 0.12
    za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    pbar = (p1 + p2) / 2
    textbook = ((za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
                / (p2 - p1) ** 2)
    assert fl.sample_size_per_arm(0.10, 0.20) == pytest.approx(textbook, rel=0.01)
    # smaller lifts need more sessions
    assert fl.sample_size_per_arm(0.10, 0.10) > fl.sample_size_per_arm(0.10, 0.20)
    with pytest.raises(ModelError):
        fl.sample_size_per_arm(1.2, 0.1)
    with pytest.raises(ModelError):
        fl.sample_size_per_arm(0.5, -0.1)


def test_flagged_steps_and_plans(tiny):
    with tiny.snapshot() as snap:
        result = fl.optimise(snap, date(2024, 5, 1), date(2024, 6, 1))
    flagged = {f["step"]: f for f in result["flagged_steps"]}
    # every step here loses more than 10 %
    assert set(flagged) == set(STEPS[:-1])
    assert flagged["view_product"]["recommendations"]
    plan = {p["step"]: p for p in result["ab_tests"]}["submit_payment"]
    assert plan["baseline_conversion"] == pytest.approx(4 / 5)
    assert plan["duration_days"] == math.ceil(2 * plan["sessions_per_arm"] / (5 / 31))
    with tiny.snapshot() as snap, pytest.raises(ModelError, match="no checkout sessions"):
        fl.optimise(snap, date(2023, 1, 1), date(2023, 2, 1))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from analytics_lib.synth import generate

    root = tmp_path_factory.mktemp("flow")
    wh = Warehouse(root / "wh")
    generate(wh, customers=2500, months=8, seed=5, end=date(2026, 10, 31))
    return wh, Registry(root / "registry")


def test_model_beats_the_overall_rate_out_of_time(demo):
    wh, reg = demo
    model = fl.PaymentFlowModel()
    result, version = model.fit_and_register(wh, reg)
    card = result.scorecard
    split = card.split
    assert split["cutoff"] < split["evaluation_end"]
    assert card.beats_baseline, card.to_dict()
    assert card.metrics["mae_step_conversion"] < card.baseline["mae_step_conversion"]
    loaded = model.load(reg)
    assert loaded.metadata.version == version
    with wh.snapshot() as snap:
        again = model.evaluate(loaded, snap)
        predictions = model.predict(loaded, snap)
    assert again["metrics"]["log_loss"] == pytest.approx(card.metrics["log_loss"])
    assert predictions and all(p.details["ab_test"]["sessions_per_arm"] > 0 for p in predictions)
    with wh.snapshot() as snap, pytest.raises(ModelError, match="unknown funnel steps: checkout_typo"):
        model.predict(loaded, snap, ids=["checkout_typo"])


def test_cli(demo, monkeypatch):
    wh, reg = demo
    monkeypatch.setenv("PAYMENT_ANALYTICS_MODELS", str(reg.location))
    runner = CliRunner()
    res = runner.invoke(main, ["--warehouse", str(wh.location), "models", "train", "payment_flow"])
    assert res.exit_code == 0 and "beats baseline on log_loss: yes" in res.output, res.output
    res = runner.invoke(main, ["--warehouse", str(wh.location), "models", "predict", "payment_flow", "--limit", "2"])
    data = json.loads(res.output)
    assert len(data) <= 2 and {"probability", "risk_level", "recommended_actions"} <= set(data[0])
    res = runner.invoke(main, ["--warehouse", str(wh.location), "models", "train", "payment_flow",
                               "--param", "segment=colour"])
    assert res.exit_code != 0 and "segment must be one of" in res.output
