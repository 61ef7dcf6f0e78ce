"""Dagster wiring for the features group: transaction_features, online_features."""


import datetime as dt
import math
import time

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.features.compute import compute_features, max_window
from ml_assets.features.online import online_offline_mismatches
from ml_assets.features.store import FEATURE_VIEW
from ml_assets.ingestion.ingest import (
    IngestionRefused,
    lake_key,
    materialized_partitions,
    read_partitions,
    verify_ingested,
)
from ml_assets.metadata import md_table
from ml_assets.resources import FeastResource, StorageResource
from ml_assets.storage import ObjectStore

GROUP = "features"
ASSET = "transaction_features"


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
        deps=[dg.AssetDep("raw_transactions", partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-history_days, end_offset=0, allow_nonexistent_upstream_partitions=True))],
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec("completeness", asset=ASSET, blocking=True,
                              description="D4: active entities of the day that have features"),
            dg.AssetCheckSpec("feature_nulls", asset=ASSET, blocking=True,
                              description="no declared feature is null above the contract's null-rate limit"),
        ],
        description="Declared features per record (passthrough, derived, per-entity windowed aggregates); "
        "the Feast offline source.",
    )
    def transaction_features(context: dg.AssetExecutionContext, lake: StorageResource):
        store = lake.get_store()
        rows, per_partition, completeness, null_rates = 0, [], {}, {}
        for pk in context.partition_keys:
            day = dt.date.fromisoformat(pk)
            window = [(day - dt.timedelta(days=i)).isoformat() for i in range(history_days, -1, -1)]
            # Blocking checks stop this step only inside the run that ingested the data; a later
            # run must not consume a partition whose ingestion checks failed, so re-verify here.
            try:
                verify_ingested(store, "raw_transactions", window)
            except IngestionRefused as e:
                raise dg.Failure(f"transaction_features {pk}: {e}", allow_retries=False) from e
            records = read_partitions(store, "raw_transactions", window)
            todays = records[pd.to_datetime(records[contract.timestamp], utc=True).dt.date == day] if len(records) else records
            if todays.empty:
                raise dg.Failure(f"raw_transactions has no rows for {pk}: materialize it first; features are not "
                                 f"computed from missing data")
            feats = compute_features(records, contract, day)
            sha = store.write_parquet(lake_key(ASSET, pk), feats)
            active = set(todays[contract.entity])
            covered = len(active & set(feats[contract.entity])) / len(active)
            completeness[pk] = covered
            null_rates[pk] = float(feats[contract.feature_names].isna().mean().max())
            rows += len(feats)
            per_partition.append({"partition": pk, "rows": len(feats), "entities": feats[contract.entity].nunique(),
                                  "completeness": covered, "history_partitions": len(window), "sha256": sha[:12]})
        yield dg.MaterializeResult(metadata={
            "rows": rows,
            "features": ", ".join(contract.feature_names),
            "feature_count": len(contract.feature_names),
            "feast_feature_view": FEATURE_VIEW,
            "offline_source": source_glob(lake),
            "per_partition": md_table(pd.DataFrame(per_partition)),
        })
        worst = min(completeness, key=completeness.get)
        limit = contract.thresholds.completeness_min
        yield dg.AssetCheckResult(check_name="completeness", asset_key=ASSET, passed=completeness[worst] >= limit,
                                  metadata={"min_completeness": completeness[worst], "partition": worst,
                                            "threshold": limit})
        worst_null = max(null_rates, key=null_rates.get)
        nlimit = contract.thresholds.null_rate_max
        yield dg.AssetCheckResult(check_name="feature_nulls", asset_key=ASSET,
                                  passed=null_rates[worst_null] <= nlimit,
                                  metadata={"max_feature_null_rate": null_rates[worst_null],
                                            "partition": worst_null, "threshold": nlimit})

    @dg.asset(
        group_name=GROUP,
        deps=[ASSET],
        kinds={"feast", "sqlite"},
        check_specs=[dg.AssetCheckSpec("online_matches_offline", asset="online_features", blocking=True,
                                       description="F1: sampled entities serve the same values online as offline")],
        description="Feast online store, materialized from the offline store: the latest features per entity.",
    )
    def online_features(context: dg.AssetExecutionContext, lake: StorageResource, feast: FeastResource):
        store = lake.get_store()
        parts = materialized_partitions(store, ASSET)
        if not parts:
            raise dg.Failure("transaction_features has no materialized partitions yet")
        fs = feast.get_store(contract, source_glob(lake))
        start = dt.datetime.fromisoformat(parts[0]).replace(tzinfo=dt.UTC) - dt.timedelta(days=contract.features.ttl_days)
        end = dt.datetime.fromisoformat(parts[-1]).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
        t0 = time.perf_counter()
        fs.materialize(start_date=start, end_date=end)
        took = time.perf_counter() - t0
        features = read_partitions(store, ASSET, parts[-contract.features.ttl_days:])
        consistency = online_offline_mismatches(fs, features, contract)
        yield dg.MaterializeResult(metadata={
            "online_store": feast.online_store,
            "materialized_from": start.isoformat(),
            "materialized_to": end.isoformat(),
            "entities": int(features[contract.entity].nunique()),
            "materialize_seconds": round(took, 2),
            "feature_ttl_days": contract.features.ttl_days,
        })
        ok = not consistency["mismatched_features"] and not consistency["features_missing_online"]
        yield dg.AssetCheckResult(check_name="online_matches_offline", asset_key="online_features", passed=ok,
                                  metadata={"sampled_entities": consistency["sampled_entities"],
                                            "mismatches": str(consistency["mismatched_features"]),
                                            "missing_online": str(consistency["features_missing_online"])})

    return [transaction_features, online_features]
