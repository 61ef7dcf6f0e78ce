"""Drift statistics (M1, M2, M5), the Evidently report (M7) and performance with CIs (M3).

Each test injects the condition the safeguard is meant to detect and checks it fires,
and checks the unchanged case stays quiet.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ml_assets.monitoring.drift import (
    DriftThresholds,
    FeatureDrift,
    chi2_test,
    feature_drift,
    ks_test,
    prediction_drift,
    psi,
    psi_categorical,
    summarize,
)
from ml_assets.monitoring.performance import (
    bootstrap_metric,
    classification_metrics,
    performance_decline,
    roc_auc,
)
from ml_assets.monitoring.report import write_evidently_report

THRESHOLDS = DriftThresholds()


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


def test_feature_drift_statuses_for_stable_and_shifted_features():
    rng = np.random.default_rng(4)
    ref = _frame(rng, 5000)
    cur = _frame(rng, 5000, amount_shift=1.0, mix=(0.6, 0.3, 0.1))
    result = {f.feature: f for f in feature_drift(ref, cur, ["amount", "hour"], ["channel"], THRESHOLDS)}
    assert result["hour"].status == "stable" and not result["hour"].drifted
    assert result["channel"].status == "stable" and result["channel"].test == "chi2"
    assert result["amount"].status in ("act", "bug") and result["amount"].drifted
    assert result["amount"].test == "ks" and result["amount"].p_value < 0.05


def test_constant_current_column_is_a_bug():
    rng = np.random.default_rng(5)
    ref = _frame(rng, 3000)
    cur = _frame(rng, 3000)
    cur["hour"] = 0.0  # e.g. a broken parser defaulting every timestamp to midnight
    cur["channel"] = "pos"
    result = {f.feature: f for f in feature_drift(ref, cur, ["amount", "hour"], ["channel"], THRESHOLDS)}
    assert result["hour"].status == "bug"
    assert any("constant" in r for r in result["hour"].reasons)
    assert result["channel"].status == "bug"
    assert result["amount"].status == "stable"


def test_constant_column_is_a_bug_even_when_psi_is_small():
    # Reference is 99% "0" already, so a current that is all "0" barely moves PSI; only
    # the constant-value check (M5) can catch the stuck column.
    ref = pd.DataFrame({"flag": [0.0] * 990 + [1.0] * 10})
    cur = pd.DataFrame({"flag": [0.0] * 1000})
    flag = feature_drift(ref, cur, ["flag"], [], THRESHOLDS)[0]
    assert flag.psi < THRESHOLDS.psi_watch
    assert flag.status == "bug"
    assert any("constant" in r for r in flag.reasons)


def test_null_rate_jump_is_a_bug_even_with_small_psi():
    rng = np.random.default_rng(6)
    ref = _frame(rng, 4000)
    cur = _frame(rng, 4000)
    # 20% of values go missing at random: the remaining distribution is unchanged (PSI ~ 0),
    # but the null rate jumps by 0.2 > 0.1.
    cur.loc[rng.random(4000) < 0.2, "amount"] = np.nan
    result = {f.feature: f for f in feature_drift(ref, cur, ["amount", "hour"], ["channel"], THRESHOLDS)}
    amount = result["amount"]
    assert amount.psi < THRESHOLDS.psi_watch
    assert amount.status == "bug"
    assert amount.null_rate_reference == 0.0 and amount.null_rate_current > 0.15
    # A small null-rate rise (5%) is not a bug.
    cur2 = _frame(rng, 4000)
    cur2.loc[rng.random(4000) < 0.05, "amount"] = np.nan
    amount2 = feature_drift(ref, cur2, ["amount"], [], THRESHOLDS)[0]
    assert amount2.status == "stable"


def test_feature_missing_from_current_is_a_bug():
    rng = np.random.default_rng(7)
    ref = _frame(rng, 1000)
    cur = _frame(rng, 1000).drop(columns=["hour"])
    hour = feature_drift(ref, cur, ["hour"], [], THRESHOLDS)[0]
    assert hour.status == "bug"
    assert "column missing from current" in hour.reasons


def test_drifted_property_requires_test_and_psi_watch():
    base = dict(feature="x", kind="numeric", test="ks", statistic=0.1, thresholds=THRESHOLDS)
    assert not FeatureDrift(psi=0.05, p_value=1e-9, status="stable", **base).drifted  # significant, tiny shift
    assert FeatureDrift(psi=0.15, p_value=1e-9, status="watch", **base).drifted
    assert not FeatureDrift(psi=0.15, p_value=0.5, status="watch", **base).drifted
    assert FeatureDrift(psi=0.3, p_value=0.5, status="act", **base).drifted


def test_summarize_picks_worst_status_and_weighted_score():
    def fd(name: str, value: float, status: str, importance: float) -> FeatureDrift:
        return FeatureDrift(name, "numeric", value, "ks", 0.1, 0.5, status, importance)  # type: ignore[arg-type]

    features = [fd("a", 0.05, "stable", 3.0), fd("b", 0.3, "act", 1.0), fd("c", 0.15, "watch", 0.0)]
    summary = summarize(features)
    assert summary.status == "act"
    assert summary.max_psi == pytest.approx(0.3)
    assert summary.drifted_features == ["b"]
    assert summary.bug_features == []
    assert summary.weighted_drift_score == pytest.approx((3 * 0.05 + 1 * 0.3 + 0 * 0.15) / 4.0)

    with_bug = summarize([*features, fd("d", 0.7, "bug", 1.0)])
    assert with_bug.status == "bug"
    assert with_bug.drifted_features == ["b", "d"] and with_bug.bug_features == ["d"]

    table = with_bug.to_table()
    assert list(table["feature"]) == ["a", "b", "c", "d"]
    assert list(table["status"]) == ["stable", "act", "watch", "bug"]


def test_importance_map_weights_the_score():
    rng = np.random.default_rng(8)
    ref = _frame(rng, 3000)
    cur = _frame(rng, 3000, amount_shift=1.0)
    heavy = summarize(
        feature_drift(ref, cur, ["amount", "hour"], [], THRESHOLDS, importance={"amount": 0.9, "hour": 0.1})
    )
    light = summarize(
        feature_drift(ref, cur, ["amount", "hour"], [], THRESHOLDS, importance={"amount": 0.1, "hour": 0.9})
    )
    assert heavy.weighted_drift_score > 3 * light.weighted_drift_score


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


def test_performance_decline_needs_two_consecutive_low_windows():
    ref = 0.90
    assert performance_decline([0.90, 0.89, 0.88], ref) is True
    assert performance_decline([0.89, 0.90, 0.88], ref) is False  # one low window is noise
    assert performance_decline([0.88], ref) is False  # not enough windows
    assert performance_decline([0.88, None, 0.889], ref) is True  # unlabeled window skipped
    assert performance_decline([0.8955, 0.896], ref) is False  # drop under 0.005 is not a decline
    assert performance_decline([0.89, 0.88, 0.90], ref) is False  # recovered
    assert performance_decline([0.8, 0.8, 0.8], ref, consecutive=3) is True
