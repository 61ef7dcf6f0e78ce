"""Metadata conventions: rounded numbers, real tables, per-partition metadata and check outcomes."""

import dagster as dg
import pandas as pd

from ml_assets.metadata import Outcome, num, partition_metadata, partitioned_check, table

PARTS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-05")


def test_num_rounds_to_four_significant_digits_and_cleans():
    assert num(0.123456) == 0.1235
    assert num(12345.678) == 12350.0
    assert num(float("nan")) is None
    assert num(3) == 3
    assert num(0.0) == 0.0


def test_table_is_a_dagster_table_with_typed_columns():
    df = pd.DataFrame({"feature": ["a", "b"], "psi": [0.123456, None], "rows": [10, 20],
                       "auc": pd.Series([0.9, None], dtype=object)})
    value = table(df)
    assert isinstance(value, dg.TableMetadataValue)
    types = {c.name: c.type for c in value.schema.columns}
    assert types == {"feature": "string", "psi": "float", "rows": "int", "auc": "float"}
    assert value.records[0].data == {"feature": "a", "psi": 0.1235, "rows": 10, "auc": 0.9}
    assert value.records[1].data["psi"] is None


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run(),
          check_specs=[dg.AssetCheckSpec("even_day", asset="daily", partitions_def=PARTS)])
def daily(context: dg.AssetExecutionContext):
    outcomes = {}
    for pk in context.partition_keys:
        day = int(pk[-2:])
        partition_metadata(context, pk, {"day": float(day), "ratio": day / 3})
        outcomes[pk] = Outcome(day % 2 == 0, f"day {day}", {"day": day})
    yield dg.MaterializeResult(metadata={"run_level": "yes"})
    yield from partitioned_check(context, "daily", "even_day", outcomes)


def _evaluations(instance):
    events = [e for run in instance.get_runs()
              for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    return [e.dagster_event.event_specific_data for e in events]


def test_a_range_run_records_each_partitions_own_metadata_and_check():
    with dg.instance_for_test() as instance:
        result = dg.materialize([daily], instance=instance, raise_on_error=False, tags={
            "dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-04"})
        for pk, day in (("2026-01-02", 2), ("2026-01-03", 3)):
            (record,) = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("daily"), asset_partitions=[pk]), limit=1).records
            meta = record.asset_materialization.metadata
            assert meta["day"].value == day and meta["ratio"].value == num(day / 3)
            assert meta["run_level"].value == "yes"
        per_partition = {e.partition: e.passed for e in _evaluations(instance) if e.partition}
        assert per_partition == {"2026-01-01": False, "2026-01-02": True, "2026-01-03": False, "2026-01-04": True}
        run_level = [e for e in _evaluations(instance) if e.partition is None]
        assert len(run_level) == 1 and not run_level[0].passed  # any failed partition fails the run's result
        assert "2026-01-01" in run_level[0].metadata["failed_partitions"].value
        assert result.dagster_run is not None


def test_a_single_partition_run_records_the_partition_natively():
    with dg.instance_for_test() as instance:
        dg.materialize([daily], instance=instance, partition_key="2026-01-02")
        (evaluation,) = _evaluations(instance)
        assert evaluation.partition == "2026-01-02" and evaluation.passed
        assert evaluation.metadata["day"].value == 2


def test_per_partition_outcomes_of_a_range_run_are_current_for_their_partition():
    with dg.instance_for_test() as instance:
        dg.materialize([daily], instance=instance, raise_on_error=False, tags={
            "dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-04"})
        key = dg.AssetCheckKey(dg.AssetKey("daily"), "even_day")
        infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info([key])
                 if i.partition_key is not None}  # the run's own result has no partition
        assert set(infos) == {"2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"}
        assert all(i.is_current for i in infos.values()), "each judged its own partition's materialization"
        dg.materialize([daily], instance=instance, partition_key="2026-01-02")
        infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info([key])
                 if i.partition_key is not None}
        assert all(i.is_current for i in infos.values())
