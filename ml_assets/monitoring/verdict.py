"""A day's drift verdict (M1, M2, M5, M6): which rows it judges, against what, and what it found.

Plain logic for `drift_report`: the asset gathers the frames, this module decides.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ml_assets.monitoring.drift import (
    DriftSummary,
    DriftThresholds,
    Reference,
    feature_drift,
    prediction_drift,
    step_reasons,
    summarize,
)

WARM_UP, NOT_JUDGED = "warm_up", "not_judged"


@dataclass
class DayVerdict:
    day: str
    status: str  # warm_up | not_judged | stable | watch | act | bug
    rows: int  # rows the verdict stands on (the pooled window)
    window_first: str
    window_last: str
    window_days: int
    reasons: list[str] = field(default_factory=list)
    max_psi: float = float("nan")
    weighted_drift_score: float = float("nan")
    drifted_features: list[str] = field(default_factory=list)
    watched_features: list[str] = field(default_factory=list)
    bug_features: list[str] = field(default_factory=list)
    golden_stale: bool = False
    golden_max_psi: float = float("nan")
    golden_stale_features: list[str] = field(default_factory=list)
    prediction: dict = field(default_factory=dict)
    summary: DriftSummary | None = None

    @property
    def judged(self) -> bool:
        return self.status not in (WARM_UP, NOT_JUDGED)

    def record(self) -> dict:
        """JSON-able form stored next to the partition (the sensor and the replay read it)."""
        out = asdict(self)
        out.pop("summary")
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}

    def table(self) -> pd.DataFrame:
        return self.summary.to_table() if self.summary else pd.DataFrame()


def pool_days(day: str, frames: Mapping[str, pd.DataFrame], min_rows: int, max_days: int,
              first_judged_day: dt.date) -> list[str]:
    """The day and, while it has fewer than `min_rows` rows, the days before it (newest first, at most
    `max_days`, never warm-up days): what a verdict on a tiny day stands on."""
    chosen, rows = [], 0
    current = dt.date.fromisoformat(day)
    for _ in range(max_days):
        key = current.isoformat()
        if current < first_judged_day:
            break
        if key in frames:
            chosen.append(key)
            rows += len(frames[key])
            if rows >= min_rows:
                break
        current -= dt.timedelta(days=1)
    return chosen


def judge_day(day: str, frames: Mapping[str, pd.DataFrame], reference: Reference, t: DriftThresholds,
              max_window_days: int, first_judged_day: dt.date, importance: Mapping[str, float] | None = None,
              golden: Reference | None = None, golden_stale_psi: float = 0.2,
              reference_scores: np.ndarray | None = None, scores: Mapping[str, np.ndarray] | None = None,
              threshold: float = 0.5) -> DayVerdict:
    """Judge `day` from the feature frames of it and the days before it (`frames`: day -> features).

    `scores` (day -> the serving model's scores) and `reference_scores` give M2 prediction drift;
    `golden` (the current golden set, profiled) gives M6 staleness.
    """
    if dt.date.fromisoformat(day) < first_judged_day:
        return DayVerdict(day, WARM_UP, len(frames.get(day, ())), day, day, 1, [
            f"warm-up: windowed features saw less than their longest window of history before "
            f"{first_judged_day.isoformat()}; not comparable with the reference"])
    window = pool_days(day, frames, t.min_rows, max_window_days, first_judged_day)
    pooled = pd.concat([frames[d] for d in window], ignore_index=True) if window else pd.DataFrame()
    first, last = (window[-1], window[0]) if window else (day, day)
    if len(pooled) < t.min_rows:
        return DayVerdict(day, NOT_JUDGED, len(pooled), first, last, len(window), [
            f"{len(pooled)} rows in {len(window)} day(s) ({first} .. {last}) < min_rows {t.min_rows} (at most "
            f"max_window_days {max_window_days} days pooled): too few rows to judge drift"])
    features = feature_drift(reference, pooled, t, importance)
    if len(window) == 1:
        previous = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
        if previous in frames and dt.date.fromisoformat(previous) >= first_judged_day:
            steps = step_reasons(reference, frames[previous], pooled, t)
            for f in features:
                if f.feature in steps and f.status != "not_judged":
                    f.status = "bug"
                    f.reasons.append(steps[f.feature])
    summary = summarize(features, t)
    verdict = DayVerdict(day, summary.status, len(pooled), first, last, len(window), list(summary.reasons),
                         summary.max_psi, summary.weighted_drift_score, summary.drifted_features,
                         summary.watched_features, summary.bug_features, summary=summary)
    if summary.status == "act":
        verdict.reasons.append("drift on features the model relies on: " + ", ".join(
            f"{f.feature} (PSI {f.psi:.3f}, importance {f.importance:.0%})" for f in features
            if f.feature in summary.drifted_features))
    if len(window) > 1:
        verdict.reasons.append(f"judged on {len(pooled)} rows pooled over {len(window)} days ({first} .. {last})")
    if golden is not None:
        stale = [f for f in feature_drift(golden, pooled, t, importance)
                 if f.status not in ("not_judged", "bug") and not math.isnan(f.psi) and f.importance >= t.min_importance]
        if stale:
            worst = max(stale, key=lambda f: f.psi)
            verdict.golden_max_psi = worst.psi
            verdict.golden_stale_features = [f.feature for f in stale if f.psi >= golden_stale_psi]
            verdict.golden_stale = bool(verdict.golden_stale_features)
            if verdict.golden_stale:
                verdict.reasons.append(f"M6: live data left the golden set: PSI {worst.psi:.3f} on {worst.feature} >= "
                                       f"golden_stale_psi {golden_stale_psi}")
    if reference_scores is not None and scores:
        window_scores = [scores[d] for d in window if d in scores]
        if window_scores:
            verdict.prediction = prediction_drift(reference_scores, np.concatenate(window_scores), threshold)
    return verdict
