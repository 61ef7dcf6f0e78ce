"""The decisions the loop makes, on plain data: which rows a verdict stands on (tiny days), when a decline is
real (M3), and when the sensor asks for a retrain (M4, M5, M6, O4). Each is shown firing and holding back."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_assets.contract import load_contract
from ml_assets.contract.model import Drift
from ml_assets.monitoring.drift import build_reference, feature_drift
from ml_assets.monitoring.performance import LabelledDay, decline_state, evaluate_window, pool_window
from ml_assets.monitoring.policy import Evidence, LastRetrain, retrain_decision
from ml_assets.monitoring.verdict import judge_day, pool_days
from ml_assets_tests.conftest import write_contract

T = Drift(min_rows=1000)
START = dt.date(2026, 3, 1)


def day(i: int) -> str:
    return (START + dt.timedelta(days=i)).isoformat()


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"amount": rng.lognormal(3 + shift, 1, n), "channel": rng.choice(["a", "b"], n)})


# --- judging on enough rows -------------------------------------------------------------------------------


def test_a_tiny_day_is_judged_together_with_the_days_before_it():
    rng = np.random.default_rng(1)
    frames = {day(i): frame(rng, 48) for i in range(30)}  # 48 rows a day, like half-hourly market data
    window, outsized = pool_days(day(29), frames, min_rows=1000, max_days=30, first_judged_day=START,
                                 outsized_factor=T.outsized_day_factor)
    assert window[0] == day(29) and len(window) == 21 and outsized == []  # 21 x 48 = 1008 rows
    reference = build_reference(frame(rng, 5000), ["amount"], ["channel"])
    verdict = judge_day(day(29), frames, reference, T, 30, START)
    assert verdict.status == "stable" and verdict.rows == 1008 and verdict.window_days == 21
    assert any("pooled over 21 days" in r for r in verdict.reasons)


def test_too_few_rows_even_pooled_decides_nothing_and_warm_up_days_are_not_judged():
    rng = np.random.default_rng(2)
    frames = {day(i): frame(rng, 10, shift=3.0) for i in range(30)}  # wildly shifted, but 10 rows a day
    reference = build_reference(frame(rng, 5000), ["amount"], ["channel"])
    verdict = judge_day(day(29), frames, reference, T, 14, START)
    assert verdict.status == "not_judged" and verdict.rows == 140
    assert "min_rows 1000" in verdict.reasons[0]
    warm = judge_day(day(2), frames, reference, T, 14, START + dt.timedelta(days=7))
    assert warm.status == "warm_up"


def test_golden_set_staleness_is_reported_when_live_data_leaves_it():
    rng = np.random.default_rng(3)
    reference = build_reference(frame(rng, 5000), ["amount"], ["channel"])
    golden = build_reference(frame(rng, 3000), ["amount"], ["channel"])
    moved = {day(0): frame(rng, 3000, shift=1.0)}
    verdict = judge_day(day(0), moved, reference, T, 14, START, golden=golden, golden_stale_psi=0.2)
    assert verdict.golden_stale and verdict.golden_stale_features == ["amount"]
    same = judge_day(day(0), {day(0): frame(rng, 3000)}, reference, T, 14, START, golden=golden)
    assert not same.golden_stale


# --- the thresholds the decisions use are the contract's --------------------------------------------------


def drift_of(tmp_path, **drift) -> Drift:
    return load_contract(write_contract(tmp_path / "c.yaml", thresholds={"drift": drift})).thresholds.drift


def test_the_outsized_day_factor_set_in_the_contract_decides_what_is_pooled(tmp_path):
    rng = np.random.default_rng(5)
    frames = {day(i): frame(rng, 60) for i in range(30)}
    frames[day(27)] = frame(rng, 3000)  # a catch-up delivery: 50x the typical day
    reference = build_reference(frame(rng, 5000), ["amount"], ["channel"])
    demo = drift_of(tmp_path)
    assert demo.outsized_day_factor == 10  # the demo contract's value, as the constant was
    left_out = judge_day(day(29), frames, reference, demo, 28, START)
    assert left_out.window_days == 17 and day(27) not in (left_out.window_first, left_out.window_last)
    assert any("outsized day(s) " + day(27) + " (over outsized_day_factor 10x" in r for r in left_out.reasons)
    pooled = judge_day(day(29), frames, reference, drift_of(tmp_path, outsized_day_factor=100), 28, START)
    assert (pooled.window_days, pooled.window_first, pooled.rows) == (3, day(27), 3120)
    assert not any("outsized" in r for r in pooled.reasons)


def test_the_null_rate_alpha_set_in_the_contract_decides_a_null_rate_jump(tmp_path):
    rng = np.random.default_rng(6)
    ref = frame(rng, 4000)
    ref.loc[rng.random(4000) < 0.05, "amount"] = np.nan  # 5% nulls in the reference
    reference = build_reference(ref, ["amount"], ["channel"])
    today = frame(rng, 20)
    today.loc[:3, "amount"] = np.nan  # 4 nulls in 20 rows: 20%, a jump of 15 points > null_rate_jump 0.1
    demo = {f.feature: f for f in feature_drift(reference, today, drift_of(tmp_path))}
    assert demo["amount"].status != "bug"  # P(>= 4 of 20 | 5%) ~ 0.016: not below null_rate_alpha 0.001
    loose = {f.feature: f for f in feature_drift(reference, today, drift_of(tmp_path, null_rate_alpha=0.05))}
    assert loose["amount"].status == "bug" and "null_rate_alpha 0.05" in loose["amount"].reasons[0]


# --- M3: a decline is real on consecutive disjoint windows ------------------------------------------------


def labelled(i: int, rng: np.random.Generator, n: int = 2000, signal: float = 3.0, version: str = "1",
             positives: float = 0.05) -> LabelledDay:
    y = (rng.random(n) < positives).astype(int)
    scores = 1 / (1 + np.exp(-(signal * y + rng.normal(0, 1, n) - 2)))
    return LabelledDay(day(i), version, 0.5, y, scores)


def test_pool_window_gathers_days_until_each_class_has_enough_and_stops_at_a_new_model():
    rng = np.random.default_rng(4)
    days = [labelled(i, rng, n=100, positives=0.05) for i in range(10)]  # ~5 positives a day
    window = pool_window(days, min_per_class=30, max_days=30)
    assert sum(d.positives for d in window) >= 30 and window[-1].day == day(9)
    days[-3] = labelled(7, rng, n=100, version="2")
    days[-2] = labelled(8, rng, n=100, version="2")
    days[-1] = labelled(9, rng, n=100, version="2")
    assert {d.model_version for d in pool_window(days, 30, 30)} == {"2"}  # the old model's days never pool in


def judged(states: list[dict], window, reference_low=0.95):
    state = decline_state(window, reference_low, states, auc_decline=0.005, consecutive=2)
    states.append({"first_day": window.first_day, "last_day": window.last_day, "model_version": window.model_version,
                   "enough": window.enough, "below": state.below, "below_streak": state.below_streak,
                   "declining": state.declining, "episode_start": state.episode_start,
                   "episode_reference": state.episode_reference})
    return state


def test_a_decline_needs_two_consecutive_disjoint_windows_below_the_golden_reference():
    rng = np.random.default_rng(5)
    states: list[dict] = []
    good = [evaluate_window([labelled(i, rng)], 30, 200) for i in range(3)]
    assert not any(judged(states, w).below for w in good)  # AUC ~0.97 vs reference CI-low 0.95: fine
    bad1 = evaluate_window([labelled(3, rng, signal=1.0)], 30, 200)
    first = judged(states, bad1)
    assert first.below and not first.declining and first.episode_start == day(3)  # one low window is noise
    bad2 = evaluate_window([labelled(4, rng, signal=1.0)], 30, 200)
    second = judged(states, bad2)
    assert second.declining and second.episode_start == day(3)


def test_an_open_decline_stays_open_after_re_baselining_until_the_auc_is_back():
    rng = np.random.default_rng(6)
    states: list[dict] = []
    for i in (0, 1):
        judged(states, evaluate_window([labelled(i, rng, signal=1.0)], 30, 200))
    assert states[-1]["declining"]
    # A new golden version re-baselined the champion low (reference CI-low 0.70): the episode still stands.
    still = judged(states, evaluate_window([labelled(2, rng, signal=1.0)], 30, 200), reference_low=0.70)
    assert still.declining and still.episode_reference == pytest.approx(0.95)
    # A noisy window that is merely not confidently below (its CI straddles the reference) does not close it.
    straddling = evaluate_window([labelled(3, np.random.default_rng(0), n=600, signal=2.4)], 30, 200)
    assert straddling.auc_ci_low < 0.95 - 0.005 <= straddling.auc_ci_high, straddling
    assert judged(states, straddling, reference_low=0.70).declining
    back = judged(states, evaluate_window([labelled(4, rng, signal=4.0)], 30, 200), reference_low=0.70)
    assert not back.declining and "recovered" in back.reason


def test_a_window_with_too_few_labels_is_not_judged_but_does_not_close_an_episode():
    rng = np.random.default_rng(7)
    states: list[dict] = []
    tiny = evaluate_window([labelled(0, rng, n=40)], 30, 200)
    assert not tiny.enough and "not judged" in judged(states, tiny).reason
    for i in (1, 2):
        judged(states, evaluate_window([labelled(i, rng, signal=1.0)], 30, 200))
    assert judged(states, evaluate_window([labelled(3, rng, n=40)], 30, 200)).declining


# --- M4: the sensor's decision ---------------------------------------------------------------------------


def evidence(**kw) -> Evidence:
    base = dict(champion_version="1", drift_day=day(20), drift_status="stable", performance_day=day(20),
                declining=False, episode_start=None, performance_model_version="1", labelled_through=day(17),
                golden_window_days=5)
    return Evidence(**{**base, **kw})


DECLINE = dict(declining=True, episode_start=day(2), performance_reason="AUC 0.61 below")


def test_a_confirmed_decline_triggers_one_retrain_with_a_golden_refresh():
    d = retrain_decision(evidence(**DECLINE), "decline", cooldown_days=7, last=None, min_new_days=5)
    assert d.retrain and d.refresh_golden == "decline" and d.run_key == "retrain:champion-v1:as-of-" + day(20)
    assert "confirmed decline since " + day(2) in d.reason


def test_no_retrain_on_pipeline_bug_signals():
    d = retrain_decision(evidence(**DECLINE, drift_status="bug", drift_reasons="merchant: null rate 20%"), "decline",
                         7, None)
    assert not d.retrain and "pipeline bug" in d.reason and "null rate" in d.reason


@pytest.mark.parametrize(("trigger", "drift", "decline", "expected"), [
    ("decline", False, True, True),  # concept drift: PSI stays low, labels tell
    ("decline", True, False, False),  # covariate drift the model copes with
    ("drift_and_decline", False, True, False),
    ("drift_and_decline", True, True, True),
    ("drift_or_decline", True, False, True),
    ("drift_or_decline", False, False, False),
])
def test_the_contract_chooses_which_evidence_triggers(trigger, drift, decline, expected):
    e = evidence(**(DECLINE if decline else {}), drift_status="act" if drift else "stable")
    assert retrain_decision(e, trigger, 7, None).retrain is expected


def test_one_retrain_in_flight_and_a_cooldown_after_one_that_left_the_champion_in_place():
    e = evidence(**DECLINE)
    active = retrain_decision(e, "decline", 7, LastRetrain("abc12345", "active", day(19)))
    assert not active.retrain and "already queued or running" in active.reason
    refused = retrain_decision(e, "decline", 7, LastRetrain("abc12345", "success", day(16)))
    assert not refused.retrain and "cooldown_days 7 (4 so far)" in refused.reason
    later = retrain_decision(evidence(**DECLINE, drift_day=day(23)), "decline", 7,
                             LastRetrain("abc12345", "success", day(16)))
    assert later.retrain
    crashed = retrain_decision(e, "decline", 7, LastRetrain("abc12345", "failure", day(19)))
    assert crashed.retrain, "a run that died or failed must not block the next trigger"


def test_the_first_retrain_of_an_episode_waits_for_enough_days_of_the_new_regime():
    early = evidence(**{**DECLINE, "episode_start": day(12)}, labelled_through=day(17))
    d = retrain_decision(early, "decline", 7, None, min_new_days=5)
    assert not d.retrain and "6 labelled day(s) since, 10 needed" in d.reason
    assert retrain_decision(evidence(**{**DECLINE, "episode_start": day(8)}, labelled_through=day(17)), "decline",
                            7, None, min_new_days=5).retrain


def test_a_decline_of_a_model_that_no_longer_serves_does_not_trigger():
    stale = evidence(**DECLINE, performance_model_version="1", champion_version="2")
    assert not retrain_decision(stale, "decline", 7, None).retrain


def test_a_step_stays_a_bug_while_it_holds_and_becomes_the_new_normal_after_step_accept_days():
    """Amounts switched to cents upstream (in the contract's domain, so ingestion let them through): the first
    day is a step after a stable run, the days after it stay a bug while the level holds, and after
    step_accept_days the level is the new normal (drift). Back to the old level closes it."""
    rng = np.random.default_rng(9)
    reference = build_reference(frame(rng, 5000), ["amount"], ["channel"])
    frames = {day(0): frame(rng, 2000)}
    frames.update({day(i): frame(rng, 2000, shift=2.0) for i in range(1, 10)})
    frames[day(10)] = frame(rng, 2000)
    statuses, record = [], None
    for i in range(11):
        v = judge_day(day(i), frames, reference, T, 14, START, previous_record=record, step_accept_days=7)
        record = v.record()
        statuses.append(v.status)
        if i == 1:
            assert "step" in v.reasons[0] and v.step["anchor"] == day(0)
        if i == 4:
            assert any("the step of " + day(1) + " persists" in r for r in v.reasons)
        if i == 8:
            assert any("new normal" in r for r in v.reasons)
    assert statuses[0] == "stable" and statuses[1:8] == ["bug"] * 7 and statuses[8:10] == ["act", "act"]
    assert statuses[10] == "stable"
