"""The registry group's asset checks, declared once (`metadata.Check`). The gate checks of registered_model
are named by the gates themselves (each `GateResult.check`); outcomes from `report.py` and `register.py`."""

import dagster as dg

from ml_assets.metadata import Check
from ml_assets.registry import gates

ERROR = dg.AssetCheckSeverity.ERROR

REGISTERED_CHECKS = tuple(Check(name, "registered_model", text, ERROR, True) for name, text in (
    (gates.ARTIFACT_INTEGRITY, "P8: the registered artifact's sha256 matches the recorded one"),
    (gates.GOLDEN_SET_DISJOINT, "P1: the training data in the model's lineage shares no entity, record or day with "
                                "the golden set"),
    (gates.GOLDEN_SET_GATES, "P2/P3: precision, recall and ROC AUC on the golden set meet the contract, and no "
                             "regression against the champion (bootstrap CI)"),
    (gates.INFERENCE_LATENCY, "P4: p99 of single-row scoring within the contract's limit"),
    (gates.FAIRNESS, "P5: no group of the declared sensitive attribute is treated worse (the contract's fairness "
                     "metric: error-rate or flag-rate ratios, confidence bounds)"),
))
CHAMPION_SCORED_ON_GOLDEN = Check(
    "champion_scored_on_golden", "champion_golden_metrics", "P1: the serving champion has metrics on the golden "
    "version in force (its artifact verified), or there is no champion yet")
CHAMPION_SERVES_VERIFIED_ARTIFACT = Check(
    "champion_serves_verified_artifact", "champion_model", "P6/P8: the 'champion' alias resolves to a version whose "
    "artifact hash verifies", ERROR, True)
