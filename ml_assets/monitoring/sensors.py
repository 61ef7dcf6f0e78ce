"""The retraining sensor: what drift_report and model_performance recorded for the newest day -> at most
one `retrain` run (M4, M5, M6, O4). The decision itself is `policy.retrain_decision`."""

import time

import dagster as dg

from ml_assets.contract import Contract
from ml_assets.datasets.lake import REFRESH_TAG
from ml_assets.monitoring.policy import Evidence, LastRetrain, retrain_decision

CHAMPION_TAG, AS_OF_TAG, TRIGGER_TAG = "ml_assets/champion", "ml_assets/as_of", "ml_assets/trigger"
ACTIVE = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED)
# A run still marked STARTED that has written no event for this long lost its worker (killed, node gone):
# it must not block retraining forever. Dagster's run monitoring (dagster.yaml) marks such runs failed; this
# is the sensor's own guard for instances where monitoring is off.
PRESUMED_DEAD_AFTER_S = 3600


def newest_partition(instance: dg.DagsterInstance, asset: str) -> tuple[str, dict] | None:
    """The newest materialized partition of a daily asset and that partition's own metadata."""
    key = dg.AssetKey(asset)
    partitions = instance.get_materialized_partitions(key)
    if not partitions:
        return None
    newest = max(partitions)
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[newest]),
                                              limit=1).records
    if not records:
        return None
    return newest, {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


def evidence(instance: dg.DagsterInstance, champion_version: str | None) -> Evidence:
    drift = newest_partition(instance, "drift_report")
    perf = newest_partition(instance, "model_performance")
    d = drift[1] if drift else {}
    p = perf[1] if perf else {}
    return Evidence(
        champion_version=champion_version,
        drift_day=drift[0] if drift else None, drift_status=d.get("status"), drift_reasons=str(d.get("reasons", "")),
        golden_stale=bool(d.get("golden_stale", False)),
        performance_day=perf[0] if perf else None, declining=bool(p.get("declining", False)),
        episode_start=p.get("episode_start"), performance_model_version=str(p.get("model_version") or "") or None,
        performance_reason=str(p.get("reason", "")), labelled_through=p.get("scored_day"),
        golden_window_days=int(p.get("golden_window_days") or 0),
    )


def last_retrain(instance: dg.DagsterInstance, job_name: str, champion_version: str) -> LastRetrain | None:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, tags={CHAMPION_TAG: champion_version}), limit=1)
    if not runs:
        return None
    run = runs[0]
    as_of = run.tags.get(AS_OF_TAG, "")
    if run.status in ACTIVE:
        records = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
        record = instance.get_run_record_by_id(run.run_id)
        last_activity = max(records[0].event_log_entry.timestamp if records else 0.0,
                            record.update_timestamp.timestamp() if record and record.update_timestamp else 0.0)
        if time.time() - last_activity > PRESUMED_DEAD_AFTER_S:
            return LastRetrain(run.run_id, "failure", as_of)  # its worker is gone; it is not in flight
        return LastRetrain(run.run_id, "active", as_of)
    if run.status == dg.DagsterRunStatus.SUCCESS or refused_at_the_gates(instance, run.run_id):
        # Completed: promoted, or the challenger was refused by a gate (a blocking check on registered_model
        # stops the run by design). Either way the data has spoken; retrying tomorrow would ask the same question.
        return LastRetrain(run.run_id, "success", as_of)
    return LastRetrain(run.run_id, "failure", as_of)


def refused_at_the_gates(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a failed run stopped because a promotion gate refused the challenger (not a crash)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return any(r.event_log_entry.dagster_event.event_specific_data.asset_key == dg.AssetKey("registered_model")
               and not r.event_log_entry.dagster_event.event_specific_data.passed for r in records)


def serving_champion(instance: dg.DagsterInstance) -> str | None:
    """The champion version as champion_model last recorded it (promotion and rollback both record it)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("champion_model"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("champion_version")
    return str(getattr(value, "value", value)) if value is not None else None


def build(contract: Contract, retrain_job_name: str = "retrain") -> dg.SensorDefinition:
    r = contract.retraining

    @dg.sensor(
        name="retrain_on_drift",
        job_name=retrain_job_name,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"M4: asks for one `retrain` run when the contract's trigger ({r.trigger}) holds on the newest "
        f"day that drift_report / model_performance judged; never on pipeline-bug signals (M5); never while a retrain "
        f"for the same champion is in flight, nor within {r.cooldown_days} days of one that left the champion in "
        f"place (O4); a decline or a stale golden set asks it to freeze a new golden version first (M6).",
    )
    def retrain_on_drift(context: dg.SensorEvaluationContext):
        version = serving_champion(context.instance)
        e = evidence(context.instance, version)
        last = last_retrain(context.instance, retrain_job_name, version) if version else None
        decision = retrain_decision(e, r.trigger, r.cooldown_days, last, r.min_new_days)
        if not decision.retrain:
            return dg.SkipReason(decision.reason)
        tags = {CHAMPION_TAG: version, AS_OF_TAG: decision.as_of, TRIGGER_TAG: decision.reason[:1000]}
        if decision.refresh_golden:
            tags[REFRESH_TAG] = decision.refresh_golden
        return dg.RunRequest(run_key=decision.run_key, tags=tags)

    return retrain_on_drift
