"""Data and prediction drift statistics, and the bug-vs-drift verdict (RELIABILITY.md M1, M2, M5, M6).

The statistics are computed here rather than read from Evidently: Evidently switches its drift
method with sample size (KS/chi2 for small samples, Wasserstein / Jensen-Shannon above ~1000
rows), so its verdicts are not the PSI/KS/chi-square numbers the catalog's thresholds are
defined on. The human report (report.py) is rendered with these same methods and thresholds.

How a day is judged (`judge`):

* **On enough rows.** PSI, KS and chi-square on a few dozen rows are noise. The caller pools a
  small day with the days before it until `min_rows` is reached (`monitoring.window`); with fewer
  rows even then the day is `not_judged`. Every verdict records the rows it stands on.
* **Drift.** Per feature: PSI against the training reference (bins at the reference's quantiles),
  KS (numeric) or chi-square (categorical). PSI < watch is stable, < act watch, >= act act. A
  significant test counts only together with PSI >= watch (large windows make every test
  significant). A drifted feature makes the day `act` only when it carries at least
  `min_importance` of the serving model's importance (M1: alerts weighted by importance);
  drift in features the model hardly uses is reported as `watch`.
* **Bug** (M5): the signs of a broken pipeline rather than a changed world —
  a null rate far above the reference's *worst day* (and significant on this many rows);
  a column constant today although the reference's days vary and a constant column of this
  many rows is implausible under the reference (a column constant by design — day of week on a
  daily partition — or a dominant category on a small day is not a bug);
  a feature missing at serving;
  a day-to-day step of PSI >= psi_bug right after a day that was stable (judged only when both
  days hold `min_rows` rows: pooled tiny days cannot show a step).
  A large in-domain shift against the reference — however large — is drift, not a bug: a world
  that moved over days reads as drift. Values outside the contract's domain never get here:
  ingestion quarantines them (D1) and fails the partition when there are too many.
* A feature constant in the reference (a column that happened not to vary in the training
  window) cannot be judged against it: its PSI is meaningless, so it is `not_judged` with that
  reason rather than read as drift or as a bug.

Speed: each current column is sorted once; PSI bins, the KS statistic (evaluated exactly as
scipy's `ks_2samp` does, from the sorted arrays), the null count and the constant check all come
from that one sort, and the reference is profiled once per run (`Reference`), not per day.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from ml_assets.contract.model import Drift

EPSILON = 1e-4
"""Floor for bin proportions, so an empty bin gives a large but finite PSI term."""
BINS = 10
EXACT_KS_MAX_N = 10_000
"""scipy's ks_2samp uses its exact p-value up to this sample size (method='auto'); so do we."""
Status = Literal["stable", "watch", "act", "bug", "not_judged"]
STATUS_ORDER: dict[str, int] = {"not_judged": -1, "stable": 0, "watch": 1, "act": 2, "bug": 3}

# The thresholds (PSI bands, test levels, M5 settings) are the contract's `thresholds.drift` section, `Drift`:
# defined once there, with their defaults and ranges; nothing here repeats them.


# ---- profiles --------------------------------------------------------------------------------------------


def _float_values(values: np.ndarray | pd.Series) -> np.ndarray:
    """Float array (NaN for missing). Non-numeric values raise rather than becoming NaN (D1)."""
    return pd.Series(np.asarray(values).ravel()).to_numpy(dtype=float, na_value=np.nan)


class _Counts(ABC):
    """What every profiled column answers: how many values, how many nulls, whether it is constant."""

    nulls: int

    @property
    @abstractmethod
    def size(self) -> int:
        """Non-null values."""

    @property
    def rows(self) -> int:
        return self.size + self.nulls

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    @abstractmethod
    def distinct_at_most_one(self) -> bool:
        """At most one distinct non-null value."""

    @property
    def constant(self) -> bool:
        return self.size >= 2 and self.distinct_at_most_one


@dataclass(frozen=True)
class NumericColumn(_Counts):
    """One numeric column, sorted once: everything the statistics need comes from here."""

    sorted: np.ndarray  # non-null values, ascending
    nulls: int

    @classmethod
    def of(cls, values: np.ndarray | pd.Series) -> NumericColumn:
        arr = _float_values(values)
        missing = np.isnan(arr)
        return cls(np.sort(arr[~missing]), int(missing.sum()))

    @property
    def size(self) -> int:
        return int(self.sorted.size)

    @property
    def distinct_at_most_one(self) -> bool:
        return not self.size or self.sorted[0] == self.sorted[-1]


@dataclass(frozen=True)
class CategoricalColumn(_Counts):
    counts: dict[str, int]  # non-null categories
    nulls: int

    @classmethod
    def of(cls, values: pd.Series | np.ndarray) -> CategoricalColumn:
        s = pd.Series(values)
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        return cls({str(u): int(c) for u, c in zip(uniques, counts, strict=True)}, int((codes < 0).sum()))

    @property
    def size(self) -> int:
        return sum(self.counts.values())

    @property
    def distinct_at_most_one(self) -> bool:
        return len(self.counts) <= 1


Column = NumericColumn | CategoricalColumn


@dataclass(frozen=True)
class ReferenceColumn:
    """A reference column plus what M5 needs to know about its days."""

    column: Column
    edges: np.ndarray | None  # numeric: inner PSI bin edges (reference quantiles, deduplicated)
    proportions: np.ndarray | None  # numeric: reference share per bin
    unique: np.ndarray | None  # numeric: distinct values ...
    cdf: np.ndarray | None  # ... and the reference CDF at each (#ref <= value / n), for KS
    day_null_rate_max: float  # the worst null rate of any reference day
    day_constant_share: float  # share of reference days on which the column was constant
    value_shares: np.ndarray  # share of each distinct value (for the chance of a constant column)

    @property
    def constant(self) -> bool:
        return len(self.value_shares) == 1


@dataclass(frozen=True)
class Reference:
    """The training reference, profiled once and reused for every day judged against it."""

    numeric: dict[str, ReferenceColumn]
    categorical: dict[str, ReferenceColumn]
    rows: int
    days: int

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def _reference_column(values: pd.Series, kind: str, days: pd.Series | None) -> ReferenceColumn:
    if kind == "numeric":
        col = NumericColumn.of(values)
        edges = proportions = unique = cdf = None
        if col.size:
            edges = np.unique(np.quantile(col.sorted, np.linspace(0.0, 1.0, BINS + 1)[1:-1]))
            proportions = _bin_counts(col.sorted, edges) / col.size
            unique, counts = np.unique(col.sorted, return_counts=True)
            cdf = np.cumsum(counts) / col.size
            shares = counts / col.size
        else:
            shares = np.array([])
    else:
        col = CategoricalColumn.of(values)
        edges = proportions = unique = cdf = None
        total = col.size
        shares = np.array([c / total for c in col.counts.values()]) if total else np.array([])
    null_max, constant_share = 0.0, 0.0
    if days is not None and len(values):
        frame = pd.DataFrame({"v": values.to_numpy(), "d": days.to_numpy()})
        grouped = frame.groupby("d", sort=False)["v"]
        null_max = float(frame["v"].isna().groupby(frame["d"], sort=False).mean().max())
        nunique = grouped.nunique(dropna=True)
        sizes = grouped.count()
        judged = sizes >= 2
        constant_share = float((nunique[judged] == 1).mean()) if judged.any() else 0.0
    else:
        null_max = col.null_rate
    return ReferenceColumn(col, edges, proportions, unique, cdf, null_max, constant_share, shares)


def build_reference(frame: pd.DataFrame, numeric: list[str], categorical: list[str],
                    days: pd.Series | None = None) -> Reference:
    """Profile the reference once. `days` (one label per row, e.g. the event date) lets M5 compare a
    day with the reference's *days* (worst null rate, whether the column varies within a day)."""
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ValueError(f"features listed as both numeric and categorical: {sorted(overlap)}")
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise KeyError(f"features missing from the reference: {missing}")
    return Reference(
        numeric={c: _reference_column(frame[c], "numeric", days) for c in numeric},
        categorical={c: _reference_column(frame[c], "categorical", days) for c in categorical},
        rows=len(frame),
        days=int(days.nunique()) if days is not None else 1,
    )


# ---- statistics ------------------------------------------------------------------------------------------


def _bin_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per PSI bin from sorted values; the outer bins are open-ended (a value beyond the
    reference range still lands in a bin instead of being dropped)."""
    cuts = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate([[0], cuts, [sorted_values.size]])).astype(float)


def _psi_from_proportions(ref: np.ndarray, cur: np.ndarray) -> float:
    ref = np.maximum(ref, EPSILON)
    cur = np.maximum(cur, EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _numeric_psi(ref: ReferenceColumn, cur: NumericColumn) -> float:
    if ref.edges is None or not cur.size:
        return float("nan")
    return _psi_from_proportions(ref.proportions, _bin_counts(cur.sorted, ref.edges) / cur.size)


def _ks_from_sorted(ref: ReferenceColumn, cur: NumericColumn) -> tuple[float, float]:
    """scipy's two-sample KS, computed from the sorted arrays.

    scipy evaluates |F_ref - F_cur| at every point of both samples. Between two consecutive
    distinct reference values F_ref is constant and F_cur only grows, so the largest
    F_cur - F_ref over current points of that interval is at its right end (#cur < next / n),
    and the largest F_ref - F_cur is at the reference point itself: evaluating at the distinct
    reference values (and just below them) gives the same statistic without a pass over every
    current point. The p-value is scipy's: exact up to 10,000 rows on each side, else Smirnov's
    asymptotic distribution with the same effective n.
    """
    r, c = ref.column, cur
    n1, n2 = r.size, c.size
    if not n1 or not n2:
        return float("nan"), float("nan")
    if max(n1, n2) <= EXACT_KS_MAX_N:
        result = stats.ks_2samp(r.sorted, c.sorted)
        return float(result.statistic), float(result.pvalue)
    f1 = ref.cdf
    at = np.searchsorted(c.sorted, ref.unique, side="right") / n2  # F_cur at each reference value
    below = np.searchsorted(c.sorted, ref.unique, side="left") / n2  # F_cur just below it
    f1_before = np.concatenate([[0.0], f1[:-1]])  # F_ref on the interval left of each reference value
    ref_above = float(np.max(f1 - at))  # scipy's maxS
    cur_above = float(np.clip(max(np.max(at - f1), np.max(below - f1_before)), 0, 1))  # scipy's minS
    d = cur_above if cur_above > ref_above else ref_above
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p = float(np.clip(stats.distributions.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))
    return d, p


def _categorical_tables(ref: CategoricalColumn, cur: CategoricalColumn) -> tuple[np.ndarray, np.ndarray]:
    categories = sorted(set(ref.counts) | set(cur.counts))
    return (np.array([ref.counts.get(k, 0) for k in categories], dtype=float),
            np.array([cur.counts.get(k, 0) for k in categories], dtype=float))


def _categorical_psi(ref: CategoricalColumn, cur: CategoricalColumn) -> float:
    """PSI over the union of categories seen on either side, so a category new in the current window
    (a new merchant type, a typo from upstream) contributes instead of vanishing."""
    r, c = _categorical_tables(ref, cur)
    if not r.sum() or not c.sum():
        return float("nan")
    return _psi_from_proportions(r / r.sum(), c / c.sum())


def _chi2(ref: CategoricalColumn, cur: CategoricalColumn) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2xK table over the union of categories.

    A contingency test rather than `chisquare` against reference proportions: the reference is a
    sample itself (treating its shares as exact overstates the evidence), and a category absent
    from the reference would have expected count 0 there (an infinite statistic).
    """
    r, c = _categorical_tables(ref, cur)
    if not r.sum() or not c.sum():
        return float("nan"), float("nan")
    if r.size < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(np.vstack([r, c]))
    return float(result.statistic), float(result.pvalue)


# ---- public helpers on plain arrays (tests, benches, and prediction drift) --------------------------------


def psi(reference: np.ndarray, current: np.ndarray, bins: int = BINS) -> float:
    """Population Stability Index of a continuous variable (reference-quantile bins, open-ended outer
    bins, proportions floored at EPSILON). NaNs are dropped; NaN when either side is empty."""
    if bins != BINS:
        raise ValueError(f"psi uses {BINS} bins")
    ref = _reference_column(pd.Series(_float_values(reference)), "numeric", None)
    return _numeric_psi(ref, NumericColumn.of(current))


def psi_categorical(reference: pd.Series, current: pd.Series) -> float:
    return _categorical_psi(CategoricalColumn.of(reference), CategoricalColumn.of(current))


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS (statistic, p-value), NaNs dropped; equal to scipy's `ks_2samp`. (NaN, NaN) when
    either side is empty, so "no data" is never read as drift or as no drift."""
    ref = _reference_column(pd.Series(_float_values(reference)), "numeric", None)
    return _ks_from_sorted(ref, NumericColumn.of(current))


def chi2_test(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    return _chi2(CategoricalColumn.of(reference), CategoricalColumn.of(current))


# ---- per-feature verdicts ----------------------------------------------------------------------------------


@dataclass
class FeatureDrift:
    """One feature's verdict; `reasons` says why it is a bug or not judged."""

    feature: str
    kind: Literal["numeric", "categorical"]
    psi: float
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    status: Status
    importance: float = 0.0
    null_rate_reference: float = 0.0
    null_rate_current: float = 0.0
    rows: int = 0
    reasons: list[str] = field(default_factory=list)
    thresholds: Drift = field(default_factory=Drift)

    @property
    def p_value_threshold(self) -> float:
        return self.thresholds.ks_pvalue if self.test == "ks" else self.thresholds.chi2_pvalue

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p_value) and self.p_value < self.p_value_threshold

    @property
    def drifted(self) -> bool:
        """PSI in the act band, or a significant test with PSI at least in the watch band (with large
        windows a test alone fires on shifts too small to matter)."""
        if math.isnan(self.psi) or self.status in ("bug", "not_judged"):
            return False
        return self.psi >= self.thresholds.psi_act or (self.significant and self.psi >= self.thresholds.psi_watch)

    def to_row(self) -> dict:
        row = asdict(self)
        row.pop("thresholds")
        row["reasons"] = "; ".join(self.reasons)
        row["drifted"] = self.drifted
        return row


def _constant_probability(ref: ReferenceColumn, n: int) -> float:
    """Chance that n values drawn from the reference are all equal: sum of p_v ** n."""
    return float(np.sum(ref.value_shares.astype(float) ** n)) if ref.value_shares.size else 1.0


def _bug_reasons(name: str, ref: ReferenceColumn, cur: Column, t: Drift) -> list[str]:
    reasons = []
    jump = cur.null_rate - ref.day_null_rate_max
    if jump > t.null_rate_jump:
        # Significant on this many rows too: 3 nulls in 5 rows decide nothing.
        tail = stats.binom.sf(cur.nulls - 1, cur.rows, max(ref.day_null_rate_max, 1e-6))
        if tail < t.null_rate_alpha:
            reasons.append(f"null rate {cur.null_rate:.1%} on {cur.rows} rows vs at most "
                           f"{ref.day_null_rate_max:.1%} on any reference day (jump > null_rate_jump "
                           f"{t.null_rate_jump}, binomial tail {tail:.1e} < null_rate_alpha {t.null_rate_alpha})")
    if cur.constant and ref.day_constant_share < t.constant_days_max:
        chance = _constant_probability(ref, cur.size)
        if chance < t.constant_probability:
            value = cur.sorted[0] if isinstance(cur, NumericColumn) else next(iter(cur.counts))
            reasons.append(f"constant ({value!r}) on {cur.size} rows, although it varies on "
                           f"{1 - ref.day_constant_share:.0%} of reference days (chance of that under the "
                           f"reference {chance:.1e} < constant_probability {t.constant_probability})")
    return reasons


def judge_feature(name: str, kind: str, ref: ReferenceColumn, cur: Column | None, t: Drift,
                  importance: float, rows: int) -> FeatureDrift:
    test = "ks" if kind == "numeric" else "chi2"
    if cur is None:
        return FeatureDrift(name, kind, float("nan"), test, float("nan"), float("nan"), "bug", importance,
                            ref.column.null_rate, 1.0, rows, ["missing from the served features"], t)
    if kind == "numeric":
        value = _numeric_psi(ref, cur)
        statistic, p_value = _ks_from_sorted(ref, cur)
    else:
        value = _categorical_psi(ref.column, cur)
        statistic, p_value = _chi2(ref.column, cur)
    result = FeatureDrift(name, kind, value, test, statistic, p_value, "stable", importance, ref.column.null_rate,
                          cur.null_rate, cur.rows, [], t)
    bugs = _bug_reasons(name, ref, cur, t)
    if bugs:
        result.status, result.reasons = "bug", bugs
    elif not ref.column.size:
        result.status, result.reasons = "not_judged", ["the reference has no values"]
    elif ref.constant:
        result.status, result.reasons = "not_judged", [
            "constant in the reference: the training window never saw it vary, so drift cannot be measured "
            "against it"]
    elif ref.day_constant_share >= t.calendar_constant_share:
        result.status, result.reasons = "not_judged", [
            f"constant within {ref.day_constant_share:.0%} of reference days (by design, like a date or the day of "
            f"week on a daily partition): one day's value says nothing about drift"]
    elif math.isnan(value):
        result.status, result.reasons = "not_judged", ["no values today"]
    else:
        result.status = t.band(value)
        if result.status == "stable" and result.significant and value >= t.psi_watch:
            result.status = "watch"
    return result


def profile(frame: pd.DataFrame, reference: Reference) -> dict[str, Column]:
    """The current window's columns (each numeric one sorted once), in parallel on the cores there are."""
    def one(name: str) -> tuple[str, Column]:
        if name in reference.numeric:
            return name, NumericColumn.of(frame[name])
        return name, CategoricalColumn.of(frame[name])

    names = [n for n in reference.features if n in frame.columns]
    if len(frame) < 200_000:
        return dict(map(one, names))
    with ThreadPoolExecutor(max_workers=2) as pool:  # numpy sorts release the GIL
        return dict(pool.map(one, names))


def feature_drift(reference: Reference, current: pd.DataFrame | Mapping[str, Column], thresholds: Drift,
                  importance: Mapping[str, float] | None = None) -> list[FeatureDrift]:
    """Per-feature verdicts of the current window against the reference.

    `importance`: the serving model's importance share per feature (M1); None weighs every feature
    equally. A feature missing from `current` is a bug (a feature missing at serving).
    """
    columns = profile(current, reference) if isinstance(current, pd.DataFrame) else dict(current)
    rows = len(current) if isinstance(current, pd.DataFrame) else max((c.rows for c in columns.values()), default=0)
    weights = normalized_importance(reference.features, importance)
    out = []
    for kind, refs in (("numeric", reference.numeric), ("categorical", reference.categorical)):
        for name, ref in refs.items():
            out.append(judge_feature(name, kind, ref, columns.get(name), thresholds, weights[name], rows))
    return out


def normalized_importance(features: Iterable[str], importance: Mapping[str, float] | None) -> dict[str, float]:
    """Importance shares that sum to 1 (negative importances count as 0); equal shares without a map."""
    features = list(features)
    if not features:
        return {}
    raw = {f: max(float((importance or {}).get(f, 0.0)), 0.0) for f in features}
    total = sum(raw.values())
    if importance is None or total <= 0:
        return {f: 1.0 / len(features) for f in features}
    return {f: v / total for f, v in raw.items()}


def step_reasons(reference: Reference, previous: pd.DataFrame, current: pd.DataFrame,
                 t: Drift, require_stable_before: bool = True) -> dict[str, str]:
    """M5 step: features whose distribution jumped by PSI >= psi_bug from the previous day to this one
    while the previous day was stable against the reference. Needs min_rows on both days."""
    if len(previous) < t.min_rows or len(current) < t.min_rows:
        return {}
    prev_cols, cur_cols = profile(previous, reference), profile(current, reference)
    names = [n for n in reference.features if n in prev_cols and n in cur_cols]
    prev_ref = build_reference(previous, [n for n in names if n in reference.numeric],
                               [n for n in names if n in reference.categorical])
    out = {}
    for name in names:
        kind = "numeric" if name in reference.numeric else "categorical"
        base = (reference.numeric if kind == "numeric" else reference.categorical)[name]
        if base.constant:
            continue
        then = (_numeric_psi(base, prev_cols[name]) if kind == "numeric"
                else _categorical_psi(base.column, prev_cols[name]))
        pr = (prev_ref.numeric if kind == "numeric" else prev_ref.categorical)[name]
        if pr.constant:
            continue
        jump = _numeric_psi(pr, cur_cols[name]) if kind == "numeric" else _categorical_psi(pr.column, cur_cols[name])
        stable_before = not math.isnan(then) and then < t.psi_watch
        if (stable_before or not require_stable_before) and not math.isnan(jump) and jump >= t.psi_bug:
            out[name] = (f"step: PSI {jump:.2f} from the previous day ({len(previous)} rows) to this one "
                         f"({len(current)} rows), after a stable day (PSI {then:.3f} vs the reference); >= psi_bug "
                         f"{t.psi_bug}")
    return out


# ---- the day's verdict --------------------------------------------------------------------------------------


@dataclass
class DriftSummary:
    """A day's verdict: worst status, the features behind it, and on how much data it stands."""

    status: Status
    max_psi: float
    drifted_features: list[str]  # act-band features carrying at least min_importance
    watched_features: list[str]  # drifted, but the model hardly uses them (or watch band)
    bug_features: list[str]
    weighted_drift_score: float
    features: list[FeatureDrift]
    rows: int = 0
    reasons: list[str] = field(default_factory=list)

    def to_table(self) -> pd.DataFrame:
        """One row per feature, for asset metadata and the UI."""
        columns = ["feature", "kind", "psi", "test", "statistic", "p_value", "status", "importance",
                   "null_rate_reference", "null_rate_current", "rows", "reasons", "drifted"]
        return pd.DataFrame([f.to_row() for f in self.features], columns=columns)


def summarize(features: list[FeatureDrift], thresholds: Drift | None = None) -> DriftSummary:
    """The day's status: `bug` if any feature shows a bug signal; `act` if a feature that carries at least
    min_importance of the model's importance drifted; `watch` for drift elsewhere or watch-band PSI;
    else `stable`. The weighted score is sum(importance * PSI) / sum(importance) over judged features."""
    t = thresholds or (features[0].thresholds if features else Drift())
    if not features:
        return DriftSummary("not_judged", float("nan"), [], [], [], float("nan"), [], 0, ["no features"])
    judged = [f for f in features if f.status not in ("not_judged",) and not math.isnan(f.psi)]
    bugs = [f.feature for f in features if f.status == "bug"]
    # act: the PSI band says act (>= psi_act) on a feature the model relies on; a significant test with PSI in the
    # watch band, or act-band drift on a feature the model hardly uses, is watched, not acted on.
    acting = [f.feature for f in judged if f.status == "act" and f.importance >= t.min_importance]
    watched = [f.feature for f in judged if (f.drifted or f.status == "watch") and f.feature not in acting]
    if bugs:
        status: Status = "bug"
    elif acting:
        status = "act"
    elif watched:
        status = "watch"
    elif judged:
        status = "stable"
    else:
        status = "not_judged"
    weights = np.array([f.importance for f in judged], dtype=float)
    values = np.array([f.psi for f in judged], dtype=float)
    if not values.size:
        weighted = float("nan")
    elif weights.sum() > 0:
        weighted = float(np.sum(weights * values) / weights.sum())
    else:
        weighted = float(values.mean())
    reasons = [f"{f.feature}: {'; '.join(f.reasons)}" for f in features if f.status == "bug"]
    return DriftSummary(status, float(max(values)) if values.size else float("nan"), acting, sorted(set(watched)),
                        bugs, weighted, list(features), max((f.rows for f in features), default=0), reasons)


def prediction_drift(reference_scores: np.ndarray, current_scores: np.ndarray, threshold: float) -> dict:
    """Score-distribution drift (M2): mean/std, KS, predicted-positive share and PSI. Visible before
    labels arrive, so it is the earliest sign the model sees something new."""
    ref, cur = NumericColumn.of(reference_scores), NumericColumn.of(current_scores)
    profile_ref = _reference_column(pd.Series(ref.sorted), "numeric", None)
    ks_stat, ks_p = _ks_from_sorted(profile_ref, cur)

    def _share(x: np.ndarray) -> float:
        return float(np.mean(x >= threshold)) if x.size else float("nan")

    def _mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else float("nan")

    def _std(x: np.ndarray) -> float:
        return float(np.std(x)) if x.size else float("nan")

    return {
        "reference_mean": _mean(ref.sorted), "reference_std": _std(ref.sorted),
        "current_mean": _mean(cur.sorted), "current_std": _std(cur.sorted),
        "ks_statistic": ks_stat, "ks_pvalue": ks_p,
        "reference_positive_share": _share(ref.sorted), "current_positive_share": _share(cur.sorted),
        "psi": _numeric_psi(profile_ref, cur), "threshold": float(threshold),
        "reference_rows": ref.size, "current_rows": cur.size,
    }
