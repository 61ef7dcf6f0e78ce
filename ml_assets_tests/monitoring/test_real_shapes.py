"""Drift verdicts on the shapes real data has and the demo simulator never produces (ml_assets_tests/shapes.py):
tiny days with one huge day, a calendar category constant within each day, one market with half-hourly rows and
columns constant for weeks. On stationary data every verdict must stay quiet (no act, no bug), whatever the day's
size; what is constant by design is recognised as such; and each verdict says on how many rows it stands.

Plain functions over the shapes' own landing files (the features computed by the one feature definition), so
these run in seconds; the loop on them runs in test_replay.py.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from ml_assets.contract import load_contract
from ml_assets.contract.model import Drift
from ml_assets.features.compute import compute_features
from ml_assets.monitoring.drift import build_reference
from ml_assets.monitoring.verdict import judge_day
from ml_assets_tests import shapes


def daily_features(shape) -> tuple[object, dict[str, pd.DataFrame]]:
    contract = load_contract(shape.contract_path)
    files = sorted((shape.landing / contract.records.dir).glob("*.csv"))
    records = pd.concat([pd.read_csv(f, dtype={contract.record_id: str, contract.entity: str}) for f in files],
                        ignore_index=True)
    records[contract.timestamp] = pd.to_datetime(records[contract.timestamp], utc=True)
    features = compute_features(records, contract)
    days = features[contract.timestamp].dt.date.astype(str)
    return contract, {d: f.reset_index(drop=True) for d, f in features.groupby(days)}


def verdicts(contract, frames: dict[str, pd.DataFrame], train_days: list[str], judge: list[str], **settings):
    reference_frame = pd.concat([frames[d] for d in train_days], ignore_index=True)
    reference_days = pd.to_datetime(reference_frame[contract.timestamp], utc=True).dt.date
    reference = build_reference(reference_frame, contract.numeric_features, contract.categorical_features,
                                reference_days)
    t = Drift(**{**contract.thresholds.drift.model_dump(), **settings})
    cache: dict = {}
    return {d: judge_day(d, frames, reference, t, contract.thresholds.drift.max_window_days,
                         contract.first_complete_day, reference_frame=reference_frame, reference_days=reference_days,
                         calendar_cache=cache) for d in judge}


def test_tiny_days_and_a_huge_day_raise_no_false_alarm(tmp_path):
    shape = shapes.tiny_and_huge_days(tmp_path, days=60, huge_day=45)
    contract, frames = daily_features(shape)
    days = sorted(frames)
    # ~27 rows a day: a user sets min_rows so that a few weeks of them are judged (the default, 1000 rows within
    # 28 days, would leave every tiny day not judged, and say so).
    found = verdicts(contract, frames, days[1:35], days[35:], min_rows=500)
    judged = {d: v for d, v in found.items() if v.status not in ("not_judged", "warm_up")}
    assert judged, "pooled over enough days, tiny days are judged"
    assert all(v.rows >= 500 for v in judged.values())
    huge = shape.expect["huge_day"]
    # The catch-up day itself is drift on the features the model receives: 20,000 readings in a day make the
    # per-sensor daily count and mean unlike anything in training. It stands on its own rows, and it never
    # leaks into the windows of the tiny days around it.
    assert {d: v.status for d, v in found.items() if v.status in ("act", "bug")} == {huge: "act"}, \
        {d: v.reasons for d, v in found.items() if v.status in ("act", "bug")}
    assert found[huge].window_days == 1 and found[huge].rows > 10_000
    assert set(found[huge].drifted_features) == {"value_count_1d", "value_mean_1d"}
    after = [v for d, v in found.items() if d > huge and v.window_days > 1]
    assert after and all(any(f"outsized day(s) {huge}" in r for r in v.reasons) for v in after
                         if v.window_first < huge)
    small = [v for v in judged.values() if v.window_days > 1]
    assert small and all(any("pooled over" in r for r in v.reasons) for v in small)


def test_a_calendar_category_constant_within_each_day_is_by_design(tmp_path):
    shape = shapes.many_entities_daily_category(tmp_path, days=45)
    contract, frames = daily_features(shape)
    days = sorted(frames)
    found = verdicts(contract, frames, days[1:29], days[29:])
    assert {d: v.status for d, v in found.items() if v.status in ("act", "bug")} == {}, \
        {d: (v.status, v.reasons[:2]) for d, v in found.items() if v.status in ("act", "bug")}
    for v in found.values():
        by_feature = {f.feature: f for f in v.summary.features}
        for name in ("promo", "weekday"):
            assert by_feature[name].status == "not_judged" and "by design" in by_feature[name].reasons[0]
    # Promotion days are compared with the reference's promotion days, not with the whole mix.
    sale = next(d for d in found if dt.date.fromisoformat(d).weekday() >= 5)
    assert any("same calendar" in r and "promo=weekend_sale" in r for r in found[sale].reasons), found[sale].reasons


@pytest.mark.parametrize("train_from", [0, 12])
def test_one_market_with_half_hourly_rows_and_columns_constant_for_weeks(tmp_path, train_from):
    """Elec2's shape: the day of week and the date are constant within a day; vicprice/vicdemand/transfer hold
    one value for the first weeks. Trained inside the constant weeks, those columns cannot be judged against the
    reference; trained across the change, they are judged normally. Never a bug, before the concept drift."""
    shape = shapes.elec2_like(tmp_path, days=70, constant_days=20, drift_start=60)
    contract, frames = daily_features(shape)
    days = sorted(frames)
    train = days[train_from:train_from + 18]
    found = verdicts(contract, frames, train, days[30:58])
    assert {d: v.status for d, v in found.items() if v.status == "bug"} == {}
    judged = [v for v in found.values() if v.status != "not_judged"]
    assert judged and all(v.rows >= contract.thresholds.drift.min_rows and v.window_days > 1 for v in judged)
    day = {f.feature: f for f in judged[-1].summary.features}
    assert day["day"].status == "not_judged"
    if train_from == 0:  # the reference saw transfer constant: it cannot judge it
        assert day["transfer"].status == "not_judged" and "constant in the reference" in day["transfer"].reasons[0]
    else:
        # The reference mixes the constant weeks with the varying ones: drift, judged (never a bug).
        assert day["transfer"].status in ("stable", "watch", "act")
