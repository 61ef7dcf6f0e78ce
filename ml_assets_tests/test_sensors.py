"""Each sensor shown to fire (and shown to hold back) on a real Dagster instance."""

import dagster as dg
import pytest

from ml_assets.alerts import read_alerts
from ml_assets.contract import load_contract
from ml_assets.monitoring import sensors
from ml_assets.monitoring.policy import CheckOutcome, retrain_decision
from ml_assets.orchestration import alert_on_run_failure
from ml_assets.resources import LogFileAlertSink


def report(instance, check: dg.AssetCheckKey, passed: bool) -> None:
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(asset_key=check.asset_key, check_name=check.name, passed=passed, metadata={})
    )


@pytest.fixture
def sensor():
    return sensors.build(load_contract())


def evaluate(sensor, instance):
    return sensor(dg.build_sensor_context(instance=instance))


def test_drift_with_performance_decline_requests_one_retrain_run(sensor):
    with dg.instance_for_test() as instance:
        report(instance, sensors.BUG, passed=True)
        report(instance, sensors.DRIFT, passed=False)
        report(instance, sensors.PERFORMANCE, passed=False)
        first = evaluate(sensor, instance)
        again = evaluate(sensor, instance)
    assert isinstance(first, dg.RunRequest)
    assert sensor.job_name == "retrain"
    # O4: the same evidence yields the same run_key, so Dagster launches it once.
    assert isinstance(again, dg.RunRequest) and again.run_key == first.run_key
    assert "drift" in first.tags["ml_assets/trigger"]


@pytest.mark.parametrize(
    ("drift", "bug", "perf", "reason"),
    [
        (True, True, False, "no feature drift"),
        (False, False, False, "pipeline bug"),  # M5: corrupted data must not retrain
        (False, True, True, "without a performance decline"),  # M4: drift alone is not enough
    ],
)
def test_retrain_is_held_back(sensor, drift, bug, perf, reason):
    with dg.instance_for_test() as instance:
        report(instance, sensors.DRIFT, passed=drift)
        report(instance, sensors.BUG, passed=bug)
        report(instance, sensors.PERFORMANCE, passed=perf)
        result = evaluate(sensor, instance)
    assert isinstance(result, dg.SkipReason) and reason in result.skip_message


def test_new_evidence_gets_a_new_run_key_and_in_flight_retrain_blocks():
    drift_a, drift_b = CheckOutcome(False, 10), CheckOutcome(False, 11)
    perf = CheckOutcome(False, 7)
    a = retrain_decision(drift_a, CheckOutcome(True, 1), perf, True, False)
    b = retrain_decision(drift_b, CheckOutcome(True, 1), perf, True, False)
    assert a.retrain and b.retrain and a.run_key != b.run_key
    held = retrain_decision(drift_b, CheckOutcome(True, 1), perf, True, retrain_in_flight=True)
    assert not held.retrain and "already queued or running" in held.reason
    drift_only = retrain_decision(drift_a, CheckOutcome(True, 1), None, requires_decline=False,
                                  retrain_in_flight=False)
    assert drift_only.retrain


@dg.op
def explode():
    raise RuntimeError("disk full while writing partition 2026-01-07")


@dg.job
def doomed():
    explode()


def test_failed_run_is_sent_to_the_alert_sink(tmp_path):
    sink = LogFileAlertSink(path=str(tmp_path / "alerts.jsonl"))
    with dg.instance_for_test() as instance:
        result = doomed.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=failure, resources={"alerts": sink},
        ).for_run_failure()
        alert_on_run_failure(context)
    alerts = read_alerts(tmp_path / "alerts.jsonl")
    assert len(alerts) == 1
    a = alerts[0]
    assert a["kind"] == "run_failure" and a["job"] == "doomed" and a["run_id"] == result.run_id
    assert a["steps"] == ["explode"]
    assert "disk full while writing partition 2026-01-07" in a["error"]
    assert a["run_url"].endswith(f"/runs/{result.run_id}")
