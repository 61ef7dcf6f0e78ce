"""How well a binary classifier's scores separate the classes, with uncertainty.

The measures every decision shares: the promotion gates and the permutation importance
(registry) judge a candidate with them, and monitoring judges the champion's delayed-label
windows with them (RELIABILITY.md M3, P2, P3). A single AUC number on a few hundred labels
moves by more than the 0.005 the catalog cares about from sampling noise alone, hence the
bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score


@dataclass
class MetricCI:
    """Point value on the full data and a percentile bootstrap interval.

    ``n_resamples`` is the number of resamples that succeeded (a resample on which the
    metric raised is skipped); ``low``/``high`` are NaN when none succeeded.
    """

    value: float
    low: float
    high: float
    n_resamples: int

    @property
    def width(self) -> float:
        return self.high - self.low


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted as half.

    Same value as ``sklearn.metrics.roc_auc_score`` for binary labels but several times
    faster, which matters inside a bootstrap loop of hundreds of resamples. Raises
    ``ValueError`` when only one class is present, like sklearn.
    """
    y = np.asarray(y_true).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC is undefined with only one class present")
    ranks = rankdata(np.asarray(y_score, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def stratified_indices(y_true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap resample of row indices, drawn with replacement within each class.

    Keeping the class counts fixed means every resample has both classes (so AUC is
    always defined) and the class balance does not add noise of its own, which matters
    for rare positives such as fraud.
    """
    parts = [rng.choice(idx, size=idx.size, replace=True) for idx in _class_indices(y_true)]
    return np.concatenate(parts) if parts else np.array([], dtype=int)


def _class_indices(y_true: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(y_true == c) for c in np.unique(y_true)]


def bootstrap_metric(
    y_true: np.ndarray,
    y_score: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_resamples: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> MetricCI:
    """Percentile bootstrap CI of ``metric(y_true, y_score)`` with class-stratified resampling.

    The seed makes the interval reproducible (T6). A resample on which the metric fails
    (raises or returns NaN) is skipped rather than aborting the whole estimate. The point
    value is NaN when the metric is undefined on the full data.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    if y_true.shape[0] != y_score.shape[0]:
        raise ValueError(f"y_true has {y_true.shape[0]} rows, y_score has {y_score.shape[0]}")
    try:
        value = float(metric(y_true, y_score))
    except ValueError:
        value = float("nan")
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(n_resamples):
        idx = stratified_indices(y_true, rng)
        try:
            v = float(metric(y_true[idx], y_score[idx]))
        except (ValueError, ZeroDivisionError):
            continue
        if not math.isnan(v):
            values.append(v)
    if not values:
        return MetricCI(value, float("nan"), float("nan"), 0)
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return MetricCI(value, float(low), float(high), len(values))


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> dict:
    """Threshold and ranking metrics for a binary classifier.

    A row is predicted positive when ``score >= threshold``. Precision is 0.0 when
    nothing is predicted positive (a model that flags nothing must not pass a precision
    gate by default). ``roc_auc`` and ``average_precision`` are ``None`` when only one
    class is present, where they are undefined.
    """
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=float)
    y_pred = (y_score >= threshold).astype(int)
    both = np.unique(y_true).size == 2
    return {
        "rows": int(y_true.size),
        "roc_auc": float(roc_auc_score(y_true, y_score)) if both else None,
        "average_precision": float(average_precision_score(y_true, y_score)) if both else None,
        "precision": float(precision_score(y_true, y_pred, zero_division=0.0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0.0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0.0)),
        "positives": int(y_true.sum()),
        "negatives": int((y_true == 0).sum()),
        "predicted_positive_rate": float(y_pred.mean()) if y_pred.size else 0.0,
        "threshold": float(threshold),
    }
