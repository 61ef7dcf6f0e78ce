"""The ingestion assets under real Dagster runs: idempotent re-runs and re-deliveries (D5), staged
all-or-nothing backfills (D6), a flaky and a dead source (D7), and cross-run refusal of failed partitions."""

import datetime as dt
import io
import json
import os
import time

import dagster as dg
import pyarrow.parquet as pq
import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion.ingest import read_partitions
from ml_assets.resources import StorageResource
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets.storage import LocalStore, ObjectStore, table_to_parquet_bytes
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.harness import Graph, check_outcomes, failure_messages, materialized_partitions

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    path = write_contract(tmp_path_factory.mktemp("contract") / "contract.yaml",
                          partitions={"start_date": "2026-01-01", "end_date": "2026-01-06"},
                          ingestion={"retry_attempts": 3, "retry_base_delay_s": 0.2})
    return load_contract(path)


@pytest.fixture
def landing(tmp_path):
    simulate(tmp_path / "landing", SimulationConfig(start_date=dt.date(2026, 1, 1), days=3, n_cards=300))
    return tmp_path / "landing"


def lake_bytes(store: LocalStore) -> dict[str, bytes]:
    return {k: store.read_bytes(k) for k in store.list("") if not k.startswith("ingestion_status/")}


def test_rematerializing_a_partition_gives_byte_identical_output(contract, landing, tmp_path):
    g = Graph(contract, tmp_path, landing=landing)
    store = LocalStore(g.lake_dir)
    with dg.instance_for_test() as instance:
        first = g.materialize([g.raw_transactions], instance, DAYS[0])
        before = lake_bytes(store)
        second = g.materialize([g.raw_transactions], instance, DAYS[0])
        after = lake_bytes(store)
    assert first.success and second.success
    assert f"raw_transactions/{DAYS[0]}.parquet" in before and f"quarantine/raw_transactions/{DAYS[0]}.parquet" in before
    assert before == after, "a second run of the same partition rewrote identical bytes"
    meta = second.asset_materializations_for_node("raw_transactions")[0].metadata
    assert meta["redelivered_partitions"].value == DAYS[0] and meta["redelivery"].value is True
    assert meta["rows_delivered"].value == meta["rows_valid"].value + meta["rows_quarantined"].value


def test_a_redelivered_file_under_another_days_name_is_detected_and_not_double_counted(contract, landing, tmp_path):
    g = Graph(contract, tmp_path, landing=landing)
    store = LocalStore(g.lake_dir)
    with dg.instance_for_test() as instance:
        assert g.materialize([g.raw_transactions], instance, DAYS[0], DAYS[1]).success
        rows = len(read_partitions(store, "raw_transactions"))
        published = lake_bytes(store)
        # The upstream re-sends day 1's file as day 3's delivery.
        (landing / "transactions" / f"{DAYS[2]}.csv").write_bytes((landing / "transactions" / f"{DAYS[0]}.csv")
                                                                 .read_bytes())
        result = g.materialize([g.raw_transactions], instance, DAYS[2])
        assert not result.success
        errors = failure_messages(result)
        assert "DuplicateDelivery" in errors and f"already ingested as partition {DAYS[0]}" in errors
        assert DAYS[2] not in materialized_partitions(instance, "raw_transactions")
    assert len(read_partitions(store, "raw_transactions")) == rows
    assert lake_bytes(store) == published


def test_the_same_content_twice_in_one_backfill_is_refused(contract, landing, tmp_path):
    (landing / "transactions" / f"{DAYS[1]}.csv").write_bytes((landing / "transactions" / f"{DAYS[0]}.csv")
                                                             .read_bytes())
    g = Graph(contract, tmp_path, landing=landing)
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions], instance, DAYS[0], DAYS[2])
    assert not result.success and "in the same run" in failure_messages(result)
    assert LocalStore(g.lake_dir).list("raw_transactions") == []
    assert LocalStore(g.lake_dir).list("staging") == [], "partitions staged before the failure were dropped"


class LossyLake(LocalStore):
    """A lake whose staged writes silently lose the last row of the valid data: the D6 fault."""

    def write_bytes(self, key: str, data: bytes) -> None:
        if key.startswith("staging/") and "/quarantine/" not in key and key.endswith(f"{DAYS[1]}.parquet"):
            table = pq.read_table(io.BytesIO(data))
            data = table_to_parquet_bytes(table.slice(0, table.num_rows - 1))
        super().write_bytes(key, data)


class LossyLakeResource(StorageResource):
    root: str

    def get_store(self) -> ObjectStore:
        return LossyLake(self.root)


@pytest.mark.slow
def test_a_backfill_with_a_count_mismatch_publishes_nothing(contract, landing, tmp_path):
    g = Graph(contract, tmp_path, landing=landing)
    store = LocalStore(g.lake_dir)
    with dg.instance_for_test() as instance:
        assert g.materialize([g.raw_transactions], instance, DAYS[0]).success
        published = {k: store.read_bytes(k) for k in store.list("")}
        lossy = Graph(contract, tmp_path, landing=landing,
                      lake_resource=LossyLakeResource(root=str(g.lake_dir)))
        result = lossy.materialize([lossy.raw_transactions, lossy.transaction_features], instance, DAYS[0], DAYS[2])
        assert not result.success
        errors = failure_messages(result)
        assert "PublishMismatch" in errors and f"{DAYS[1]}: staged" in errors and "nothing was published" in errors
        assert materialized_partitions(instance, "transaction_features") == set()
        assert {k: store.read_bytes(k) for k in store.list("")} == published, "published lake byte-for-byte unchanged"
        # The healthy backfill publishes every partition, and its counts add up.
        healthy = g.materialize([g.raw_transactions], instance, DAYS[0], DAYS[2])
        assert healthy.success
    for d in DAYS:
        status = json.loads(store.read_bytes(f"ingestion_status/raw_transactions/{d}.json"))
        assert status["delivered"] == status["valid"] + status["quarantined"]
        assert len(store.read_parquet(f"raw_transactions/{d}.parquet")) == status["valid"]
    assert store.list("staging") == []


class FlakyLanding(LocalStore):
    """A landing zone that drops the connection `failures` times per file before it answers."""

    def __init__(self, root: str, failures: int):
        super().__init__(root)
        self.failures, self.attempts, self.times = failures, {}, []

    def read_bytes(self, key: str) -> bytes:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.times.append(time.monotonic())
        if self.attempts[key] <= self.failures:
            raise ConnectionError(f"connection reset by landing server while reading {key}")
        return super().read_bytes(key)


FLAKY: dict[str, FlakyLanding] = {}


class FlakyLandingResource(StorageResource):
    root: str
    failures: int

    def get_store(self) -> ObjectStore:
        # One store per resource config, so the failure count survives across get_store calls.
        return FLAKY.setdefault(f"{self.root}:{self.failures}", FlakyLanding(self.root, self.failures))


def test_a_source_that_fails_twice_is_retried_with_backoff_and_ingested(contract, landing, tmp_path):
    resource = FlakyLandingResource(root=str(landing), failures=2)
    g = Graph(contract, tmp_path, landing_resource=resource)
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions], instance, DAYS[0])
    assert result.success, failure_messages(result)
    flaky = FLAKY[f"{landing}:2"]
    assert flaky.attempts == {f"transactions/{DAYS[0]}.csv": 3}
    gaps = [b - a for a, b in zip(flaky.times, flaky.times[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, f"exponential backoff from the contract's 0.2 s: {gaps}"
    assert LocalStore(g.lake_dir).exists(f"raw_transactions/{DAYS[0]}.parquet")


def test_a_source_that_stays_down_fails_loudly_naming_it_and_publishes_nothing(contract, landing, tmp_path):
    resource = FlakyLandingResource(root=str(landing), failures=10**6)
    g = Graph(contract, tmp_path, landing_resource=resource)
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions, g.transaction_features], instance, DAYS[0])
        assert not result.success
        errors = failure_messages(result)
        alert = g.alert_for(result, instance)
        assert materialized_partitions(instance, "transaction_features") == set()
    source = str(landing.resolve() / "transactions" / f"{DAYS[0]}.csv")
    assert f"reading {source}: still failing after 3 attempts" in errors
    assert source in alert["error"] and "SourceUnavailable" in alert["error"]
    # Three attempts in total: the in-code backoff is the retry, the step is not re-run on top of it.
    assert FLAKY[f"{landing}:{10**6}"].attempts == {f"transactions/{DAYS[0]}.csv": 3}
    assert LocalStore(g.lake_dir).list("") == []


def test_consumers_refuse_a_partition_whose_record_is_missing_or_does_not_match(contract, landing, tmp_path):
    g = Graph(contract, tmp_path, landing=landing)
    store = LocalStore(g.lake_dir)
    with dg.instance_for_test() as instance:
        assert g.materialize([g.raw_transactions], instance, DAYS[0], DAYS[1]).success
        # Someone overwrites a published partition outside the pipeline (or a run died mid-publish).
        df = store.read_parquet(f"raw_transactions/{DAYS[0]}.parquet")
        store.write_parquet(f"raw_transactions/{DAYS[0]}.parquet", df.iloc[:10])
        store.delete(f"ingestion_status/raw_transactions/{DAYS[1]}.json")
        result = g.materialize([g.transaction_features], instance, DAYS[1])
        assert not result.success
        errors = failure_messages(result)
        assert materialized_partitions(instance, "transaction_features") == set()
    assert f"raw_transactions {DAYS[0]}: " in errors and "not the file its ingestion record describes" in errors
    assert f"raw_transactions {DAYS[1]}: no ingestion record" in errors


def test_check_outcomes_are_recorded_next_to_each_partition(contract, landing, tmp_path):
    g = Graph(contract, tmp_path, landing=landing)
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions], instance, DAYS[0])
    store = LocalStore(g.lake_dir)
    status = json.loads(store.read_bytes(f"ingestion_status/raw_transactions/{DAYS[0]}.json"))
    assert status["passed"] and set(status["checks"]) == {"schema_contract", "null_rates", "baseline_stats",
                                                          "baseline_drift", "row_volume"}
    assert status["run_id"] == result.run_id
    assert {name for (_, name), ev in check_outcomes(result).items() if ev.passed} == set(status["checks"])
    assert not status["checks"]["baseline_drift"]["blocking"] and status["checks"]["row_volume"]["blocking"]
    assert oct(LocalStore(g.lake_dir).path(f"raw_transactions/{DAYS[0]}.parquet").stat().st_mode & 0o777) == \
        oct(0o666 & ~_umask()), "lake files are readable by others (0644 under umask 022), not mkstemp's 0600"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_label_of_a_quarantined_record_is_quarantined_and_only_never_delivered_ids_fail(contract, tmp_path):
    simulate(tmp_path / "landing", SimulationConfig(start_date=dt.date(2026, 1, 1), days=4, n_cards=300))
    tx = tmp_path / "landing" / "transactions" / "2026-01-01.csv"
    lines = tx.read_bytes().decode().splitlines(keepends=True)
    bad_id = lines[5].split(",")[0]
    fields = lines[5].split(",")
    fields[3] = "-1"  # amount: outside the contract's domain -> quarantined
    lines[5] = ",".join(fields)
    tx.write_text("".join(lines))
    g = Graph(contract, tmp_path)
    store = LocalStore(g.lake_dir)
    with dg.instance_for_test() as instance:
        assert g.materialize([g.raw_transactions], instance, "2026-01-01", "2026-01-04").success
        result = g.materialize([g.raw_labels], instance, "2026-01-04")
        assert result.success, failure_messages(result)
        match = check_outcomes(result)[("raw_labels", "labels_match_records")]
        assert match.passed and "1 labels of quarantined records were quarantined with them" in match.description
        q = store.read_parquet("quarantine/raw_labels/2026-01-04.parquet")
        assert q["transaction_id"].tolist() == [bad_id]
        assert "quarantined at ingestion of raw_transactions 2026-01-01" in q["_reason"].iloc[0]
        # A label for a record that was never delivered still fails the check, and blocks consumers.
        labels = tmp_path / "landing" / "labels" / "2026-01-04.csv"
        labels.write_text(labels.read_text() + "tx_never_delivered,1\n")
        result = g.materialize([g.raw_labels], instance, "2026-01-04")
        assert not result.success
        match = check_outcomes(result)[("raw_labels", "labels_match_records")]
        assert not match.passed and "1 labels without a delivered record" in match.description
    status = json.loads(store.read_bytes("ingestion_status/raw_labels/2026-01-04.json"))
    assert not status["passed"] and status["delivered"] == status["valid"] + status["quarantined"]
