"""The retraining sensor: drift (+ decline) -> one `retrain` run, never a flood."""


import dagster as dg

from ml_assets.contract import Contract
from ml_assets.monitoring.policy import CheckOutcome, retrain_decision

DRIFT = dg.AssetCheckKey(dg.AssetKey("drift_report"), "feature_drift")
BUG = dg.AssetCheckKey(dg.AssetKey("drift_report"), "pipeline_bug_signals")
PERFORMANCE = dg.AssetCheckKey(dg.AssetKey("model_performance"), "auc_vs_golden")
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def _outcomes(instance: dg.DagsterInstance) -> dict[dg.AssetCheckKey, CheckOutcome]:
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as S

    records = instance.event_log_storage.get_latest_asset_check_execution_by_key([DRIFT, BUG, PERFORMANCE])
    out = {}
    for key, rec in records.items():
        if rec.status not in (S.SUCCEEDED, S.FAILED):
            continue
        out[key] = CheckOutcome(passed=rec.status == S.SUCCEEDED, record_id=rec.id)
    return out


def build(contract: Contract, retrain_job_name: str = "retrain") -> dg.SensorDefinition:
    @dg.sensor(
        name="retrain_on_drift",
        job_name=retrain_job_name,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="M4: requests one `retrain` run when drift_report's feature_drift check fails"
        + (" and model_performance shows a decline" if contract.thresholds.performance.retrain_requires_decline
           else "") + "; never on pipeline-bug signals (M5); never while a retrain is in flight (O4).",
    )
    def retrain_on_drift(context: dg.SensorEvaluationContext):
        outcomes = _outcomes(context.instance)
        in_flight = bool(context.instance.get_run_ids(
            dg.RunsFilter(job_name=retrain_job_name, statuses=ACTIVE), limit=1))
        decision = retrain_decision(outcomes.get(DRIFT), outcomes.get(BUG), outcomes.get(PERFORMANCE),
                                    contract.thresholds.performance.retrain_requires_decline, in_flight)
        if not decision.retrain:
            return dg.SkipReason(decision.reason)
        return dg.RunRequest(run_key=decision.run_key, tags={"ml_assets/trigger": decision.reason})

    return retrain_on_drift
