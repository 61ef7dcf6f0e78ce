"""Every simulator scenario, run through the real ingestion and feature assets: the specific check or
error fires, the failure reaches the alert sink, and nothing downstream consumes the bad day."""

import datetime as dt
import json
import shutil

import dagster as dg
import pytest

from ml_assets.contract import load_contract
from ml_assets.datasets.lake import usable_partitions
from ml_assets.ingestion.baseline import compute_baseline, write_baseline
from ml_assets.ingestion.ingest import read_partitions
from ml_assets.ingestion.status import read_status
from ml_assets.simulate.generator import SCENARIOS, SimulationConfig, simulate
from ml_assets.storage import LocalStore
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.harness import Graph, check_outcomes, failure_messages, materialized_partitions

START = 3  # days 0..2 are good and already ingested; the scenario hits day 3
GOOD = ["2026-01-01", "2026-01-02", "2026-01-03"]
BAD = "2026-01-04"


def sim_config(scenario: str) -> SimulationConfig:
    return SimulationConfig(start_date=dt.date(2026, 1, 1), days=START + 1, n_cards=300, scenario=scenario,
                            scenario_start_day=START)


@pytest.fixture(scope="module")
def good_lake(tmp_path_factory):
    """Three good days ingested and featurized in one run, and the baseline of that window stored."""
    root = tmp_path_factory.mktemp("good")
    contract = load_contract(write_contract(
        root / "contract.yaml", partitions={"start_date": "2026-01-01", "end_date": "2026-01-06"},
        ingestion={"retry_attempts": 2, "retry_base_delay_s": 0.01}))
    simulate(root / "landing", sim_config("none"))
    g = Graph(contract, root)
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions, g.transaction_features], instance, GOOD[0], GOOD[-1])
    assert result.success, failure_messages(result)
    store = LocalStore(g.lake_dir)
    # The function training_set calls when it materializes (see test_pipeline for that path).
    write_baseline(store, compute_baseline(read_partitions(store, "raw_transactions", GOOD), contract, GOOD))
    return contract, root


@pytest.fixture
def scenario_graph(good_lake, tmp_path):
    def make(scenario: str) -> Graph:
        contract, root = good_lake
        shutil.copytree(root / "lake", tmp_path / "lake")
        simulate(tmp_path / "landing", sim_config(scenario))
        return Graph(contract, tmp_path)

    return make


def test_days_before_the_scenario_are_untouched_and_the_simulation_is_deterministic(tmp_path):
    for scenario in SCENARIOS[2:]:
        a = simulate(tmp_path / scenario / "a", sim_config(scenario))
        b = simulate(tmp_path / scenario / "b", sim_config(scenario))
        assert [p.read_bytes() for p in a.transaction_files] == [p.read_bytes() for p in b.transaction_files]
    clean = simulate(tmp_path / "clean", sim_config("none"))
    broken = simulate(tmp_path / "broken", sim_config("schema_break"))
    assert [p.read_bytes() for p in clean.transaction_files[:START]] == \
        [p.read_bytes() for p in broken.transaction_files[:START]]


# scenario -> (what fails: an error in the step, or the checks that fail), text the alert must carry
FILE_LEVEL = {
    "schema_break": "missing ['amount']",
    "corrupt_file": "looks truncated",
    "stale_source": f"no landing file for partition {BAD}",
    "duplicate_delivery": "byte-identical copy",
}


@pytest.mark.parametrize("scenario", list(FILE_LEVEL))
def test_file_level_scenarios_fail_the_partition_alert_and_publish_nothing(scenario_graph, scenario):
    g = scenario_graph(scenario)
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions, g.transaction_features], instance, BAD)
        assert not result.success
        errors = failure_messages(result)
        assert FILE_LEVEL[scenario] in errors
        alert = g.alert_for(result, instance)
        assert alert["steps"] == ["raw_transactions"] and FILE_LEVEL[scenario] in alert["error"]
        # Nothing downstream ran, nothing was published, and the delivery is kept for inspection.
        assert materialized_partitions(instance, "transaction_features") == set()
        assert materialized_partitions(instance, "raw_transactions") == set()
        # A later run cannot make features out of the missing day either.
        later = g.materialize([g.transaction_features], instance, BAD)
        assert not later.success and f"raw_transactions has no rows for {BAD}" in failure_messages(later)
    store = LocalStore(g.lake_dir)
    assert not store.exists(f"raw_transactions/{BAD}.parquet")
    assert not store.exists(f"transaction_features/{BAD}.parquet")
    assert not store.list("staging"), "the failed run left no staged files behind"
    if scenario == "duplicate_delivery":
        assert f"already ingested as partition {GOOD[-1]}" in errors
        rows = len(read_partitions(store, "raw_transactions"))
        assert rows == sum(read_status(store, "raw_transactions", p)["valid"] for p in GOOD), "not double counted"
    if scenario != "stale_source":
        assert (g.landing_dir / "transactions" / f"{BAD}.csv").exists()


CHECK_LEVEL = {
    # scenario -> blocking checks that must fail, checks that must pass
    "null_spike": ({"null_rates", "schema_contract", "baseline_stats"}, {"row_volume"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(CHECK_LEVEL))
def test_check_level_scenarios_block_features_in_this_run_and_the_next(scenario_graph, scenario):
    must_fail, must_pass = CHECK_LEVEL[scenario]
    g = scenario_graph(scenario)
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions, g.transaction_features], instance, BAD)
        assert not result.success
        outcomes = check_outcomes(result)
        failed = {name for (asset, name), ev in outcomes.items() if asset == "raw_transactions" and not ev.passed
                  and ev.severity == dg.AssetCheckSeverity.ERROR}
        assert failed == must_fail and not must_pass & failed
        alert = g.alert_for(result, instance)
        assert all(name in alert["error"] for name in must_fail)
        # The blocking checks stopped the feature step of this run...
        assert materialized_partitions(instance, "transaction_features") == set()
        # ...and a separate, later run re-verifies the recorded outcome and refuses the day.
        later = g.materialize([g.transaction_features], instance, BAD)
        assert not later.success
        errors = failure_messages(later)
        assert f"raw_transactions {BAD}: failed " in errors and sorted(must_fail)[0] in errors
        assert materialized_partitions(instance, "transaction_features") == set()
    store = LocalStore(g.lake_dir)
    # The datasets leave the day out, named with its failed checks: never trained or judged on, and never
    # blocking every dataset built after it.
    usable = usable_partitions(store)
    assert BAD not in usable.records and sorted(must_fail)[0] in usable.excluded[BAD]
    assert not store.exists(f"transaction_features/{BAD}.parquet")
    assert not store.exists("golden_set/v1/manifest.json")
    status = json.loads(store.read_bytes(f"ingestion_status/raw_transactions/{BAD}.json"))
    assert not status["passed"] and {n for n, c in status["checks"].items() if not c["passed"]} == must_fail
    if scenario == "null_spike":
        description = outcomes[("raw_transactions", "baseline_stats")].description
        assert "merchant_category: null rate" in description and "null_rate_jump_max" in description


def test_in_domain_values_outside_training_are_a_drift_warning_not_a_stop(scenario_graph):
    """D2: amounts delivered in cents are still inside the contract's domain (rows above its max are
    quarantined by D1), so they are drift for monitoring to judge: a warning that names the column and
    the setting, while the day is ingested and its features are built."""
    g = scenario_graph("out_of_range")
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions, g.transaction_features], instance, BAD)
        assert result.success, failure_messages(result)
        drift = check_outcomes(result)[("raw_transactions", "baseline_drift")]
        assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
        assert "amount:" in drift.description and "outside the training range" in drift.description
        assert "thresholds.baseline.range_margin" in drift.description
        assert drift.metadata["threshold_out_of_range_share_max"].value == 0.01
        assert check_outcomes(result)[("raw_transactions", "baseline_stats")].passed
        assert BAD in materialized_partitions(instance, "transaction_features")
    store = LocalStore(g.lake_dir)
    status = read_status(store, "raw_transactions", BAD)
    assert status["passed"] and not status["checks"]["baseline_drift"]["passed"]
    q = store.read_parquet(f"quarantine/raw_transactions/{BAD}.parquet")
    assert len(q) and q["_reason"].str.contains("columns.amount.max").all(), "outside the domain: quarantined (D1)"
    assert status["delivered"] == status["valid"] + status["quarantined"]


def test_drift_is_not_mistaken_for_a_pipeline_bug(scenario_graph):
    """The world changing (drift) passes ingestion; drift is judged by monitoring, not here."""
    g = scenario_graph("drift")
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions, g.transaction_features], instance, BAD)
        assert result.success, failure_messages(result)
    assert LocalStore(g.lake_dir).exists(f"transaction_features/{BAD}.parquet")
