"""Data and prediction drift statistics (RELIABILITY.md M1, M2, M5).

The statistics are computed here, by hand, rather than read from Evidently: Evidently
switches its drift method with sample size (KS/chi2 for small samples, Wasserstein /
Jensen-Shannon above ~1000 rows), so its verdicts are not the PSI/KS/chi-square numbers
the catalog's thresholds are defined on. Evidently is used only for the human report.

Why both a test and PSI per feature: with production-size windows a KS or chi-square
p-value falls below 0.05 for differences too small to matter, while PSI measures the
size of the shift. A feature counts as drifted when its PSI band says so, or when the
test is significant *and* the PSI is at least in the "watch" band.

M5 (bug vs drift): a very large PSI, a constant column that was not constant, or a jump
in the null rate is far more often a broken pipeline than a changed world. Those are
marked ``"bug"`` so that the caller alerts and does not retrain on corrupted data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

EPSILON = 1e-4
"""Floor for bin proportions, so an empty bin gives a large but finite PSI term."""

Status = Literal["stable", "watch", "act", "bug"]
STATUS_ORDER: dict[str, int] = {"stable": 0, "watch": 1, "act": 2, "bug": 3}

NULL_RATE_JUMP = 0.1
"""Absolute increase of the null rate (current minus reference) that M5 treats as a bug."""


def _clean(values: np.ndarray | pd.Series) -> np.ndarray:
    """Float array without NaNs: missing values are tracked as a null rate, not binned.

    Non-numeric values raise rather than being coerced to NaN (D1: never coerce silently).
    """
    arr = pd.Series(np.asarray(values).ravel()).to_numpy(dtype=float, na_value=np.nan)
    return arr[~np.isnan(arr)]


def _psi_from_proportions(ref: np.ndarray, cur: np.ndarray) -> float:
    ref = np.maximum(ref, EPSILON)
    cur = np.maximum(cur, EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population Stability Index of a continuous variable.

    Bin edges are the reference's quantiles, so each bin holds about 1/bins of the
    reference and PSI is sensitive where the reference has mass. Duplicate edges (heavy
    ties, e.g. many zeros) are merged, and the first and last bins are open-ended so a
    current value outside the reference range still lands in a bin instead of being
    dropped. Proportions are floored at ``EPSILON`` so an empty bin gives a finite value.
    NaNs are dropped. Returns NaN when either side has no values (nothing to compare).
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    ref = _clean(reference)
    cur = _clean(current)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    inner = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    n_bins = inner.size + 1
    ref_counts = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=n_bins)
    cur_counts = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=n_bins)
    return _psi_from_proportions(ref_counts / ref.size, cur_counts / cur.size)


def _category_counts(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray, list]:
    """Counts of both series over the union of observed categories (NaNs dropped)."""
    ref_counts = pd.Series(reference).dropna().astype(object).value_counts()
    cur_counts = pd.Series(current).dropna().astype(object).value_counts()
    categories = list(ref_counts.index.union(cur_counts.index))
    ref_c = ref_counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    cur_c = cur_counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    return ref_c, cur_c, categories


def psi_categorical(reference: pd.Series, current: pd.Series) -> float:
    """PSI of a categorical variable over the union of categories seen on either side.

    Using the union means a category that appears only in the current window (a new
    merchant type, a typo from upstream) contributes to the index instead of vanishing.
    NaNs are dropped; returns NaN when either side has no values.
    """
    ref_c, cur_c, _ = _category_counts(reference, current)
    if ref_c.sum() == 0 or cur_c.sum() == 0:
        return float("nan")
    return _psi_from_proportions(ref_c / ref_c.sum(), cur_c / cur_c.sum())


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test (statistic, p-value), NaNs dropped.

    Returns (NaN, NaN) when either side is empty, so "no data" is never read as
    "significant drift" or as "no drift".
    """
    ref = _clean(reference)
    cur = _clean(current)
    if ref.size == 0 or cur.size == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def chi2_test(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Chi-square test of homogeneity of category counts (statistic, p-value).

    Uses ``chi2_contingency`` on the 2xK table (reference counts, current counts) over
    the union of categories rather than ``chisquare`` of the current counts against
    expected counts from the reference proportions, because:

    * the reference is itself a sample; ``chisquare`` treats its proportions as exact
      and so overstates the evidence (more false alarms with a small reference);
    * a category absent from the reference has expected count 0 under ``chisquare``,
      which makes the statistic infinite; in the contingency table it is a normal
      column with a positive total.

    Returns (0.0, 1.0) when there is only one category overall (nothing can differ) and
    (NaN, NaN) when either side is empty.
    """
    ref_c, cur_c, _ = _category_counts(reference, current)
    if ref_c.sum() == 0 or cur_c.sum() == 0:
        return float("nan"), float("nan")
    if ref_c.size < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(np.vstack([ref_c, cur_c]))
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class DriftThresholds:
    """PSI bands and test significance levels (M1, M5); defaults from RELIABILITY.md."""

    psi_watch: float = 0.1
    psi_act: float = 0.2
    psi_bug: float = 0.5
    ks_pvalue: float = 0.05
    chi2_pvalue: float = 0.05

    def status_for(self, value: float) -> Status:
        """PSI band: < watch stable, < act watch, < bug act, >= bug bug."""
        if value < self.psi_watch:
            return "stable"
        if value < self.psi_act:
            return "watch"
        if value < self.psi_bug:
            return "act"
        return "bug"


@dataclass
class FeatureDrift:
    """Drift result of one feature; ``reasons`` says why a feature was marked ``"bug"``."""

    feature: str
    kind: Literal["numeric", "categorical"]
    psi: float
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    status: Status
    importance: float = 1.0
    null_rate_reference: float = 0.0
    null_rate_current: float = 0.0
    reasons: list[str] = field(default_factory=list)
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def p_value_threshold(self) -> float:
        return self.thresholds.ks_pvalue if self.test == "ks" else self.thresholds.chi2_pvalue

    @property
    def drifted(self) -> bool:
        """PSI says act/bug, or the test is significant and the shift is at least "watch".

        A significant test alone is not enough: with large windows it fires on shifts
        too small to matter (see module docstring).
        """
        if self.status in ("act", "bug"):
            return True
        significant = not math.isnan(self.p_value) and self.p_value < self.p_value_threshold
        return significant and not math.isnan(self.psi) and self.psi >= self.thresholds.psi_watch

    def to_row(self) -> dict:
        row = asdict(self)
        row.pop("thresholds")
        row["reasons"] = "; ".join(self.reasons)
        row["drifted"] = self.drifted
        return row


def _null_rate(series: pd.Series) -> float:
    return float(series.isna().mean()) if len(series) else 0.0


def _bug_reasons(ref: pd.Series, cur: pd.Series, null_ref: float, null_cur: float) -> list[str]:
    """M5 signs of a pipeline bug, independent of the PSI value."""
    reasons: list[str] = []
    ref_unique = ref.dropna().nunique()
    cur_unique = cur.dropna().nunique()
    if len(cur.dropna()) == 0 and len(ref.dropna()) > 0:
        reasons.append("current has no non-null values")
    elif cur_unique == 1 and len(cur.dropna()) >= 2 and ref_unique > 1:
        reasons.append(f"current is constant ({cur.dropna().iloc[0]!r}) but reference has {ref_unique} values")
    if null_cur - null_ref > NULL_RATE_JUMP:
        reasons.append(f"null rate jumped from {null_ref:.3f} to {null_cur:.3f} (> +{NULL_RATE_JUMP})")
    if len(ref.dropna()) == 0:
        reasons.append("reference has no non-null values")
    return reasons


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    thresholds: DriftThresholds,
    importance: dict[str, float] | None = None,
) -> list[FeatureDrift]:
    """Per-feature drift (M1) with the M5 bug checks.

    ``numeric`` and ``categorical`` should list only the features the model receives;
    ID and high-cardinality columns are the caller's to exclude (M1). Status comes from
    the PSI bands, then is raised to ``"bug"`` when the current column is constant while
    the reference is not, or its null rate exceeds the reference's by more than 0.1
    absolute. A feature missing from ``current`` is treated as all-null (so it is a bug:
    a feature missing at serving). A feature missing from ``reference`` is a
    configuration error and raises ``KeyError``.

    ``importance``: weights for alerting (M1). When given, a feature not in the mapping
    gets weight 0.0 (the model does not rely on it); when ``None`` every feature gets 1.0.
    """
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ValueError(f"features listed as both numeric and categorical: {sorted(overlap)}")
    missing_ref = [c for c in [*numeric, *categorical] if c not in reference.columns]
    if missing_ref:
        raise KeyError(f"features missing from the reference: {missing_ref}")

    results: list[FeatureDrift] = []
    for kind, columns in (("numeric", numeric), ("categorical", categorical)):
        for column in columns:
            ref = reference[column]
            if column in current.columns:
                cur = current[column]
                absent = False
            else:
                cur = pd.Series([np.nan] * len(current), index=current.index, dtype=float)
                absent = True
            if kind == "numeric":
                value = psi(ref.to_numpy(), cur.to_numpy())
                statistic, p_value = ks_test(ref.to_numpy(), cur.to_numpy())
                test = "ks"
            else:
                value = psi_categorical(ref, cur)
                statistic, p_value = chi2_test(ref, cur)
                test = "chi2"
            null_ref, null_cur = _null_rate(ref), _null_rate(cur)
            reasons = _bug_reasons(ref, cur, null_ref, null_cur)
            if absent:
                reasons.insert(0, "column missing from current")
            status: Status = "stable" if math.isnan(value) else thresholds.status_for(value)
            if status == "bug":
                reasons.insert(0, f"PSI {value:.3f} >= {thresholds.psi_bug}")
            if reasons:
                status = "bug"
            weight = 1.0 if importance is None else float(importance.get(column, 0.0))
            results.append(
                FeatureDrift(
                    feature=column,
                    kind=kind,  # type: ignore[arg-type]
                    psi=value,
                    test=test,  # type: ignore[arg-type]
                    statistic=statistic,
                    p_value=p_value,
                    status=status,
                    importance=weight,
                    null_rate_reference=null_ref,
                    null_rate_current=null_cur,
                    reasons=reasons,
                    thresholds=thresholds,
                )
            )
    return results


@dataclass
class DriftSummary:
    """Window-level drift verdict: the worst feature status and an importance-weighted score."""

    status: Status
    max_psi: float
    drifted_features: list[str]
    bug_features: list[str]
    weighted_drift_score: float
    features: list[FeatureDrift]

    def to_table(self) -> pd.DataFrame:
        """One row per feature, for asset metadata and the UI."""
        columns = [
            "feature", "kind", "psi", "test", "statistic", "p_value", "status", "importance",
            "null_rate_reference", "null_rate_current", "reasons", "drifted",
        ]  # fmt: skip
        return pd.DataFrame([f.to_row() for f in self.features], columns=columns)


def summarize(features: list[FeatureDrift]) -> DriftSummary:
    """Worst status over features, max PSI and the importance-weighted PSI (M1 alert weighting).

    The weighted score is ``sum(importance * psi) / sum(importance)`` over features with
    a defined PSI; when all weights are zero it falls back to the plain mean, so a
    misconfigured importance map cannot hide drift behind a 0/0.
    """
    if not features:
        return DriftSummary("stable", 0.0, [], [], 0.0, [])
    status: Status = max((f.status for f in features), key=lambda s: STATUS_ORDER[s])
    defined = [f for f in features if not math.isnan(f.psi)]
    max_psi = max((f.psi for f in defined), default=float("nan"))
    weights = np.array([f.importance for f in defined], dtype=float)
    values = np.array([f.psi for f in defined], dtype=float)
    if values.size == 0:
        weighted = float("nan")
    elif weights.sum() > 0:
        weighted = float(np.sum(weights * values) / weights.sum())
    else:
        weighted = float(values.mean())
    return DriftSummary(
        status=status,
        max_psi=float(max_psi),
        drifted_features=[f.feature for f in features if f.status in ("act", "bug")],
        bug_features=[f.feature for f in features if f.status == "bug"],
        weighted_drift_score=weighted,
        features=list(features),
    )


def prediction_drift(reference_scores: np.ndarray, current_scores: np.ndarray, threshold: float) -> dict:
    """Score-distribution drift (M2): mean/std, KS, predicted-positive share and PSI.

    Prediction drift is visible before labels arrive, so it is the earliest sign that
    the model now sees something different. A score counts as a positive prediction
    when ``score >= threshold`` (the same rule as the serving decision).
    """
    ref = _clean(reference_scores)
    cur = _clean(current_scores)
    ks_stat, ks_p = ks_test(ref, cur)

    def _share(x: np.ndarray) -> float:
        return float(np.mean(x >= threshold)) if x.size else float("nan")

    def _mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else float("nan")

    def _std(x: np.ndarray) -> float:
        return float(np.std(x)) if x.size else float("nan")

    return {
        "reference_mean": _mean(ref),
        "reference_std": _std(ref),
        "current_mean": _mean(cur),
        "current_std": _std(cur),
        "ks_statistic": ks_stat,
        "ks_pvalue": ks_p,
        "reference_positive_share": _share(ref),
        "current_positive_share": _share(cur),
        "psi": psi(ref, cur),
        "threshold": float(threshold),
        "reference_rows": int(ref.size),
        "current_rows": int(cur.size),
    }
