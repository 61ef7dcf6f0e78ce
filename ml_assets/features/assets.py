"""Dagster wiring for the features group: transaction_features, online_features. What
transaction_features does for a day is in daily.py (the feature logic itself in compute.py);
the online store's window and consistency verdict in online.py."""


import datetime as dt
import math
import time

import dagster as dg

from ml_assets.contract import Contract
from ml_assets.features import daily
from ml_assets.features.checks import COMPLETENESS, FEATURE_NULLS, ONLINE_MATCHES_OFFLINE
from ml_assets.features.compute import max_window
from ml_assets.features.daily import ASSET
from ml_assets.features.online import consistency_verdict, materialize_window, online_offline_mismatches
from ml_assets.features.store import FEATURE_VIEW
from ml_assets.ingestion.ingest import materialized_partitions, read_partitions
from ml_assets.metadata import Outcome, partition_metadata
from ml_assets.resources import FeastResource, LakeInput, StorageResource, session
from ml_assets.storage import ObjectStore, ReadCache

GROUP = "features"


def source_glob(lake: StorageResource | ObjectStore) -> str:
    """Feast's offline source: every partition file of transaction_features."""
    store = lake.get_store() if isinstance(lake, StorageResource) else lake
    return store.uri(ASSET) + "/*.parquet"


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    history_days = math.ceil(max_window(contract) / dt.timedelta(days=1))

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"pandas", "feast", "parquet"},
        ins={"raw_transactions": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-history_days, end_offset=0, allow_nonexistent_upstream_partitions=True))},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[COMPLETENESS.spec(partitions), FEATURE_NULLS.spec(partitions)],
        description="Declared features per record (passthrough, derived, per-entity windowed aggregates); "
        "the Feast offline source.",
    )
    def transaction_features(context: dg.AssetExecutionContext, lake: StorageResource, raw_transactions: LakeInput):
        own = session(context, lake, raw_transactions)
        store = ReadCache(own)  # a run over many days reads each day's history once
        rows, completeness, nulls = 0, {}, {}
        for pk in context.partition_keys:
            inputs = daily.day_inputs(store, contract, pk, history_days)
            if inputs.refused:
                raise dg.Failure(daily.refusal_message(inputs), allow_retries=False)
            if inputs.todays.empty:
                raise dg.Failure(daily.no_rows_message(pk))
            day = daily.write_features(store, contract, inputs)
            rows += day.rows
            completeness[pk], nulls[pk] = day.completeness, day.nulls
            partition_metadata(context, pk, day.metadata)
        yield dg.MaterializeResult(value=own, metadata={
            "rows": rows,
            "features": ", ".join(contract.feature_names),
            "feature_count": len(contract.feature_names),
            "feast_feature_view": FEATURE_VIEW,
            "offline_source": source_glob(lake),
            "history_days": history_days,
        })
        yield from COMPLETENESS.results(context, completeness, {"threshold": contract.thresholds.completeness_min})
        yield from FEATURE_NULLS.results(context, nulls, {"threshold": contract.thresholds.null_rate_max})

    @dg.asset(
        group_name=GROUP,
        ins={ASSET: dg.AssetIn()},
        kinds={"feast", "sqlite"},
        check_specs=[ONLINE_MATCHES_OFFLINE.spec()],
        description="Feast online store, materialized from the offline store: the latest features per entity.",
    )
    def online_features(context: dg.AssetExecutionContext, lake: StorageResource, feast: FeastResource,
                        transaction_features: LakeInput):
        store = session(context, lake, transaction_features)
        parts = materialized_partitions(store, ASSET)
        if not parts:
            raise dg.Failure("transaction_features has no materialized partitions yet")
        fs = feast.get_store(contract, source_glob(lake))
        start, end = materialize_window(parts, contract.features.ttl_days)
        t0 = time.perf_counter()
        fs.materialize(start_date=start, end_date=end)
        took = time.perf_counter() - t0
        features = read_partitions(store, ASSET, parts[-contract.features.ttl_days:])
        consistency = online_offline_mismatches(fs, features, contract)
        yield dg.MaterializeResult(value=store, metadata={
            "online_store": feast.online_store,
            "materialized_from": start.isoformat(),
            "materialized_to": end.isoformat(),
            "entities": int(features[contract.entity].nunique()),
            "materialize_seconds": round(took, 2),
            "feature_ttl_days": contract.features.ttl_days,
        })
        passed, check_metadata = consistency_verdict(consistency)
        yield ONLINE_MATCHES_OFFLINE.result(Outcome(passed, "", check_metadata))

    return [transaction_features, online_features]
