"""Cross-cutting orchestration: the run-failure alert (O2) and declarative automation."""


import os

import dagster as dg

from ml_assets.alerts import Alert
from ml_assets.resources import AlertSinkResource


def root_cause(err) -> str:
    """The user's own error, not Dagster's "Error occurred while executing op" wrapper."""
    while getattr(err, "cause", None) is not None:
        err = err.cause
    return f"{err.cls_name}: {err.message.strip()}" if getattr(err, "cls_name", None) else err.message.strip()


def run_url(run_id: str) -> str:
    base = os.environ.get("DAGSTER_WEBSERVER_URL", "http://127.0.0.1:3000").rstrip("/")
    return f"{base}/runs/{run_id}"


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="O2: every failed run goes to the alert sink with its job, failed steps, error and run link.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertSinkResource):
    run = context.dagster_run
    steps, errors = [], []
    for event in context.get_step_failure_events():
        steps.append(event.step_key or "?")
        err = event.event_specific_data.error if event.event_specific_data else None
        if err is not None:
            errors.append(f"{event.step_key}: {root_cause(err)}")
    alerts.send(Alert(
        kind="run_failure",
        summary=f"run {run.run_id[:8]} of job {run.job_name} failed" + (f" at {', '.join(steps)}" if steps else ""),
        job=run.job_name,
        run_id=run.run_id,
        steps=steps,
        error="\n".join(errors) or (context.failure_event.message or ""),
        run_url=run_url(run.run_id),
    ))


automation = dg.AutomationConditionSensorDefinition(
    "ml_assets_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (new partitions flow through features and monitoring).",
)
