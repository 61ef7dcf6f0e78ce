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

from ml_assets.contract.model import Drift
from ml_assets.monitoring.drift import (
    DriftSummary,
    Reference,
    build_reference,
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
    step: dict | None = None  # an open M5 step: since, anchor (the last day before it), features

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
              first_judged_day: dt.date, outsized_factor: float) -> tuple[list[str], list[str]]:
    """The day and, while it has fewer than `min_rows` rows, the days before it (newest first, at most
    `max_days`, never warm-up days): what a verdict on a tiny day stands on. An earlier day with more than
    `outsized_factor` times the typical day's rows (a catch-up or backfill delivery) is never pooled: it would
    outweigh the day being judged. Returns (pooled days, outsized earlier days left out)."""
    current = dt.date.fromisoformat(day)
    candidates = [(current - dt.timedelta(days=i)).isoformat() for i in range(max_days)]
    candidates = [d for d in candidates if d in frames and dt.date.fromisoformat(d) >= first_judged_day]
    sizes = [len(frames[d]) for d in candidates]
    typical = float(np.median(sizes)) if sizes else 0.0
    chosen, skipped, rows = [], [], 0
    for d in candidates:
        if d != day and typical and len(frames[d]) > outsized_factor * typical:
            skipped.append(d)
            continue
        chosen.append(d)
        rows += len(frames[d])
        if rows >= min_rows:
            break
    return chosen, skipped


def calendar_features(reference: Reference, t: Drift) -> list[str]:
    """Features constant within each reference day by design (day of week, a promotion, a date class): constant
    on at least `calendar_constant_share` of the reference days."""
    return [name for name, col in {**reference.numeric, **reference.categorical}.items()
            if not col.constant and col.day_constant_share >= t.calendar_constant_share]


def matched_reference(reference: Reference, reference_frame: pd.DataFrame | None, reference_days: pd.Series | None,
                      pooled: pd.DataFrame, t: Drift, cache: dict | None = None) -> tuple[Reference, str]:
    """The reference as it looks on the window's calendar.

    Features constant within each day by design (day of week, a promotion, a holiday flag) move other
    features with them: a Saturday of a weekend sale is unlike the average day. So the window is compared
    with reference rows of the same calendar values, mixed in the window's proportions (a window pooled
    over a Saturday and a Sunday gets half of each). When some calendar value of the window has too few
    reference rows (`calendar_min_rows`, and `calendar_min_share` of a quarter of the reference), the coarsest
    calendar that has enough is used (e.g. the promotion without the weekday);
    without one, the whole reference, saying so.
    """
    keys = calendar_features(reference, t)
    if not keys or reference_frame is None or reference_days is None or not all(k in pooled.columns for k in keys):
        return reference, ""
    coarse_first = sorted(keys, key=lambda k: reference_frame[k].nunique())
    floor = max(t.calendar_min_rows, int(t.calendar_min_share * len(reference_frame) / 4))
    for size in range(len(keys), 0, -1):
        for chosen in _subsets(coarse_first, size):
            shares = pooled.groupby(chosen, dropna=False).size() / len(pooled)
            matches = {}
            for stratum in shares.index:
                values = stratum if isinstance(stratum, tuple) else (stratum,)
                mask = np.ones(len(reference_frame), dtype=bool)
                for k, v in zip(chosen, values, strict=True):
                    mask &= (reference_frame[k] == v).to_numpy()
                matches[values] = np.flatnonzero(mask)
            if all(len(m) >= floor for m in matches.values()):
                return _stratified(reference, reference_frame, reference_days, chosen, shares, matches, cache)
    label = ", ".join(f"{k}={pooled[k].iloc[0]}" for k in keys if pooled[k].nunique() == 1)
    return reference, (f"calendar ({label or ', '.join(keys)}): too few reference rows share it; judged against the "
                       f"whole reference")


def _subsets(keys: list[str], size: int) -> list[list[str]]:
    from itertools import combinations

    return [list(c) for c in combinations(keys, size)]


def _stratified(reference, reference_frame, reference_days, chosen, shares, matches, cache) -> tuple[Reference, str]:
    key = (tuple(chosen), tuple((k, round(float(v), 3)) for k, v in shares.items()))
    n = len(reference_frame)
    parts = []
    rng = np.random.default_rng(0)
    for values, rows in matches.items():
        want = max(1, round(float(shares.loc[values if len(values) > 1 else values[0]]) * n))
        parts.append(rows if want == len(rows) else rng.choice(rows, size=want, replace=want > len(rows)))
    label = "; ".join(f"{', '.join(f'{k}={v}' for k, v in zip(chosen, values, strict=True))} "
                      f"({len(rows)} reference rows)" for values, rows in matches.items())
    note = f"compared with the reference days of the same calendar: {label}"
    if cache is not None and key in cache:
        return cache[key], note
    index = np.concatenate(parts)
    ref = build_reference(reference_frame.iloc[index].reset_index(drop=True), list(reference.numeric),
                          list(reference.categorical), reference_days.iloc[index].reset_index(drop=True))
    if cache is not None:
        cache[key] = ref
    return ref, note


def open_step(day: str, frames: Mapping[str, pd.DataFrame], reference: Reference, pooled: pd.DataFrame,
              t: Drift, previous_record: dict | None, accept_days: int) -> dict | None:
    """An M5 step stays a bug while the data stays at the new level: a unit switched upstream (cents for
    euros) is as wrong on its tenth day as on its first. Compared with the last day before the step; closed
    when the day is back (PSI below psi_bug against that day); after `accept_days` at the new level it is
    taken for the new normal (drift), on the understanding that the alert of its first day was looked at."""
    step = (previous_record or {}).get("step")
    if not step or step.get("accepted") or step["anchor"] not in frames:
        return None
    anchor = frames[step["anchor"]]
    held = step_reasons(reference, anchor, pooled, t, require_stable_before=False)
    still = {f: why for f, why in held.items() if f in step["features"]}
    if not still:
        return None
    days = (dt.date.fromisoformat(day) - dt.date.fromisoformat(step["since"])).days
    out = {**step, "reasons": {f: f"the step of {step['since']} persists: {why}" for f, why in still.items()},
           "features": sorted(still)}
    if days >= accept_days:
        out["accepted"] = (f"the step of {', '.join(sorted(still))} since {step['since']} has held for {days} days "
                           f"(>= step_accept_days {accept_days}): judged as the new normal, i.e. drift")
    return out


def _outsized_note(outsized: list[str], t: Drift) -> str:
    return (f"; outsized day(s) {', '.join(outsized)} (over outsized_day_factor {t.outsized_day_factor:g}x a typical "
            f"day) left out" if outsized else "")


def judge_day(day: str, frames: Mapping[str, pd.DataFrame], reference: Reference, t: Drift,
              max_window_days: int, first_judged_day: dt.date, importance: Mapping[str, float] | None = None,
              golden: Reference | None = None, golden_stale_psi: float = 0.2,
              reference_scores: np.ndarray | None = None, scores: Mapping[str, np.ndarray] | None = None,
              threshold: float = 0.5, reference_frame: pd.DataFrame | None = None,
              reference_days: pd.Series | None = None, calendar_cache: dict | None = None,
              previous_record: dict | None = None, step_accept_days: int = 7) -> DayVerdict:
    """Judge `day` from the feature frames of it and the days before it (`frames`: day -> features).

    `scores` (day -> the serving model's scores) and `reference_scores` give M2 prediction drift;
    `golden` (the current golden set, profiled) gives M6 staleness; `reference_frame` / `reference_days`
    (the reference rows and their days) let a day be compared with the reference days of its own calendar.
    """
    if dt.date.fromisoformat(day) < first_judged_day:
        return DayVerdict(day, WARM_UP, len(frames.get(day, ())), day, day, 1, [
            f"warm-up: windowed features saw less than their longest window of history before "
            f"{first_judged_day.isoformat()}; not comparable with the reference"])
    window, outsized = pool_days(day, frames, t.min_rows, max_window_days, first_judged_day, t.outsized_day_factor)
    pooled = pd.concat([frames[d] for d in window], ignore_index=True) if window else pd.DataFrame()
    first, last = (window[-1], window[0]) if window else (day, day)
    if len(pooled) < t.min_rows:
        return DayVerdict(day, NOT_JUDGED, len(pooled), first, last, len(window), [
            f"{len(pooled)} rows in {len(window)} day(s) ({first} .. {last}) < min_rows {t.min_rows} (at most "
            f"max_window_days {max_window_days} days pooled): too few rows to judge drift"
            + _outsized_note(outsized, t)])
    matched, calendar_note = matched_reference(reference, reference_frame, reference_days, pooled, t, calendar_cache)
    features = feature_drift(matched, pooled, t, importance)
    # Calendar features themselves are judged against the whole reference (they are constant by design there).
    if matched is not reference:
        calendar = set(calendar_features(reference, t))
        whole = {f.feature: f for f in feature_drift(reference, pooled, t, importance) if f.feature in calendar}
        features = [whole.get(f.feature, f) for f in features]
    step = None
    if len(window) == 1:
        step = open_step(day, frames, reference, pooled, t, previous_record, step_accept_days)
        if step is None:
            previous = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
            if previous in frames and dt.date.fromisoformat(previous) >= first_judged_day:
                steps = step_reasons(reference, frames[previous], pooled, t)
                if steps:
                    step = {"since": day, "anchor": previous, "features": sorted(steps), "reasons": steps}
        if step is not None and not step.get("accepted"):
            for f in features:
                if f.feature in step["features"] and f.status != "not_judged":
                    f.status = "bug"
                    f.reasons.append(step["reasons"][f.feature])
    summary = summarize(features, t)
    verdict = DayVerdict(day, summary.status, len(pooled), first, last, len(window),
                         list(summary.reasons) + ([calendar_note] if calendar_note else []),
                         summary.max_psi, summary.weighted_drift_score, summary.drifted_features,
                         summary.watched_features, summary.bug_features, summary=summary,
                         step={k: v for k, v in step.items() if k != "reasons"} if step else None)
    if step and step.get("accepted"):
        verdict.reasons.append(step["accepted"])
    if summary.status == "act":
        verdict.reasons.append("drift on features the model relies on: " + ", ".join(
            f"{f.feature} (PSI {f.psi:.3f}, importance {f.importance:.0%})" for f in features
            if f.feature in summary.drifted_features))
    if len(window) > 1:
        verdict.reasons.append(f"judged on {len(pooled)} rows pooled over {len(window)} days ({first} .. {last})"
                               + _outsized_note(outsized, t))
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
