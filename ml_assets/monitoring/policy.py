"""When to retrain (M4, M5, O4): plain decisions over the latest check outcomes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    record_id: int  # storage id of the evaluation: what makes a trigger unique
    partition_hint: str = ""


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str
    run_key: str | None = None


def retrain_decision(drift: CheckOutcome | None, bug: CheckOutcome | None, performance: CheckOutcome | None,
                     requires_decline: bool, retrain_in_flight: bool) -> RetrainDecision:
    if drift is None:
        return RetrainDecision(False, "no drift evaluation yet")
    if bug is not None and not bug.passed:
        return RetrainDecision(False, "pipeline bug signals (M5): fix the data, do not retrain on it")
    if drift.passed:
        return RetrainDecision(False, "no feature drift in the act band")
    declined = performance is not None and not performance.passed
    if requires_decline and not declined:
        return RetrainDecision(False, "drift without a performance decline on delayed labels (M4 needs both)")
    if retrain_in_flight:
        return RetrainDecision(False, "a retrain run is already queued or running (O4)")
    key = f"retrain:drift-{drift.record_id}" + (f":perf-{performance.record_id}" if declined else "")
    why = "feature drift in the act band" + (" and a performance decline" if declined else "")
    return RetrainDecision(True, why, key)
