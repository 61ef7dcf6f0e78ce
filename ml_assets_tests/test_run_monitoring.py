"""Run monitoring on the local and staging instances: a run whose worker process died (kill -9) is
marked failed by Dagster's run monitoring, instead of staying STARTED forever (and holding the one
retraining slot of the run queue)."""

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import EngineEventData
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from ml_assets.instance import LocalRunLauncher

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/dagster.staging.yaml", "deploy/dagster.prod.yaml"])
def test_every_instance_turns_run_monitoring_on(path):
    config = yaml.safe_load((ROOT / path).read_text())
    assert config["run_monitoring"]["enabled"] is True
    if path != "deploy/dagster.prod.yaml":  # prod: the K8sRunLauncher checks pods itself
        assert config["run_launcher"] == {"module": "ml_assets.instance", "class": "LocalRunLauncher"}


def started_run(instance: dg.DagsterInstance, pid: int) -> dg.DagsterRun:
    """A run in STARTED whose worker announced `pid`, as `dagster api execute_run` does."""
    run = instance.create_run_for_job(dg.GraphDefinition(name="g").to_job(), run_id=None)
    instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
    instance.handle_run_event(run.run_id, dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name, message="started"))
    return instance.get_run_by_id(run.run_id)


def test_a_killed_run_worker_is_marked_failed_and_a_live_one_is_left_alone(tmp_path):
    overrides = {"run_launcher": {"module": "ml_assets.instance", "class": "LocalRunLauncher"},
                 "run_monitoring": {"enabled": True, "poll_interval_seconds": 1}}
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        assert isinstance(instance.run_launcher, LocalRunLauncher)
        live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        doomed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            live_run, doomed_run = started_run(instance, live.pid), started_run(instance, doomed.pid)
            assert doomed_run.status == dg.DagsterRunStatus.STARTED
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
            time.sleep(0.1)
            logger = logging.getLogger("test")
            for run in (live_run, doomed_run):
                monitor_started_run(instance, None, instance.get_run_record_by_id(run.run_id), logger)
            assert instance.get_run_by_id(doomed_run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert instance.get_run_by_id(live_run.run_id).status == dg.DagsterRunStatus.STARTED
            messages = [e.dagster_event.message if e.dagster_event else e.user_message
                        for e in instance.all_logs(doomed_run.run_id)]
            assert any(f"run worker process {doomed.pid} is gone" in m for m in messages), messages
        finally:
            live.kill()
            live.wait()
