"""The monitoring group's asset checks: each check's name, asset, description, severity and whether it
blocks, declared once; the asset declares its spec and records each partition's outcome through it.
The outcomes themselves are computed in `monitoring/daily.py`."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_assets.metadata import Outcome, partitioned_check


@dataclass(frozen=True)
class Check:
    name: str
    asset: str
    description: str
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN
    blocking: bool = False

    def spec(self, partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=self.asset, blocking=self.blocking, description=self.description,
                                 partitions_def=partitions)

    def results(self, context: dg.AssetExecutionContext, outcomes: Mapping[str, Outcome],
                metadata: Mapping[str, Any] | None = None) -> Iterator[dg.AssetCheckResult]:
        """Each partition's outcome, recorded against that partition (see `metadata.partitioned_check`)."""
        yield from partitioned_check(context, self.asset, self.name, outcomes, self.severity, metadata)


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
