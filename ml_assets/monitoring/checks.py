"""The monitoring group's asset checks, declared once (`metadata.Check`); the outcomes are computed in
`monitoring/daily.py`."""

import dagster as dg

from ml_assets.metadata import Check

PREDICTIONS_COMPLETE = Check(
    "predictions_complete", "batch_predictions", "one score in [0, 1] for every feature row",
    dg.AssetCheckSeverity.ERROR, blocking=True)
FEATURE_DRIFT = Check(
    "feature_drift", "drift_report", "M1: no feature the model relies on drifted into the act band")
PIPELINE_BUG_SIGNALS = Check(
    "pipeline_bug_signals", "drift_report", "M5: no sign of a broken pipeline (null-rate jump, constant column, "
    "feature missing at serving, sudden step after a stable day)", dg.AssetCheckSeverity.ERROR)
REPORT_WRITTEN = Check(
    "report_written", "evidently_report", "M7: every day due a report has a whole HTML page in the lake (a crash "
    "mid-write leaves none, never a truncated one)")
AUC_VS_GOLDEN = Check(
    "auc_vs_golden", "model_performance", "M3: no confirmed decline: the live AUC's CI is not below the golden "
    "reference on consecutive disjoint windows")
