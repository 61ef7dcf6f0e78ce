"""Drift statistics (M1, M2, M5), the Evidently report (M7) and performance with CIs (M3).

Each test injects the condition the safeguard is meant to detect and checks it fires,
and checks the unchanged case stays quiet.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from ml_assets.contract.model import Drift
from ml_assets.metrics import bootstrap_metric, classification_metrics, roc_auc
from ml_assets.monitoring.drift import (
    FeatureDrift,
    build_reference,
    chi2_test,
    feature_drift,
    ks_test,
    prediction_drift,
    psi,
    psi_categorical,
    step_reasons,
    summarize,
)
from ml_assets.monitoring.report import write_evidently_report

THRESHOLDS = Drift()


def _frame(rng: np.random.Generator, n: int, amount_shift: float = 0.0, mix: tuple[float, ...] = (0.6, 0.3, 0.1)):
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.0 + amount_shift, 1.0, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "channel": rng.choice(["pos", "online", "atm"], size=n, p=list(mix)),
        }
    )


# --- PSI / KS -----------------------------------------------------------------------


def test_psi_near_zero_for_same_distribution_and_large_for_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 20_000)
    same = rng.normal(0, 1, 20_000)
    shifted = rng.normal(1.0, 1, 20_000)
    assert psi(ref, same) < 0.01
    assert psi(ref, shifted) > 0.2
    # KS agrees: no evidence for the same distribution, overwhelming for the shift.
    _, p_same = ks_test(ref, same)
    stat_shift, p_shift = ks_test(ref, shifted)
    assert p_same > 0.01
    assert p_shift < 1e-10 and stat_shift > 0.3


def test_psi_handles_out_of_range_empty_bins_and_nans():
    ref = np.linspace(0, 1, 1000)
    # All current values beyond the reference max: open-ended last bin catches them,
    # the empty bins are floored at epsilon, so the result is finite and very large.
    far = np.full(500, 10.0)
    value = psi(ref, far)
    assert math.isfinite(value) and value > 0.5
    # NaNs are dropped, not binned.
    with_nans = np.concatenate([np.linspace(0, 1, 1000), [np.nan] * 300])
    assert psi(ref, with_nans) < 1e-6
    assert math.isnan(psi(ref, np.array([np.nan, np.nan])))


def test_psi_with_heavy_ties_deduplicates_edges():
    rng = np.random.default_rng(2)
    ref = np.where(rng.random(5000) < 0.7, 0.0, rng.exponential(10, 5000))
    cur = np.where(rng.random(5000) < 0.7, 0.0, rng.exponential(10, 5000))
    assert psi(ref, cur) < 0.02
    more_zeros = np.where(rng.random(5000) < 0.95, 0.0, rng.exponential(10, 5000))
    assert psi(ref, more_zeros) > 0.2


# --- categorical --------------------------------------------------------------------


def test_categorical_psi_and_chi2_on_shifted_mix():
    rng = np.random.default_rng(3)
    ref = pd.Series(rng.choice(["a", "b", "c"], 5000, p=[0.6, 0.3, 0.1]))
    same = pd.Series(rng.choice(["a", "b", "c"], 5000, p=[0.6, 0.3, 0.1]))
    shifted = pd.Series(rng.choice(["a", "b", "c"], 5000, p=[0.2, 0.3, 0.5]))

    assert psi_categorical(ref, same) < 0.01
    _, p_same = chi2_test(ref, same)
    assert p_same > 0.01

    assert psi_categorical(ref, shifted) > 0.2
    stat, p_shift = chi2_test(ref, shifted)
    assert p_shift < 1e-10 and stat > 100


def test_categorical_new_category_counts_and_stays_finite():
    ref = pd.Series(["a"] * 500 + ["b"] * 500)
    cur = pd.Series(["a"] * 400 + ["b"] * 400 + ["NEW"] * 200)
    value = psi_categorical(ref, cur)
    assert math.isfinite(value) and value > 0.5
    stat, p = chi2_test(ref, cur)
    assert math.isfinite(stat) and p < 1e-10


# --- feature_drift / M5 ---------------------------------------------------------------


def _ref(frame: pd.DataFrame, numeric=("amount", "hour"), categorical=("channel",), days=None):
    return build_reference(frame, list(numeric), list(categorical), days)


def _days(n: int, per_day: int) -> pd.Series:
    return pd.Series(np.repeat(np.arange(n // per_day + 1), per_day)[:n])


def test_ks_and_chi2_equal_scipys_on_ties_small_and_large_samples():
    rng = np.random.default_rng(40)
    cases = [(rng.normal(size=30), rng.normal(0.3, size=20)),  # exact p-value regime
             (rng.poisson(3, 20_000).astype(float), rng.poisson(3.1, 50_000).astype(float)),  # heavy ties, asymptotic
             (np.round(rng.lognormal(size=25_000), 1), np.round(rng.lognormal(0.02, size=12_000), 1))]
    for ref, cur in cases:
        expected = stats.ks_2samp(ref, cur)
        assert ks_test(ref, cur) == (expected.statistic, expected.pvalue)
    ref = pd.Series(rng.choice(["a", "b", "c"], 3000))
    cur = pd.Series(rng.choice(["a", "b", "c", "d"], 2000))
    table = pd.crosstab(np.r_[np.zeros(3000), np.ones(2000)], np.r_[ref, cur])
    expected = stats.chi2_contingency(table.to_numpy())
    assert chi2_test(ref, cur) == pytest.approx((expected.statistic, expected.pvalue))


def test_feature_drift_statuses_for_stable_and_shifted_features():
    rng = np.random.default_rng(4)
    reference = _ref(_frame(rng, 5000))
    cur = _frame(rng, 5000, amount_shift=1.0)
    result = {f.feature: f for f in feature_drift(reference, cur, THRESHOLDS)}
    assert result["hour"].status == "stable" and not result["hour"].drifted
    assert result["channel"].status == "stable" and result["channel"].test == "chi2"
    # A large in-domain shift is drift (act), never a bug by itself: PSI is far above psi_bug here.
    assert result["amount"].psi > THRESHOLDS.psi_bug
    assert result["amount"].status == "act" and result["amount"].drifted
    assert result["amount"].test == "ks" and result["amount"].p_value < 0.05


def test_constant_current_column_is_a_bug_when_the_reference_days_vary():
    rng = np.random.default_rng(5)
    frame = _frame(rng, 3000)
    reference = _ref(frame, days=_days(3000, 300))
    cur = _frame(rng, 3000)
    cur["hour"] = 0.0  # e.g. a broken parser defaulting every timestamp to midnight
    cur["channel"] = "pos"
    result = {f.feature: f for f in feature_drift(reference, cur, THRESHOLDS)}
    assert result["hour"].status == "bug" and "constant" in result["hour"].reasons[0]
    assert result["channel"].status == "bug"
    assert result["amount"].status == "stable"


def test_constant_is_not_a_bug_on_a_small_day_where_one_category_dominates():
    # 95% of the reference is "pos": 20 rows that all say "pos" happen a third of the time by chance.
    rng = np.random.default_rng(15)
    frame = _frame(rng, 4000, mix=(0.95, 0.04, 0.01))
    reference = _ref(frame, days=_days(4000, 400))
    small = _frame(rng, 20, mix=(0.95, 0.04, 0.01))
    small["channel"] = "pos"
    channel = {f.feature: f for f in feature_drift(reference, small, THRESHOLDS)}["channel"]
    assert channel.status != "bug", channel.reasons


def test_a_column_constant_by_design_within_each_day_is_not_judged_day_by_day():
    # Day of week on a daily partition: constant within every reference day, constant today. Not a bug, and
    # one day's value says nothing about drift.
    rng = np.random.default_rng(16)
    frame = _frame(rng, 2800)
    days = _days(2800, 400)
    frame["weekday"] = (days % 7).astype(float)
    reference = build_reference(frame, ["amount", "weekday"], [], days)
    today = _frame(rng, 400)
    today["weekday"] = 3.0
    weekday = {f.feature: f for f in feature_drift(reference, today, THRESHOLDS)}["weekday"]
    assert weekday.status == "not_judged" and "by design" in weekday.reasons[0]


def test_a_column_constant_in_the_reference_is_not_judged_against_it():
    rng = np.random.default_rng(17)
    frame = _frame(rng, 2000)
    frame["transfer"] = 0.4149  # happened not to vary in the training window
    reference = build_reference(frame, ["amount", "transfer"], [], _days(2000, 200))
    today = _frame(rng, 2000)
    today["transfer"] = rng.uniform(0, 1, 2000)
    transfer = {f.feature: f for f in feature_drift(reference, today, THRESHOLDS)}["transfer"]
    assert transfer.status == "not_judged" and "constant in the reference" in transfer.reasons[0]


def test_null_rate_jump_over_the_worst_reference_day_is_a_bug_even_with_small_psi():
    rng = np.random.default_rng(6)
    frame = _frame(rng, 4000)
    frame.loc[rng.random(4000) < 0.02, "amount"] = np.nan  # the reference has a few nulls, 2% on its worst days
    reference = _ref(frame, days=_days(4000, 400))
    cur = _frame(rng, 4000)
    # 20% of values go missing at random: the remaining distribution is unchanged (PSI ~ 0).
    cur.loc[rng.random(4000) < 0.2, "amount"] = np.nan
    amount = {f.feature: f for f in feature_drift(reference, cur, THRESHOLDS)}["amount"]
    assert amount.psi < THRESHOLDS.psi_watch
    assert amount.status == "bug" and "null rate" in amount.reasons[0]
    # A small rise (5%) is not a bug, nor is a jump on too few rows to mean anything.
    cur2 = _frame(rng, 4000)
    cur2.loc[rng.random(4000) < 0.05, "amount"] = np.nan
    assert {f.feature: f for f in feature_drift(reference, cur2, THRESHOLDS)}["amount"].status == "stable"
    tiny = _frame(rng, 4)
    tiny.loc[:1, "amount"] = np.nan  # 2 of 4 rows null
    assert {f.feature: f for f in feature_drift(reference, tiny, THRESHOLDS)}["amount"].status != "bug"


def test_feature_missing_from_current_is_a_bug():
    rng = np.random.default_rng(7)
    reference = _ref(_frame(rng, 1000))
    cur = _frame(rng, 1000).drop(columns=["hour"])
    hour = {f.feature: f for f in feature_drift(reference, cur, THRESHOLDS)}["hour"]
    assert hour.status == "bug" and "missing" in hour.reasons[0]


def test_a_step_right_after_a_stable_day_is_a_bug_and_the_day_after_is_drift():
    rng = np.random.default_rng(18)
    reference = _ref(_frame(rng, 5000))
    stable_day = _frame(rng, 3000)
    jumped = _frame(rng, 3000, amount_shift=1.5)
    steps = step_reasons(reference, stable_day, jumped, THRESHOLDS)
    assert set(steps) == {"amount"} and "step" in steps["amount"]
    # The next day stays at the new level: no step from the day before (which was not stable).
    assert step_reasons(reference, jumped, _frame(rng, 3000, amount_shift=1.5), THRESHOLDS) == {}
    # On days smaller than min_rows a step cannot be seen.
    assert step_reasons(reference, stable_day.head(200), jumped.head(200), THRESHOLDS) == {}


def test_drifted_property_requires_test_and_psi_watch():
    base = dict(feature="x", kind="numeric", test="ks", statistic=0.1, thresholds=THRESHOLDS)
    assert not FeatureDrift(psi=0.05, p_value=1e-9, status="stable", **base).drifted  # significant, tiny shift
    assert FeatureDrift(psi=0.15, p_value=1e-9, status="watch", **base).drifted
    assert not FeatureDrift(psi=0.15, p_value=0.5, status="watch", **base).drifted
    assert FeatureDrift(psi=0.3, p_value=0.5, status="act", **base).drifted


def test_summarize_acts_only_on_features_the_model_relies_on():
    def fd(name: str, value: float, status: str, importance: float) -> FeatureDrift:
        return FeatureDrift(name, "numeric", value, "ks", 0.1, 0.5, status, importance)  # type: ignore[arg-type]

    unimportant = summarize([fd("a", 0.05, "stable", 0.97), fd("b", 0.3, "act", 0.01)], THRESHOLDS)
    assert unimportant.status == "watch" and unimportant.drifted_features == [] and unimportant.watched_features == ["b"]
    important = summarize([fd("a", 0.05, "stable", 0.5), fd("b", 0.3, "act", 0.5)], THRESHOLDS)
    assert important.status == "act" and important.drifted_features == ["b"]
    assert important.weighted_drift_score == pytest.approx(0.5 * 0.05 + 0.5 * 0.3)
    with_bug = summarize([fd("a", 0.05, "stable", 0.5), fd("d", 0.7, "bug", 0.5)], THRESHOLDS)
    assert with_bug.status == "bug" and with_bug.bug_features == ["d"]
    assert list(with_bug.to_table()["status"]) == ["stable", "bug"]


def test_importance_map_weights_the_score_and_the_verdict():
    rng = np.random.default_rng(8)
    reference = _ref(_frame(rng, 3000), categorical=())
    cur = _frame(rng, 3000, amount_shift=1.0)
    heavy = summarize(feature_drift(reference, cur, THRESHOLDS, importance={"amount": 0.9, "hour": 0.1}))
    light = summarize(feature_drift(reference, cur, THRESHOLDS, importance={"amount": 0.01, "hour": 0.99}))
    assert heavy.weighted_drift_score > 3 * light.weighted_drift_score
    assert heavy.status == "act" and light.status == "watch"


def test_prediction_drift_reports_score_shift_and_positive_share():
    rng = np.random.default_rng(9)
    ref = rng.beta(2, 8, 5000)
    same = prediction_drift(ref, rng.beta(2, 8, 5000), threshold=0.5)
    assert same["psi"] < 0.02 and same["ks_pvalue"] > 0.01
    assert same["current_positive_share"] == pytest.approx(same["reference_positive_share"], abs=0.01)

    shifted = prediction_drift(ref, rng.beta(5, 5, 5000), threshold=0.5)
    assert shifted["current_mean"] > shifted["reference_mean"] + 0.2
    assert shifted["ks_pvalue"] < 1e-10 and shifted["psi"] > 0.5
    assert shifted["current_positive_share"] > 0.3 > shifted["reference_positive_share"]


# --- Evidently report (M7) ------------------------------------------------------------


def test_evidently_report_is_written_atomically_as_html(tmp_path):
    rng = np.random.default_rng(10)
    ref = _frame(rng, 300)
    cur = _frame(rng, 300, amount_shift=1.0)
    target = tmp_path / "reports" / "drift.html"
    out = write_evidently_report(ref, cur, target, title="window 2024-01-01")
    assert out == target and target.is_file()
    html = target.read_text(encoding="utf-8")
    assert "<html" in html.lower()
    for name in ("amount", "hour", "channel"):
        assert name in html
    assert "<title>window 2024-01-01</title>" in html
    # No temporary file left behind.
    assert [p.name for p in target.parent.iterdir()] == ["drift.html"]


# --- performance (M3) -----------------------------------------------------------------


def _labelled(rng: np.random.Generator, n: int, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.3).astype(int)
    score = 1 / (1 + np.exp(-(signal * y + rng.normal(0, 1, n) - 0.7)))
    return y, score


def test_bootstrap_ci_contains_point_value_and_narrows_with_more_data():
    rng = np.random.default_rng(11)
    y_small, s_small = _labelled(rng, 300)
    y_big, s_big = _labelled(rng, 6000)
    small = bootstrap_metric(y_small, s_small, roc_auc, n_resamples=200, seed=0)
    big = bootstrap_metric(y_big, s_big, roc_auc, n_resamples=200, seed=0)
    for ci in (small, big):
        assert ci.low <= ci.value <= ci.high
        assert ci.n_resamples == 200
    assert big.width < small.width / 2
    # Reproducible with the same seed.
    assert bootstrap_metric(y_small, s_small, roc_auc, n_resamples=200, seed=0) == small


def test_fast_roc_auc_matches_sklearn_including_ties():
    rng = np.random.default_rng(12)
    y, s = _labelled(rng, 2000)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    coarse = np.round(s, 1)  # many ties
    assert roc_auc(y, coarse) == pytest.approx(roc_auc_score(y, coarse), abs=1e-12)
    with pytest.raises(ValueError):
        roc_auc(np.zeros(5), np.arange(5))


def test_bootstrap_skips_failing_resamples():
    calls = {"n": 0}

    def flaky(y, s):
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise ValueError("boom")
        return float(np.mean(s))

    y = np.array([0, 1] * 50)
    s = np.linspace(0, 1, 100)
    ci = bootstrap_metric(y, s, flaky, n_resamples=100, seed=0)
    # Call 1 is the point value; of the 100 resample calls (2..101), the 50 even ones raise.
    assert ci.n_resamples == 50
    assert ci.low <= ci.high


def test_classification_metrics_values_and_single_class():
    y = np.array([1, 1, 0, 0, 0])
    s = np.array([0.9, 0.4, 0.6, 0.2, 0.1])
    m = classification_metrics(y, s, threshold=0.5)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["positives"] == 2 and m["negatives"] == 3
    assert m["predicted_positive_rate"] == pytest.approx(0.4)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    single = classification_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.7, 0.2, 0.3]), 0.5)
    assert single["roc_auc"] is None and single["average_precision"] is None
