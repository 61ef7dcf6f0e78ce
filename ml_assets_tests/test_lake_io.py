"""The lake's IO manager and scoped sessions: an asset reads only its own area and its declared inputs."""

import dagster as dg
import pandas as pd
import pytest

from ml_assets.lake_layout import AREAS, FEEDBACK, UndeclaredAccess, owners_of
from ml_assets.resources import LakeInput, LocalStorageResource, StorageResource, lake_resources, session
from ml_assets.storage import LocalStore, ScopedStore

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-05")


def test_every_area_prefix_names_a_directory_and_feedback_names_known_assets():
    for asset, prefixes in AREAS.items():
        assert all(p.endswith("/") for p in prefixes), asset
    assert all(reader in AREAS and set(sources) <= set(AREAS) for reader, sources in FEEDBACK.items())
    assert owners_of("raw_transactions/2026-01-01.parquet") == {"raw_transactions"}
    assert owners_of("quarantine/raw_labels/2026-01-01.parquet") == {"raw_labels"}
    assert owners_of("staging/run-1/raw_labels/2026-01-01.parquet") == {"raw_transactions", "raw_labels"}
    assert owners_of("reports/drift_report/2026-01-01.html") == {"evidently_report"}
    assert owners_of("somewhere/else.json") == set()


def test_a_session_refuses_undeclared_reads_and_foreign_writes_naming_the_key(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("raw_labels/2026-01-01.parquet", b"x")
    store.write_bytes("transaction_features/2026-01-01.parquet", b"y")
    own = ScopedStore(store, "batch_predictions", {"transaction_features": "input"})
    assert own.read_bytes("transaction_features/2026-01-01.parquet") == b"y"
    with pytest.raises(UndeclaredAccess) as read:
        own.read_bytes("raw_labels/2026-01-01.parquet")
    assert "batch_predictions read 'raw_labels/2026-01-01.parquet', which belongs to raw_labels" in str(read.value)
    assert "declared inputs (transaction_features)" in str(read.value)
    with pytest.raises(UndeclaredAccess, match="exists|read"):
        own.exists("raw_labels/2026-01-02.parquet")  # asking whether it is there is a read too
    with pytest.raises(UndeclaredAccess, match="an asset writes only its own area"):
        own.write_bytes("transaction_features/2026-01-02.parquet", b"z")
    with pytest.raises(UndeclaredAccess, match="lies in no asset's area"):
        own.read_bytes("notes/readme.txt")
    own.write_bytes("batch_predictions/2026-01-01.parquet", b"scores")
    assert own.written["batch_predictions/2026-01-01.parquet"][1] == 6
    assert own.reads == {"transaction_features": {"transaction_features/2026-01-01.parquet"}}
    assert not store.exists("transaction_features/2026-01-02.parquet"), "the refused write left nothing"


def test_feedback_is_readable_only_by_the_reader_it_is_declared_for(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("baseline/raw_transactions.json", b"{}")
    assert ScopedStore(store, "raw_transactions", {"training_baseline": "feedback"}).read_bytes(
        "baseline/raw_transactions.json") == b"{}"
    with pytest.raises(UndeclaredAccess):
        ScopedStore(store, "transaction_features", {}).read_bytes("baseline/raw_transactions.json")


def _assets():
    @dg.asset(name="transaction_features", partitions_def=DAYS)
    def features(context: dg.AssetExecutionContext, lake: StorageResource):
        store = session(context, lake)
        store.write_parquet(f"transaction_features/{context.partition_key}.parquet", pd.DataFrame({"x": [1, 2]}))
        return dg.MaterializeResult(value=store)

    @dg.asset(name="batch_predictions", partitions_def=DAYS, ins={"transaction_features": dg.AssetIn(
        partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, allow_nonexistent_upstream_partitions=True))})
    def scores(context: dg.AssetExecutionContext, lake: StorageResource, transaction_features: LakeInput):
        store = session(context, lake, transaction_features)
        rows = sum(len(store.read_parquet(f"transaction_features/{p}.parquet"))
                   for p in transaction_features.partitions if store.exists(f"transaction_features/{p}.parquet"))
        store.write_parquet(f"batch_predictions/{context.partition_key}.parquet", pd.DataFrame({"rows": [rows]}))
        return dg.MaterializeResult(value=store, metadata={"upstream_partitions": list(transaction_features.partitions)})

    @dg.asset(name="model_performance", partitions_def=DAYS, ins={"batch_predictions": dg.AssetIn()})
    def rogue(context: dg.AssetExecutionContext, lake: StorageResource, batch_predictions: LakeInput):
        store = session(context, lake, batch_predictions)
        store.read_parquet(f"raw_labels/{context.partition_key}.parquet")  # not an input: must be refused
        store.write_parquet(f"model_performance/{context.partition_key}.parquet", pd.DataFrame({"auc": [0.9]}))
        return dg.MaterializeResult(value=store)

    return features, scores, rogue


def test_inputs_arrive_through_the_io_manager_with_their_mapped_partitions_and_reads_are_recorded(tmp_path):
    features, scores, _ = _assets()
    resources = lake_resources(LocalStorageResource(root=str(tmp_path)))
    with dg.instance_for_test() as instance:
        for day in ("2026-01-01", "2026-01-02"):
            assert dg.materialize([features], partition_key=day, resources=resources, instance=instance).success
        result = dg.materialize([features, scores], partition_key="2026-01-02", resources=resources,
                                instance=instance, selection=[scores.key],)
    assert result.success
    loads = [e for e in result.all_events if e.event_type == dg.DagsterEventType.LOADED_INPUT]
    assert [e.event_specific_data.input_name for e in loads] == ["transaction_features"]
    [mat] = result.asset_materializations_for_node("batch_predictions")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["upstream_partitions"] == ["2026-01-01", "2026-01-02"]
    reads = {r.data["area of"]: (r.data["declared as"], r.data["objects read"]) for r in meta["lake_reads"].records}
    assert reads == {"transaction_features": ("input", 2)}  # the two mapped days (objects, not calls)
    assert meta["lake_objects_written"] == 1 and len(meta["lake_written_digest"]) == 64
    assert LocalStore(tmp_path).read_parquet("batch_predictions/2026-01-02.parquet")["rows"].tolist() == [4]


def test_an_asset_that_reads_data_it_did_not_declare_fails_and_writes_nothing(tmp_path):
    features, scores, rogue = _assets()
    store = LocalStore(tmp_path)
    store.write_parquet("raw_labels/2026-01-01.parquet", pd.DataFrame({"y": [1]}))
    resources = lake_resources(LocalStorageResource(root=str(tmp_path)))
    with dg.instance_for_test() as instance:
        result = dg.materialize([features, scores, rogue], partition_key="2026-01-01", resources=resources,
                                instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "model_performance"
    assert "model_performance read 'raw_labels/2026-01-01.parquet', which belongs to raw_labels" in str(
        failure.event_specific_data.error.cause or failure.event_specific_data.error)
    assert not store.exists("model_performance/2026-01-01.parquet")
    assert store.exists("batch_predictions/2026-01-01.parquet"), "the declared chain ran"
