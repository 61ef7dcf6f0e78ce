"""When to retrain (M4, M5, M6, O4): a plain decision over what the monitoring assets recorded."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

TRIGGERS = ("decline", "drift_and_decline", "drift_or_decline")


@dataclass(frozen=True)
class Evidence:
    """What the sensor knows: the newest judged drift day and the newest performance day."""

    champion_version: str | None
    drift_day: str | None = None
    drift_status: str | None = None  # warm_up | not_judged | stable | watch | act | bug
    drift_reasons: str = ""
    golden_stale: bool = False
    performance_day: str | None = None
    declining: bool = False
    episode_start: str | None = None
    performance_model_version: str | None = None
    performance_reason: str = ""
    labelled_through: str | None = None  # the newest event day with labels
    golden_window_days: int = 0  # length of the current golden window


@dataclass(frozen=True)
class LastRetrain:
    """The newest retrain run asked for the current champion."""

    run_id: str
    status: str  # active | success | failure
    as_of: str  # the data day it was asked for


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str
    run_key: str | None = None
    refresh_golden: str | None = None  # why the golden set should follow the data, if it should
    as_of: str | None = None


def retrain_decision(e: Evidence, trigger: str, cooldown_days: int, last: LastRetrain | None,
                     min_new_days: int = 0) -> RetrainDecision:
    """One retrain per episode, never on a broken pipeline, never two at once.

    - no champion: nothing to protect yet (the first model comes from a person's `retrain` run);
    - the newest drift verdict shows pipeline-bug signals (M5): fix the data, do not retrain on it;
    - the contract's trigger (M4): `decline` — a confirmed decline of the serving model on delayed
      labels (M3), which also covers concept drift that leaves feature PSI low; `drift_and_decline`;
      `drift_or_decline`; drift means an `act` verdict on features the model relies on;
    - a retrain for this champion already running (O4), or one that finished less than
      `cooldown_days` (data days) before: wait — a refused challenger is retried after the
      cooldown with more data of the new regime; a run that failed or died does not count;
    - a decline, or live data that left the golden set (M6), asks the run to refresh the golden set;
    - the first retrain of a decline episode waits until the days labelled since it began cover the
      golden window plus `min_new_days`: the refreshed golden set takes the newest days and training
      the days before them, so retraining earlier would learn only the world that declined.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"retraining.trigger {trigger!r}: expected one of {', '.join(TRIGGERS)}")
    if e.champion_version is None:
        return RetrainDecision(False, "no champion yet: the first model is trained by a `retrain` run")
    day = e.drift_day or e.performance_day
    if day is None:
        return RetrainDecision(False, "no monitoring results yet")
    if e.drift_status == "bug":
        return RetrainDecision(False, f"pipeline bug signals on {e.drift_day} (M5): fix the data, do not retrain on "
                                      f"it — {e.drift_reasons}"[:500])
    decline = e.declining and e.performance_model_version == e.champion_version
    drift = e.drift_status == "act"
    wanted = {"decline": decline, "drift_and_decline": decline and drift, "drift_or_decline": decline or drift}[trigger]
    if not wanted:
        if drift and not decline:
            why = f"drift on {e.drift_day} without a confirmed decline on delayed labels (trigger {trigger})"
        elif decline and not drift:
            why = f"a confirmed decline without feature drift (trigger {trigger} needs both)"
        else:
            why = f"no confirmed decline ({e.performance_reason or 'no judged window yet'})"[:400]
        return RetrainDecision(False, why + (f"; the golden set is stale (M6): {e.drift_reasons}"[:200]
                                             if e.golden_stale else ""))
    if last is not None and last.status == "active":
        return RetrainDecision(False, f"a retrain for champion v{e.champion_version} is already queued or running "
                                      f"(run {last.run_id[:8]}, O4)")
    if last is not None and last.status == "success":
        waited = (dt.date.fromisoformat(day) - dt.date.fromisoformat(last.as_of)).days
        if waited < cooldown_days:
            return RetrainDecision(False, f"a retrain for champion v{e.champion_version} ran as of {last.as_of} "
                                          f"(run {last.run_id[:8]}) and the champion stayed; next attempt after "
                                          f"cooldown_days {cooldown_days} ({waited} so far)")
    if decline and e.episode_start and e.labelled_through and (last is None or last.status != "success"):
        seen = (dt.date.fromisoformat(e.labelled_through) - dt.date.fromisoformat(e.episode_start)).days + 1
        need = e.golden_window_days + min_new_days
        if seen < need:
            return RetrainDecision(False, f"decline confirmed since {e.episode_start}; waiting for the new regime: "
                                          f"{seen} labelled day(s) since, {need} needed (golden window "
                                          f"{e.golden_window_days} + retraining.min_new_days {min_new_days}) so the "
                                          f"retrained model learns it")
    reasons = []
    if decline:
        reasons.append(f"confirmed decline since {e.episode_start}: {e.performance_reason}")
    if drift:
        reasons.append(f"drift on {e.drift_day}: {e.drift_reasons}")
    refresh = "decline" if decline else ("golden_stale" if e.golden_stale else None)
    return RetrainDecision(True, "; ".join(reasons)[:1000], f"retrain:champion-v{e.champion_version}:as-of-{day}",
                           refresh, day)
