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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.monitoring.performance import classification_metrics, roc_auc, stratified_indices

MIN_RESAMPLES = 100
"""P3: the champion/challenger decision needs at least this many bootstrap resamples."""


@dataclass
class GateResult:
    """Outcome of one gate: passed or not, the measured value, the threshold, and why."""

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

    def to_row(self) -> dict:
        """Plain dict for a metadata table (one row per gate)."""
        row = asdict(self)
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
                       challenger=float(value) if defined else None)
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
            "latency_p99_ms", False, None, float(p99_limit_ms), f"predict_one raised {type(exc).__name__}: {exc}"
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
    )


def disparate_impact(y_pred: np.ndarray, groups: pd.Series) -> tuple[float, dict]:
    """P5: lowest / highest positive-prediction rate over the groups, and the per-group rates.

    Groups with no rows (e.g. unobserved levels of a categorical) and rows with a missing
    group are ignored. The ratio is 1.0 when there are fewer than two groups or no group
    receives any positive prediction (nothing is unequal).
    """
    ratio, rates, _ = _group_rates(y_pred, groups)
    return ratio, rates


def _group_rates(y_pred: np.ndarray, groups: pd.Series) -> tuple[float, dict, dict]:
    y_pred = np.asarray(y_pred).astype(float)
    group_values = pd.Series(np.asarray(groups, dtype=object))
    if group_values.shape[0] != y_pred.shape[0]:
        raise ValueError(f"y_pred has {y_pred.shape[0]} rows, groups has {group_values.shape[0]}")
    frame = pd.DataFrame({"pred": y_pred, "group": group_values}).dropna(subset=["group"])
    grouped = frame.groupby("group", observed=True)["pred"]
    rates = {k: float(v) for k, v in grouped.mean().items()}
    sizes = grouped.size()
    counts = {k: (float(s), int(sizes[k])) for k, s in grouped.sum().items()}
    if len(rates) < 2:
        return 1.0, rates, counts
    highest = max(rates.values())
    if highest == 0:
        return 1.0, rates, counts
    return float(min(rates.values()) / highest), rates, counts


def disparate_impact_bounds(y_pred: np.ndarray, groups: pd.Series, alpha: float = 0.05) -> tuple[float, float]:
    """(lower, upper) simultaneous confidence bounds for the disparate-impact ratio.

    Each pair of groups gets a Katz log confidence interval for the ratio of its two
    positive-prediction rates, ``log(r_i / r_j) +/- z * sqrt(1/x_i - 1/n_i + 1/x_j - 1/n_j)``
    (``x`` flagged rows, ``n`` rows, 0.5 added to each cell so a group that is never or
    always flagged still has a finite interval), with a Bonferroni ``z`` over the
    ``k(k-1)/2`` pairs so the bounds hold for all pairs at once at level ``1 - alpha``.
    ``upper`` is the smallest upper bound over the pairs: if it is below 0.8, some group
    is flagged at under 80% of another's rate with that confidence. ``lower`` is the
    lower bound of the pair that gives the point estimate (lowest vs highest rate).
    """
    from scipy.stats import norm

    _, rates, counts = _group_rates(y_pred, groups)
    if len(counts) < 2:
        return 1.0, 1.0
    k = len(counts)
    z = float(norm.ppf(1 - alpha / (k * (k - 1))))
    corrected = {g: ((x + 0.5) / (n + 1), 1 / (x + 0.5) - 1 / (n + 1)) for g, (x, n) in counts.items()}
    upper = math.inf
    for i, (ri, vi) in corrected.items():
        for j, (rj, vj) in corrected.items():
            if i != j:
                upper = min(upper, math.log(ri / rj) + z * math.sqrt(vi + vj))
    lowest = min(rates, key=rates.get)
    highest = max(rates, key=rates.get)
    (rl, vl), (rh, vh) = corrected[lowest], corrected[highest]
    lower = math.log(rl / rh) - z * math.sqrt(vl + vh)
    return float(math.exp(lower)), float(min(math.exp(upper), 1.0))


def fairness_gate(y_pred: np.ndarray, groups: pd.Series, minimum: float = 0.8, alpha: float = 0.05,
                  attribute: str = "group") -> GateResult:
    """P5: the disparate-impact ratio on the declared sensitive attribute must not be below ``minimum``.

    What is measured. The rate at which each group is *flagged* (predicted positive), lowest
    over highest: the four-fifths rule of US employment law applied to the decision a
    fraud model takes about a customer. The ratio of the *favourable* outcome (not
    flagged, ~90% for every group) would hardly move even for a model that flags one
    group three times as often, so the adverse-outcome rate is the one compared.

    Why a confidence bound decides and not the point estimate. The golden set holds a
    few hundred flagged rows in all, so the smallest group of the demo (``65+``, 15% of
    customers) has some 30-40 of them; the relative standard error of a rate is
    ``~1/sqrt(flags)``, about 17% there. The point estimate min/max picks the noisiest
    group at both ends and is biased downwards: on simulated golden sets of the demo's
    size where every group has the same true rate, it falls below 0.8 more than half of
    the time, and a percentile bootstrap of min/max still does in ~8% of runs. A point
    estimate could decide only with about 250-300 flagged rows in the smallest group
    (a golden set about seven times the demo's), so the gate fails when the simultaneous upper
    confidence bound of :func:`disparate_impact_bounds` is below ``minimum``: the data
    show, at 95% confidence, that some group is flagged at under ``minimum`` times
    another's rate. A model that singles out a group (e.g. flags everyone of one age
    band, or nobody of it) fails by a wide margin; an unbiased one does not fail by bad
    luck of the sample. The point estimate is recorded as the gate's value.
    """
    ratio, rates, counts = _group_rates(y_pred, groups)
    low, high = disparate_impact_bounds(y_pred, groups, alpha=alpha)
    passed = high >= minimum
    rates_text = ", ".join(f"{k}: {v:.4f} ({int(counts[k][0])}/{counts[k][1]})"
                           for k, v in sorted(rates.items(), key=lambda kv: str(kv[0])))
    return GateResult(
        "disparate_impact",
        passed,
        ratio,
        float(minimum),
        f"{attribute}: ratio {ratio:.4f}, {100 * (1 - alpha):.0f}% simultaneous CI [{low:.4f}, {high:.4f}]; "
        f"rule: fail only if the CI upper bound < {minimum}; positive-prediction rate by group (flagged/rows): "
        f"{rates_text}",
        challenger=ratio,
        ci=(low, high),
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
