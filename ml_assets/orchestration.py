"""Cross-cutting orchestration: the run-failure alert (O2), freshness alerts (D3) and declarative automation."""


import json
import os

import dagster as dg

from ml_assets.alerts import Alert
from ml_assets.resources import AlertSinkResource


def root_cause(err) -> str:
    """The user's own error, not Dagster's "Error occurred while executing op" wrapper."""
    while getattr(err, "cause", None) is not None:
        err = err.cause
    return f"{err.cls_name}: {err.message.strip()}" if getattr(err, "cls_name", None) else err.message.strip()


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Each failed check of a run with its own message (what, where, the setting that governs it): a blocking
    check's failure otherwise reaches people as "1 blocking asset check failed with ERROR severity"."""
    out = []
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
        e = record.event_log_entry.dagster_event.event_specific_data
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR:
            where = e.asset_key.to_user_string() + (f" {e.partition}" if e.partition else "")
            meta = e.metadata or {}
            extra = next((getattr(meta[k], "value", meta[k]) for k in ("reasons", "problems") if k in meta), "")
            reasons = e.description or str(extra)
            out.append(f"{where} / {e.check_name}: {reasons}".strip().rstrip(":"))
    return list(dict.fromkeys(out))


def run_url(run_id: str) -> str:
    base = os.environ.get("DAGSTER_WEBSERVER_URL", "http://127.0.0.1:3000").rstrip("/")
    return f"{base}/runs/{run_id}"


LOCATION = "ml_assets"  # the code location name (workspace.yaml, pyproject's [tool.dagster])


def launched_elsewhere(run: dg.DagsterRun) -> bool:
    """A run launched from another code location of the same instance. Runs of this code location
    launched by the daemon or the UI carry our location in their origin; runs executed in process
    (`ml-assets demo` / `replay`, `dagster asset materialize`) carry no origin and are ours too."""
    origin = run.remote_job_origin
    return origin is not None and origin.repository_origin.code_location_origin.location_name != LOCATION


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # Runs executed in process (the CLI, the replay, `dagster asset materialize`) have no code-location origin;
    # a sensor limited to its own location would never see them fail (O2).
    monitor_all_code_locations=True,
    description="O2: every failed run of this code location, however it was launched, goes to the alert sink with "
                "its job, failed steps, error and run link.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertSinkResource):
    run = context.dagster_run
    if launched_elsewhere(run):
        return
    steps, errors = [], []
    for event in context.get_step_failure_events():
        steps.append(event.step_key or "?")
        err = event.event_specific_data.error if event.event_specific_data else None
        if err is not None:
            errors.append(f"{event.step_key}: {root_cause(err)}")
    checks = failed_checks(context.instance, run.run_id)
    alerts.send(Alert(
        kind="run_failure",
        summary=f"run {run.run_id[:8]} of job {run.job_name} failed" + (f" at {', '.join(steps)}" if steps else "")
        + (f": {checks[0]}"[:300] if checks else ""),
        job=run.job_name,
        run_id=run.run_id,
        steps=steps,
        error="\n".join(errors + [f"failed check {c}" for c in checks]) or (context.failure_event.message or ""),
        run_url=run_url(run.run_id),
        details={"failed_checks": checks} if checks else {},
    ))


automation = dg.AutomationConditionSensorDefinition(
    "ml_assets_automation",
    target=dg.AssetSelection.all(include_sources=True),  # the landing zone is observed by it too
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (new partitions flow through features and monitoring).",
)


# D3: freshness states that are an incident. WARN is the contract's early warning (3/4 of the window).
ALERTING_STATES = ("WARN", "FAIL")


def freshness_transitions(previous: dict[str, str], current: dict[str, str]) -> list[tuple[str, str, str]]:
    """(asset, old, new) for every asset whose state changed into an alerting state.

    Keyed on changes, not on states: an asset that stays stale alerts once, not on every tick;
    one that recovers and goes stale again alerts again.
    """
    return [(asset, previous.get(asset, "UNKNOWN"), state) for asset, state in sorted(current.items())
            if state != previous.get(asset, "UNKNOWN") and state in ALERTING_STATES]


def current_freshness(instance: dg.DagsterInstance, governed: list[str], landing: str) -> tuple[dict, dict]:
    """Freshness state per asset, as Dagster's freshness daemon last recorded it (FRESHNESS_STATE_CHANGE
    events evaluating each asset's FreshnessPolicy), plus the landing zone's own delivery state from its
    latest observation (a source is observed, not materialized, so Dagster's policies cannot judge it)."""
    keys = [dg.AssetKey(a) for a in governed]
    states = {k.to_user_string(): rec.freshness_state.value
              for k, rec in instance.get_freshness_state_records(keys).items()}
    details: dict[str, dict] = {}
    records = instance.fetch_observations(dg.AssetKey(landing), limit=1).records
    if records:
        meta = records[0].asset_observation.metadata
        delivery = meta["delivery_state"].value if "delivery_state" in meta else "unknown"
        states[landing] = "FAIL" if delivery == "late" else "PASS"
        details[landing] = {k: v.value for k, v in meta.items() if k != "sources"}
    return states, details


def build_freshness_alerts(governed: list[str], landing: str = "landing_zone") -> dg.SensorDefinition:
    @dg.sensor(
        name="alert_on_stale_assets",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="D3: an asset whose freshness policy turns WARN/FAIL, or a late landing delivery, goes to the "
                    "alert sink once per state change.",
    )
    def alert_on_stale_assets(context: dg.SensorEvaluationContext, alerts: AlertSinkResource):
        previous = json.loads(context.cursor) if context.cursor else {}
        current, details = current_freshness(context.instance, governed, landing)
        changes = freshness_transitions(previous, current)
        for asset, old, new in changes:
            alerts.send(Alert(
                kind="freshness",
                summary=f"{asset} is {'stale' if new == 'FAIL' else 'close to stale'} ({old} -> {new})",
                details={"asset": asset, "state": new, "previous_state": old, **details.get(asset, {})},
            ))
        context.update_cursor(json.dumps({**previous, **current}, sort_keys=True))
        if not changes:
            return dg.SkipReason(f"no freshness state changed into {'/'.join(ALERTING_STATES)}")
        return dg.SkipReason(f"alerted: {', '.join(f'{a} {o}->{n}' for a, o, n in changes)}")

    return alert_on_stale_assets
