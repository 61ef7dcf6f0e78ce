"""Each sensor shown to fire (and shown to hold back) on a real Dagster instance, reading what the monitoring
assets recorded per partition."""

import dagster as dg
import pytest

from ml_assets.alerts import read_alerts
from ml_assets.contract import load_contract
from ml_assets.datasets.lake import REFRESH_TAG
from ml_assets.monitoring import sensors
from ml_assets.orchestration import alert_on_run_failure
from ml_assets.resources import LogFileAlertSink


def record(instance, asset: str, metadata: dict, partition: str | None = None) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition,
                                                                metadata=metadata))


def world(instance, champion="3", drift="stable", declining=False, episode="2026-02-01", scored="2026-02-14",
          perf_version="3", day="2026-02-17") -> None:
    record(instance, "champion_model", {"champion_version": champion})
    record(instance, "drift_report", {"status": drift, "reasons": "amount: null rate 21% on 4500 rows" if drift == "bug"
                                      else "", "golden_stale": False}, day)
    record(instance, "model_performance", {"declining": declining, "episode_start": episode, "scored_day": scored,
                                           "model_version": perf_version, "golden_window_days": 5,
                                           "reason": "AUC 0.61 (CI high 0.66) < 0.97 - 0.005"}, day)


@pytest.fixture
def sensor():
    return sensors.build(load_contract())


def tick(sensor, instance):
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, sensor_name=sensor.name))


def test_a_confirmed_decline_of_the_serving_model_requests_one_retrain_with_a_golden_refresh(sensor):
    with dg.instance_for_test() as instance:
        world(instance, declining=True)
        first, again = tick(sensor, instance), tick(sensor, instance)
    (request,) = first.run_requests
    assert sensor.job_name == "retrain"
    assert request.tags[REFRESH_TAG] == "decline" and request.tags[sensors.CHAMPION_TAG] == "3"
    assert "confirmed decline since 2026-02-01" in request.tags[sensors.TRIGGER_TAG]
    # O4: the same evidence yields the same run_key, so Dagster launches it once.
    assert again.run_requests[0].run_key == request.run_key


@pytest.mark.parametrize(("kw", "reason"), [
    ({"drift": "bug", "declining": True}, "pipeline bug signals on 2026-02-17"),  # M5: never on corrupted data
    ({"drift": "act"}, "drift on 2026-02-17 without a confirmed decline"),  # default trigger: decline
    ({"declining": True, "perf_version": "2"}, "no confirmed decline"),  # a decline of a model no longer serving
    ({"declining": True, "episode": "2026-02-10"}, "waiting for the new regime"),
])
def test_retrain_is_held_back(sensor, kw, reason):
    with dg.instance_for_test() as instance:
        world(instance, **kw)
        result = tick(sensor, instance)
    assert not result.run_requests and reason in result.skip_message


@dg.op
def crash():
    raise RuntimeError("worker lost")


@dg.asset(name="registered_model", check_specs=[dg.AssetCheckSpec("golden_set_gates", asset="registered_model",
                                                                  blocking=True)])
def gated_model():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="golden_set_gates", passed=False,
                              description="absolute_recall: recall 0.5990 < minimum 0.7")


def test_a_retrain_that_completed_holds_the_next_one_back_but_a_crashed_one_does_not(sensor):
    crashed_job = dg.JobDefinition(graph_def=dg.GraphDefinition("retrain", node_defs=[crash]), name="retrain")
    gated_job = dg.Definitions(assets=[gated_model], jobs=[dg.define_asset_job("retrain", selection=[gated_model])]
                               ).resolve_job_def("retrain")
    tags = {sensors.CHAMPION_TAG: "3", sensors.AS_OF_TAG: "2026-02-16"}
    with dg.instance_for_test() as instance:
        world(instance, declining=True)
        assert not crashed_job.execute_in_process(instance=instance, raise_on_error=False, tags=tags).success
        assert tick(sensor, instance).run_requests, "a run that crashed must not block the next trigger"
        # A run stopped by a failed blocking gate on registered_model completed its job (the challenger was
        # refused): asking again tomorrow would ask the same question, so the cooldown applies.
        assert not gated_job.execute_in_process(instance=instance, raise_on_error=False, tags=tags).success
        held = tick(sensor, instance)
        assert not held.run_requests and "cooldown_days 7 (1 so far)" in held.skip_message


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


def test_runs_executed_in_process_alert_through_the_sensor_tick_as_the_daemon_runs_it(tmp_path):
    """O2: a run started by the CLI (`ml-assets demo`, `dagster asset materialize`) has no code-location origin;
    the failure sensor must still see it when the daemon ticks it."""
    sink = LogFileAlertSink(path=str(tmp_path / "alerts.jsonl"))
    defs = dg.Definitions(jobs=[doomed], sensors=[alert_on_run_failure], resources={"alerts": sink})
    sensor = defs.resolve_sensor_def("alert_on_run_failure")
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, sensor_name=sensor.name,
                                                             definitions=defs, resources=defs.resources))
        result = doomed.execute_in_process(instance=instance, raise_on_error=False)
        sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor, sensor_name=sensor.name,
                                                     definitions=defs, resources=defs.resources))
    (alert,) = read_alerts(tmp_path / "alerts.jsonl")
    assert alert["run_id"] == result.run_id and "disk full" in alert["error"]


def test_a_retrain_whose_worker_died_does_not_block_the_next_trigger(sensor, monkeypatch):
    """A run left STARTED by a worker that was killed (kill -9, a lost node) is not in flight: run monitoring
    marks it failed (test_run_monitoring.py); until it does, the sensor presumes it dead once it has been silent
    for PRESUMED_DEAD_AFTER_S, so one killed retrain cannot block every later one."""
    tags = {sensors.CHAMPION_TAG: "3", sensors.AS_OF_TAG: "2026-02-16"}

    @dg.op
    def long_step():
        pass

    job = dg.JobDefinition(graph_def=dg.GraphDefinition("retrain", node_defs=[long_step]), name="retrain")
    with dg.instance_for_test() as instance:
        world(instance, declining=True)
        run = instance.create_run_for_job(job, tags=tags)
        instance.handle_run_event(run.run_id, dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_START.value, job_name="retrain", message="started"))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        held = tick(sensor, instance)
        assert not held.run_requests and "already queued or running" in held.skip_message
        later = sensors.time.time() + sensors.PRESUMED_DEAD_AFTER_S + 60
        monkeypatch.setattr(sensors.time, "time", lambda: later)
        assert tick(sensor, instance).run_requests, "a silent STARTED run is presumed dead"
