"""Promotion gates (RELIABILITY.md P2-P5): plain functions returning explicit results.

Every gate returns a :class:`GateResult` with the measured value, the threshold and a
human-readable detail, so a refused promotion says exactly why (O1) and a passed one
records the evidence. The caller decides what to do with a failed gate; nothing here
raises on a failing model.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.metrics import classification_metrics, roc_auc, stratified_indices

MIN_RESAMPLES = 100
"""P3: the champion/challenger decision needs at least this many bootstrap resamples."""

# The blocking asset checks of registered_model; every gate names the one it counts towards.
ARTIFACT_INTEGRITY = "artifact_integrity"
GOLDEN_SET_DISJOINT = "golden_set_disjoint"
GOLDEN_SET_GATES = "golden_set_gates"
INFERENCE_LATENCY = "inference_latency"
FAIRNESS = "fairness"
CHECKS = (ARTIFACT_INTEGRITY, GOLDEN_SET_DISJOINT, GOLDEN_SET_GATES, INFERENCE_LATENCY, FAIRNESS)


@dataclass
class GateResult:
    """Outcome of one gate: passed or not, the measured value, the threshold, and why; and, set where the gate is
    decided, the registered_model check it counts towards (`check`; None: the decision only) and its rule as the
    side-by-side table states it (`rule`)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    # For the side-by-side table: the measured quantity for each model, and the 95% CI of
    # whatever ``value`` is (a difference for champion/challenger gates, a ratio for fairness).
    challenger: float | None = None
    champion: float | None = None
    ci: tuple[float, float] | None = None
    check: str | None = field(kw_only=True)
    rule: str = field(kw_only=True)
    # A gate on the challenger alone: the champion's metric of this name is shown next to it.
    champion_metric: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.check is not None and self.check not in CHECKS:
            raise ValueError(f"gate {self.name}: unknown check {self.check!r}; one of {CHECKS}")

    def to_row(self) -> dict:
        """Plain dict for a metadata table (one row per gate)."""
        row = asdict(self)
        row.pop("champion_metric")
        row["ci"] = None if self.ci is None else f"[{_fmt(self.ci[0])}, {_fmt(self.ci[1])}]"
        return row


def _fmt(x: float | None) -> str:
    return "undefined" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def absolute_gates(
    metrics: dict,
    precision_min: float,
    recall_min: float,
    roc_auc_min: float,
) -> list[GateResult]:
    """P2: the challenger's golden-set metrics must reach fixed floors (value >= minimum).

    ``metrics`` is a :func:`classification_metrics` dict. A missing or undefined metric
    (e.g. AUC on a single-class set) fails its gate: absence of evidence is not a pass.
    """
    results = []
    for name, minimum in (("precision", precision_min), ("recall", recall_min), ("roc_auc", roc_auc_min)):
        value = metrics.get(name)
        defined = value is not None and not math.isnan(float(value))
        passed = bool(defined and float(value) >= minimum)
        if not defined:
            detail = f"{name} is undefined on this set; gate requires >= {minimum}"
        else:
            detail = f"{name} {float(value):.4f} {'>=' if passed else '<'} minimum {minimum}"
        results.append(
            GateResult(f"absolute_{name}", passed, float(value) if defined else None, float(minimum), detail,
                       challenger=float(value) if defined else None, check=GOLDEN_SET_GATES,
                       rule=f">= {float(minimum)}", champion_metric=name)
        )
    return results


def _precision_recall(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    tp = float(np.sum((y_pred == 1) & (y_true == 1)))
    pp = float(np.sum(y_pred == 1))
    p = float(np.sum(y_true == 1))
    return (tp / pp if pp else 0.0), (tp / p if p else float("nan"))


def _percentile_ci(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def champion_challenger_gates(
    y_true: np.ndarray,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray,
    challenger_threshold: float,
    champion_threshold: float,
    auc_tolerance: float = 0.005,
    relative_regression_max: float = 0.05,
    n_resamples: int = 200,
    seed: int = 0,
) -> list[GateResult]:
    """P3: the challenger must not regress against the champion on the golden set.

    Paired bootstrap: each resample draws one set of row indices (stratified by class)
    and scores *both* models on those same rows, so the rows' difficulty cancels out of
    the difference and the interval reflects only how the two models differ.

    Decision rule (AUC): let ``[low, high]`` be the 95% percentile CI of
    ``challenger_auc - champion_auc``. The gate **fails only when ``high < -auc_tolerance``**,
    i.e. the whole interval lies below the tolerance: we are confident the challenger is
    worse by more than 0.005. Why this side and not "pass only when ``low >= -tolerance``":
    on a golden set of a few hundred positives the CI of an AUC difference is typically
    wider than +/-0.01, so demanding proof of non-inferiority would refuse a challenger that
    is exactly as good as the champion most of the time, by bad luck of the sample. With
    this rule a model compared with itself always passes (every paired difference is 0),
    and a clearly worse model fails. The point estimate is recorded but never decides.

    Precision and recall (each model at its own threshold) use the same rule on the
    *relative* difference ``(challenger - champion) / champion``: fail only when the
    CI's upper bound is below ``-relative_regression_max`` (worse by more than 5% relative
    with confidence). Resamples where the champion's metric is 0 are skipped for that
    metric (relative change undefined).
    """
    y_true = np.asarray(y_true).astype(int)
    ch = np.asarray(challenger_scores, dtype=float)
    cp = np.asarray(champion_scores, dtype=float)
    if not (y_true.shape[0] == ch.shape[0] == cp.shape[0]):
        raise ValueError(f"length mismatch: y_true {y_true.shape[0]}, challenger {ch.shape[0]}, champion {cp.shape[0]}")
    if n_resamples < MIN_RESAMPLES:
        raise ValueError(f"P3 needs at least {MIN_RESAMPLES} bootstrap resamples, got {n_resamples}")
    if np.unique(y_true).size != 2:
        return [
            GateResult(name, False, None, thr, "golden set must contain both classes for a champion/challenger test")
            for name, thr in (
                ("champion_challenger_roc_auc", -auc_tolerance),
                ("champion_challenger_precision", -relative_regression_max),
                ("champion_challenger_recall", -relative_regression_max),
            )
        ]

    ch_pred = (ch >= challenger_threshold).astype(int)
    cp_pred = (cp >= champion_threshold).astype(int)
    rng = np.random.default_rng(seed)
    auc_diff = np.empty(n_resamples)
    rel = {"precision": np.empty(n_resamples), "recall": np.empty(n_resamples)}
    for b in range(n_resamples):
        idx = stratified_indices(y_true, rng)
        yt = y_true[idx]
        auc_diff[b] = roc_auc(yt, ch[idx]) - roc_auc(yt, cp[idx])
        ch_p, ch_r = _precision_recall(yt, ch_pred[idx])
        cp_p, cp_r = _precision_recall(yt, cp_pred[idx])
        rel["precision"][b] = (ch_p - cp_p) / cp_p if cp_p > 0 else np.nan
        rel["recall"][b] = (ch_r - cp_r) / cp_r if cp_r > 0 else np.nan

    ch_m = classification_metrics(y_true, ch, challenger_threshold)
    cp_m = classification_metrics(y_true, cp, champion_threshold)
    results: list[GateResult] = []

    point = float(ch_m["roc_auc"] - cp_m["roc_auc"])
    low, high = _percentile_ci(auc_diff)
    passed = bool(high >= -auc_tolerance)
    results.append(
        GateResult(
            "champion_challenger_roc_auc",
            passed,
            point,
            -auc_tolerance,
            f"AUC challenger {ch_m['roc_auc']:.4f} vs champion {cp_m['roc_auc']:.4f}; "
            f"difference {point:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}] over {n_resamples} paired resamples; "
            f"rule: fail only if CI upper bound < -{auc_tolerance}",
            challenger=float(ch_m["roc_auc"]),
            champion=float(cp_m["roc_auc"]),
            ci=(low, high),
            check=GOLDEN_SET_GATES,
            rule=f"CI upper of AUC difference >= {-auc_tolerance:+}",
        )
    )

    for name in ("precision", "recall"):
        values = rel[name]
        valid = int(np.sum(~np.isnan(values)))
        champion_value = float(cp_m[name])
        challenger_value = float(ch_m[name])
        point_rel = (challenger_value - champion_value) / champion_value if champion_value > 0 else float("nan")
        low, high = _percentile_ci(values)
        if valid == 0:
            passed, note = True, "champion metric is 0 on every resample; nothing to regress from"
        else:
            passed, note = bool(high >= -relative_regression_max), ""
        results.append(
            GateResult(
                f"champion_challenger_{name}",
                passed,
                None if math.isnan(point_rel) else point_rel,
                -relative_regression_max,
                f"{name} challenger {challenger_value:.4f} vs champion {champion_value:.4f}; "
                f"relative change {_fmt(point_rel)}, 95% CI [{_fmt(low)}, {_fmt(high)}] over {valid} paired resamples; "
                f"rule: fail only if CI upper bound < -{relative_regression_max}" + (f"; {note}" if note else ""),
                challenger=challenger_value,
                champion=champion_value,
                ci=(low, high),
                check=GOLDEN_SET_GATES,
                rule=f"CI upper of relative change >= {-relative_regression_max:+}",
            )
        )
    return results


_SCHEDSTAT = "/proc/thread-self/schedstat"


def _runqueue_wait_ns() -> int | None:
    """Nanoseconds this thread has spent runnable but waiting for a CPU (Linux schedstat), or None."""
    try:
        with open(_SCHEDSTAT) as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def latency_gate(
    predict_one: Callable[[Any], Any],
    rows: list,
    p99_limit_ms: float,
    n_requests: int = 100,
) -> GateResult:
    """P4: p99 of single-row scoring time over ``n_requests`` calls must be <= the limit.

    Five warm-up calls come first so lazy initialisation (imports, JIT, caches) is not
    counted as request latency; rows are cycled if there are fewer than ``n_requests``.
    An exception while scoring fails the gate with the error in the detail: a model that
    cannot score a row is not fast enough.

    What is timed. Each request's wall time, minus the time the scoring thread sat in the
    kernel's run queue waiting for a CPU that other processes held (Linux
    ``/proc/thread-self/schedstat``; plain wall time where that is not available). The gate
    judges the model, not the host: on a shared machine a p99 of 100 requests is otherwise
    decided by whichever neighbour was busy (on a 2-core box at load 5 the demo model
    measured a wall-clock p99 of 26-39 ms, 8-14 ms without the queueing, and the wall-clock
    p99 crossed 50 ms at load 9). Everything the model itself spends — computing, sleeping,
    waiting on I/O or locks — still counts, and the raw wall-clock p99 is reported next to it.
    """
    if not rows:
        raise ValueError("latency_gate needs at least one row")
    if n_requests < 1:
        raise ValueError(f"n_requests must be >= 1, got {n_requests}")
    timings_ms: list[float] = []
    wall_ms: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for i in range(5):
            predict_one(rows[i % len(rows)])
        for i in range(n_requests):
            waited_before = _runqueue_wait_ns()
            start = time.perf_counter()
            predict_one(rows[i % len(rows)])
            wall = (time.perf_counter() - start) * 1000.0
            waited_after = _runqueue_wait_ns()
            queued = (waited_after - waited_before) / 1e6 if waited_before is not None and waited_after else 0.0
            wall_ms.append(wall)
            timings_ms.append(max(wall - queued, 0.0))
    except Exception as exc:  # any scoring failure fails the gate, with its reason
        return GateResult(
            "latency_p99_ms", False, None, float(p99_limit_ms), f"predict_one raised {type(exc).__name__}: {exc}",
            check=INFERENCE_LATENCY, rule=f"p99 <= {float(p99_limit_ms)} ms",
        )
    finally:
        if gc_was_enabled:
            gc.enable()
    p50, p95, p99 = (float(v) for v in np.percentile(timings_ms, [50, 95, 99]))
    wall_p99 = float(np.percentile(wall_ms, 99))
    passed = p99 <= p99_limit_ms
    return GateResult(
        "latency_p99_ms",
        passed,
        p99,
        float(p99_limit_ms),
        f"{n_requests} single-row requests: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms "
        f"({'<=' if passed else '>'} limit {p99_limit_ms} ms); wall-clock p99 {wall_p99:.2f} ms including "
        f"{sum(wall_ms) - sum(timings_ms):.0f} ms queued for a CPU in all",
        challenger=p99,
        check=INFERENCE_LATENCY,
        rule=f"p99 <= {float(p99_limit_ms)} ms",
    )


FAIRNESS_METRICS = ("equalized_odds", "equal_opportunity", "demographic_parity")
"""P5 metrics: which rate must be similar across the groups of the sensitive attribute.

- ``equal_opportunity``: the true-positive rate (share of a group's frauds that are flagged);
- ``equalized_odds``: the true-positive rate *and* the false-positive rate (share of a group's
  legitimate transactions that are flagged), each compared on its own;
- ``demographic_parity``: the flag rate over all rows (the four-fifths rule on selection rates).
"""
_RATES = {"equal_opportunity": ("true_positive_rate",),
          "equalized_odds": ("true_positive_rate", "false_positive_rate"),
          "demographic_parity": ("flag_rate",)}


@dataclass
class RateComparison:
    """One rate compared across groups: lowest / highest, with simultaneous confidence bounds.

    ``counts`` holds, per group, (flagged, rows, clusters, design effect) of the rows the rate is
    taken over (positives for the true-positive rate, negatives for the false-positive rate).
    """

    rate: str
    ratio: float
    low: float
    high: float
    rates: dict
    counts: dict

    def describe(self) -> str:
        groups = ", ".join(f"{k}: {v:.4f} ({int(c[0])}/{c[1]}, {c[2]} clusters, design effect {c[3]:.2f})"
                           for k, v, c in ((k, self.rates[k], self.counts[k])
                                           for k in sorted(self.rates, key=str)))
        return f"{self.rate} ratio {self.ratio:.4f}, CI [{self.low:.4f}, {self.high:.4f}] ({groups})"


def _design_effect(flags: np.ndarray, clusters: np.ndarray) -> float | None:
    """Cluster-robust variance of a rate (the ratio estimator's sandwich over clusters) over its binomial
    variance, at least 1; None where it cannot be estimated (a rate of 0 or 1, fewer than two clusters)."""
    n = len(flags)
    p = float(flags.mean()) if n else 0.0
    per_cluster = pd.DataFrame({"flag": flags, "cluster": clusters}).groupby("cluster", sort=False)["flag"]
    sums, sizes = per_cluster.sum().to_numpy(), per_cluster.size().to_numpy()
    k = len(sums)
    if k < 2 or not 0 < p < 1:
        return None
    clustered = k / (k - 1) * float(np.sum((sums - p * sizes) ** 2)) / n**2
    return max(1.0, clustered / (p * (1 - p) / n))


def _group_counts(flags: np.ndarray, groups: pd.Series, clusters: pd.Series | None) -> dict:
    """Per group: (flagged, rows, clusters, design effect). Rows without a group are left out.

    The design effect says how many times less information the rows carry than as many
    independent rows would (1 without clusters). A group whose own design effect cannot be
    estimated (never or always flagged, one cluster) gets the one of all groups' rows pooled.
    """
    frame = pd.DataFrame({"flag": np.asarray(flags, dtype=float),
                          "group": pd.Series(np.asarray(groups, dtype=object)),
                          "cluster": (pd.Series(np.asarray(clusters, dtype=object)) if clusters is not None
                                      else pd.Series(np.arange(len(flags))))}).dropna(subset=["group"])
    pooled = 1.0
    if clusters is not None:
        pooled = _design_effect(frame["flag"].to_numpy(), frame["cluster"].to_numpy()) or 1.0
    out = {}
    for group, rows in frame.groupby("group", observed=True):
        own = _design_effect(rows["flag"].to_numpy(), rows["cluster"].to_numpy()) if clusters is not None else 1.0
        out[group] = (float(rows["flag"].sum()), len(rows), int(rows["cluster"].nunique()),
                      pooled if own is None else own)
    return out


def _wilson(x: float, n: float, z: float) -> tuple[float, float, float]:
    """(rate, lower, upper): the Wilson score interval of x flagged out of n (effective counts allowed)."""
    p = x / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _ratio_bounds(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float]:
    """MOVER-R bounds (Donner and Zou) of rate_a / rate_b from each rate's (rate, lower, upper) interval.

    Unlike a log-ratio (Katz) interval it stays informative when a group is never flagged:
    0 of 20 frauds caught against 160 of 200 is a ratio of at most ~0.4, not "anything up to 1.6".
    """
    (p1, l1, u1), (p2, l2, u2) = a, b
    def root(v: float) -> float:
        return math.sqrt(max(v, 0.0))
    low_den = u2 * (2 * p2 - u2)
    high_den = l2 * (2 * p2 - l2)
    low = (p1 * p2 - root((p1 * p2) ** 2 - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2))) / low_den if low_den > 0 else 0.0
    high = ((p1 * p2 + root((p1 * p2) ** 2 - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2))) / high_den
            if high_den > 0 else math.inf)
    return max(low, 0.0), high


def group_rate_ratio(flags: np.ndarray, groups: pd.Series, clusters: pd.Series | None = None,
                     alpha: float = 0.05, rate: str = "flag_rate") -> RateComparison:
    """Lowest / highest group rate of ``flags`` with simultaneous ``1 - alpha`` confidence bounds.

    Each group's rate gets a Wilson score interval on its effective counts (rows and flags
    divided by the group's design effect when rows are clustered, e.g. the transactions of one
    card: Kish's effective sample size), each ordered pair of groups the MOVER-R interval of
    the ratio of its two rates built from them, and ``z`` is Bonferroni-corrected over the
    ``k(k-1)/2`` pairs. ``high`` is the smallest upper bound over the pairs: below the
    threshold, some group's rate is under that share of another's with confidence. ``low`` is
    the lower bound of the pair that gives the point estimate (lowest vs highest rate). Fewer
    than two groups, or no group with any flag, is a ratio of 1 (nothing is unequal).
    """
    from scipy.stats import norm

    counts = _group_counts(flags, groups, clusters)
    rates = {g: c[0] / c[1] for g, c in counts.items()}
    if len(rates) < 2 or max(rates.values()) == 0:
        return RateComparison(rate, 1.0, 1.0, 1.0, rates, counts)
    ratio = min(rates.values()) / max(rates.values())
    k = len(counts)
    z = float(norm.ppf(1 - alpha / (k * (k - 1))))
    intervals = {g: _wilson(x / deff, n / deff, z) for g, (x, n, _, deff) in counts.items()}
    high = min(_ratio_bounds(intervals[i], intervals[j])[1] for i in intervals for j in intervals if i != j)
    low, _ = _ratio_bounds(intervals[min(rates, key=rates.get)], intervals[max(rates, key=rates.get)])
    return RateComparison(rate, float(ratio), float(min(low, ratio)), float(min(max(high, ratio), 1.0)), rates,
                          counts)


def disparate_impact(y_pred: np.ndarray, groups: pd.Series) -> tuple[float, dict]:
    """Lowest / highest positive-prediction (flag) rate over the groups, and the per-group rates.

    Groups with no rows (e.g. unobserved levels of a categorical) and rows with a missing
    group are ignored. The ratio is 1.0 when there are fewer than two groups or no group
    receives any positive prediction (nothing is unequal).
    """
    _check_lengths(y_pred, groups)
    comparison = group_rate_ratio(y_pred, groups)
    return comparison.ratio, comparison.rates


def disparate_impact_bounds(y_pred: np.ndarray, groups: pd.Series, alpha: float = 0.05,
                            clusters: pd.Series | None = None) -> tuple[float, float]:
    """(lower, upper) simultaneous confidence bounds of the flag-rate ratio (see `group_rate_ratio`)."""
    _check_lengths(y_pred, groups)
    comparison = group_rate_ratio(y_pred, groups, clusters, alpha)
    return comparison.low, comparison.high


def _check_lengths(y_pred: np.ndarray, *others: Any) -> None:
    for other in others:
        if other is not None and len(other) != len(y_pred):
            raise ValueError(f"y_pred has {len(y_pred)} rows, a row-aligned input has {len(other)}")


def fairness_comparisons(y_pred: np.ndarray, groups: pd.Series, y_true: np.ndarray | None = None,
                         clusters: pd.Series | None = None, metric: str = "equalized_odds",
                         alpha: float = 0.05) -> list[RateComparison]:
    """The rate comparisons of a P5 metric; each gets ``alpha`` divided by their number (Bonferroni)."""
    if metric not in _RATES:
        raise ValueError(f"unknown fairness metric {metric!r}; expected one of {', '.join(FAIRNESS_METRICS)}")
    y_pred = np.asarray(y_pred).astype(int)
    _check_lengths(y_pred, groups, y_true, clusters)
    if metric != "demographic_parity" and y_true is None:
        raise ValueError(f"fairness metric {metric} compares error rates and needs the true labels (y_true)")
    groups = pd.Series(np.asarray(groups, dtype=object))
    clusters = None if clusters is None else pd.Series(np.asarray(clusters, dtype=object))
    each = alpha / len(_RATES[metric])
    out = []
    for rate in _RATES[metric]:
        if rate == "flag_rate":
            rows = np.ones(len(y_pred), dtype=bool)
        else:
            rows = np.asarray(y_true).astype(int) == (1 if rate == "true_positive_rate" else 0)
        out.append(group_rate_ratio(y_pred[rows], groups[rows].reset_index(drop=True),
                                    None if clusters is None else clusters[rows].reset_index(drop=True), each, rate))
    return out


def fairness_gate(y_pred: np.ndarray, groups: pd.Series, minimum: float = 0.8, alpha: float = 0.05,
                  attribute: str = "group", *, y_true: np.ndarray | None = None, clusters: pd.Series | None = None,
                  metric: str = "equalized_odds") -> GateResult:
    """P5: no group of the sensitive attribute gets a rate under ``minimum`` times another group's.

    Which rate (``metric``, the contract's ``thresholds.gates.fairness.metric``). The demo's
    default is equalized odds: the true-positive rate (frauds caught) and the false-positive
    rate (legitimate customers flagged) are each compared across groups, lowest over highest
    against the four-fifths threshold. Not the flag rate over all rows (demographic parity,
    the four-fifths rule of employment law): when the groups' fraud rates differ, really or in
    the sample at hand, an equally accurate model flags them at different rates, and parity of
    flags could only be reached by flagging the group with less fraud more often or the other
    less. Conditioning on the true label removes the base rate: a model that catches every
    group's fraud equally well and bothers every group's legitimate customers equally rarely
    passes whatever the groups' fraud rates; one that singles out a group (flags all of its
    customers, or none of its frauds) fails. Equal opportunity alone (true-positive rates) would
    pass a model that flags every customer of one group, whose frauds are then all caught;
    the false-positive rate is what shows that.

    Why a confidence bound decides and why it is clustered. The golden set holds a few hundred
    frauds, and they are not independent rows: fraud comes in bursts of about four
    transactions per compromised card-day, with the card's shared windowed features, so a
    group's true-positive rate rests on some 10-100 cards, not on 40-400 rows, and its
    realised fraud share varies by chance. The point estimate min/max picks the noisiest
    groups at both ends and falls below 0.8 for unbiased models by chance. An interval that
    takes rows as independent is too narrow: on the demo's golden sets the flag rate's design
    effect is 3.5-3.9 (the interval about half as wide as the data support), the true-positive
    rate's 1-3.5. With both errors, the flag-rate rule refused the demo champion at 2x volume
    (ratio 0.556, upper bound 0.786) although it caught 77-82% of every group's frauds. So
    each group's rate gets a Wilson interval on effective counts (Kish: rows and flags divided
    by the design effect estimated from the ``clusters``, the contract's entity), each pair of
    groups the MOVER-R interval of their ratio, corrected for multiplicity (Bonferroni over
    the pairs and over the rates compared), and the gate fails only when the simultaneous
    upper bound of some rate's ratio is below ``minimum``: the data show with ``1 - alpha``
    confidence that a group is treated worse. The point estimates are recorded; the value is
    that of the rate whose bound is lowest. Measured at 1x, 2x and 4x volume: bench/fairness.py.
    """
    comparisons = fairness_comparisons(y_pred, groups, y_true, clusters, metric, alpha)
    binding = min(comparisons, key=lambda c: c.high)
    passed = all(c.high >= minimum for c in comparisons)
    return GateResult(
        f"fairness_{metric}",
        passed,
        binding.ratio,
        float(minimum),
        f"{attribute}, {metric}: " + "; ".join(c.describe() for c in comparisons)
        + f"; {100 * (1 - alpha):.0f}% simultaneous bounds"
        + ("" if clusters is None else ", clustered by entity")
        + f"; rule: fail only if a ratio's CI upper bound < {minimum}",
        challenger=binding.ratio,
        ci=(binding.low, binding.high),
        check=FAIRNESS,
        rule=f"CI upper of each rate's ratio >= {float(minimum)}",
    )


def slice_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float, slices: pd.DataFrame) -> pd.DataFrame:
    """P5: metrics per (slice column, value), so a model good on average but bad on a slice is visible.

    ``slices`` is row-aligned with ``y_true``/``y_score`` (positional); missing slice
    values form their own ``None`` slice rather than being dropped. Undefined metrics are
    ``None`` rather than 0, so an empty cell is not read as a failing slice: ``roc_auc``
    for a single-class slice, ``recall`` without positives, ``precision`` without any
    positive prediction.
    """
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=float)
    if len(slices) != y_true.shape[0]:
        raise ValueError(f"slices has {len(slices)} rows, y_true has {y_true.shape[0]}")
    rows = []
    y_pred = y_score >= threshold
    for column in slices.columns:
        codes, uniques = pd.factorize(pd.Series(np.asarray(slices[column], dtype=object)), use_na_sentinel=False)
        for code, value in enumerate(uniques):
            positions = np.flatnonzero(codes == code)
            m = classification_metrics(y_true[positions], y_score[positions], threshold)
            rows.append(
                {
                    "slice": column,
                    "value": None if pd.isna(value) else value,
                    "rows": m["rows"],
                    "positives": m["positives"],
                    "precision": m["precision"] if y_pred[positions].any() else None,
                    "recall": m["recall"] if m["positives"] else None,
                    "roc_auc": m["roc_auc"],
                }
            )
    columns = ["slice", "value", "rows", "positives", "precision", "recall", "roc_auc"]
    table = pd.DataFrame(rows, columns=columns)
    # Object dtype keeps None (JSON-serialisable, for metadata) instead of pandas turning it into NaN.
    for column in ("value", "precision", "recall", "roc_auc"):
        table[column] = pd.Series([r[column] for r in rows], dtype=object)
    return table
