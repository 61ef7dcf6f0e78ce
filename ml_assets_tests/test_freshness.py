"""D3: stale assets and late landing deliveries reach the alert sink, once per state change.

Freshness states are computed by Dagster's own FreshnessDaemon (the FreshnessPolicy.time_window
policies of definitions.py) on a real instance; the landing zone is observed for real. Time is
moved with Dagster's freeze_time, which also stamps the events of a run made inside it.
"""

import datetime as dt
import sys

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.freshness import FreshnessDaemon

from ml_assets.alerts import read_alerts
from ml_assets.definitions import FRESHNESS_GOVERNED, build_definitions
from ml_assets.ingestion.landing import COMPLETE, LATE, ON_TIME, survey_landing
from ml_assets.orchestration import build_freshness_alerts, freshness_transitions
from ml_assets.resources import LogFileAlertSink
from ml_assets.settings import Settings
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets.storage import LocalStore
from ml_assets_tests.conftest import write_contract

DAY1, DAY2 = "2026-01-01", "2026-01-02"


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    contract = write_contract(tmp_path / "contract.yaml", partitions={"start_date": DAY1, "end_date": "2026-01-03"})
    monkeypatch.setenv("ML_ASSETS_HOME", str(home))
    monkeypatch.setenv("ML_ASSETS_CONTRACT", str(contract))
    settings = Settings(env="local", home=home, contract_path=contract)
    simulate(settings.landing_dir, SimulationConfig(start_date=dt.date(2026, 1, 1), days=2, n_cards=150))
    defs_file = tmp_path / "defs.py"
    defs_file.write_text("from ml_assets.definitions import build_definitions\n\ndefs = build_definitions()\n")
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield {"settings": settings, "defs": build_definitions(settings), "defs_file": defs_file, "instance": instance}


def run(env, asset: str, partition: str | None = None) -> None:
    job = env["defs"].resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey(asset)})
    assert job.execute_in_process(instance=env["instance"], partition_key=partition).success


def freshness_daemon_iteration(env) -> None:
    """One iteration of the daemon that `dagster dev` / dagster-daemon runs every 30 s."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, python_file=str(env["defs_file"]), attribute="defs"),
        location_name="ml_assets")
    with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), env["instance"]) as context:
        list(FreshnessDaemon().run_iteration(context))


class Ticks:
    """Successive evaluations of the sensor, each starting from the cursor the previous one left."""

    def __init__(self, env):
        self.env, self.cursor = env, None
        self.sensor = build_freshness_alerts(FRESHNESS_GOVERNED)
        self.path = env["settings"].alerts_path

    def tick(self) -> list[dict]:
        before = len(read_alerts(self.path))
        ctx = dg.build_sensor_context(instance=self.env["instance"], cursor=self.cursor,
                                      resources={"alerts": LogFileAlertSink(path=str(self.path))})
        self.sensor(ctx)
        self.cursor = ctx.cursor
        return read_alerts(self.path)[before:]


@pytest.mark.slow
def test_a_stale_asset_alerts_exactly_once_and_a_fresh_one_never(env):
    now = dt.datetime.now(dt.UTC)
    hours = env["defs"].resolve_assets_def("raw_transactions").specs_by_key[
        dg.AssetKey("raw_transactions")].freshness_policy.fail_window.to_timedelta()
    with freeze_time(now - hours - dt.timedelta(hours=1)):  # raw_transactions last materialized past its window
        run(env, "raw_transactions", DAY1)
    run(env, "raw_labels", DAY1)  # raw_labels materialized just now
    freshness_daemon_iteration(env)
    states = {k.to_user_string(): r.freshness_state.value
              for k, r in env["instance"].get_freshness_state_records(
                  [dg.AssetKey(a) for a in ("raw_transactions", "raw_labels")]).items()}
    assert states == {"raw_transactions": "FAIL", "raw_labels": "PASS"}

    ticks = Ticks(env)
    first = ticks.tick()
    assert [(a["kind"], a["details"]["asset"], a["details"]["state"]) for a in first] == [
        ("freshness", "raw_transactions", "FAIL")]
    assert "raw_transactions is stale" in first[0]["summary"]
    freshness_daemon_iteration(env)
    assert ticks.tick() == [], "a state that did not change does not alert again"

    run(env, "raw_transactions", DAY1)  # the fix: a fresh materialization
    freshness_daemon_iteration(env)
    assert env["instance"].get_freshness_state_records([dg.AssetKey("raw_transactions")])[
        dg.AssetKey("raw_transactions")].freshness_state.value == "PASS"
    assert ticks.tick() == [], "recovering is not an alert"


@pytest.mark.slow
def test_a_missing_landing_delivery_shows_as_late_and_alerts_once(env):
    landing = env["settings"].landing_dir
    run(env, "landing_zone")
    ticks = Ticks(env)
    assert ticks.tick() == [], "every expected delivery is there"
    first = env["instance"].fetch_observations(dg.AssetKey("landing_zone"), limit=1).records[0]
    assert first.asset_observation.metadata["delivery_state"].value == COMPLETE

    label_file = landing / "labels" / f"{DAY2}.csv"
    held_back = label_file.read_bytes()
    label_file.unlink()  # the upstream did not deliver the last day's labels
    run(env, "landing_zone")
    late = env["instance"].fetch_observations(dg.AssetKey("landing_zone"), limit=1).records[0]
    meta = late.asset_observation.metadata
    assert meta["delivery_state"].value == LATE
    assert meta["labels_newest_partition"].value == DAY1 and meta["labels_missing_partitions"].value == 1
    assert late.asset_observation.tags["dagster/data_version"] != first.asset_observation.tags["dagster/data_version"]
    alerts = ticks.tick()
    assert [(a["kind"], a["details"]["asset"], a["details"]["labels_newest_partition"]) for a in alerts] == [
        ("freshness", "landing_zone", DAY1)]
    run(env, "landing_zone")
    assert ticks.tick() == [], "still late: no second alert"

    label_file.write_bytes(held_back)  # delivered late
    run(env, "landing_zone")
    assert env["instance"].fetch_observations(dg.AssetKey("landing_zone"), limit=1).records[0] \
        .asset_observation.tags["dagster/data_version"] == first.asset_observation.tags["dagster/data_version"]
    assert ticks.tick() == []


def test_survey_judges_age_against_the_contract_window(env):
    from ml_assets.contract import load_contract

    contract = load_contract(env["settings"].contract_path)
    store = LocalStore(env["settings"].landing_dir)
    end_of_day2 = dt.datetime(2026, 1, 3, tzinfo=dt.UTC)
    window = dt.timedelta(hours=contract.thresholds.freshness_hours)
    open_ended = contract.model_copy(update={"partitions": contract.partitions.model_copy(update={"end_date": None})})
    expected = [DAY1, DAY2]
    assert {s.state for s in survey_landing(store, open_ended, expected, end_of_day2 + window)} == {ON_TIME}
    stale = survey_landing(store, open_ended, expected, end_of_day2 + window + dt.timedelta(minutes=1))
    assert {s.state for s in stale} == {LATE}
    assert stale[0].age_hours == pytest.approx(contract.thresholds.freshness_hours, abs=0.1)


def test_transitions_alert_on_changes_into_warn_or_fail_only():
    assert freshness_transitions({}, {"a": "FAIL", "b": "PASS", "c": "UNKNOWN"}) == [("a", "UNKNOWN", "FAIL")]
    assert freshness_transitions({"a": "FAIL"}, {"a": "FAIL"}) == []
    assert freshness_transitions({"a": "PASS"}, {"a": "WARN"}) == [("a", "PASS", "WARN")]
    assert freshness_transitions({"a": "WARN"}, {"a": "FAIL"}) == [("a", "WARN", "FAIL")]
    assert freshness_transitions({"a": "FAIL"}, {"a": "PASS"}) == []
