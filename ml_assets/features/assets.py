"""Dagster wiring for the features group: transaction_features, online_features."""


import datetime as dt
import json
import math
import time

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.features.compute import compute_features, max_window
from ml_assets.features.history import refusals
from ml_assets.features.online import online_offline_mismatches
from ml_assets.features.store import FEATURE_VIEW
from ml_assets.ingestion.ingest import (
    ingestion_verdicts,
    lake_key,
    materialized_partitions,
    read_partitions,
)
from ml_assets.metadata import Outcome, partition_metadata, partitioned_check
from ml_assets.resources import FeastResource, StorageResource
from ml_assets.storage import ObjectStore, ReadCache

GROUP = "features"
ASSET = "transaction_features"
HISTORY = "feature_history/{day}.json"  # the history days a partition's windowed features were computed from


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
            dg.AssetCheckSpec("completeness", asset=ASSET, blocking=True, partitions_def=partitions,
                              description="D4: active entities of the day that have features"),
            dg.AssetCheckSpec("feature_nulls", asset=ASSET, blocking=True, partitions_def=partitions,
                              description="no declared feature is null above the contract's null-rate limit"),
        ],
        description="Declared features per record (passthrough, derived, per-entity windowed aggregates); "
        "the Feast offline source.",
    )
    def transaction_features(context: dg.AssetExecutionContext, lake: StorageResource):
        store = ReadCache(lake.get_store())  # a run over many days reads each day's history once
        rows, completeness, nulls = 0, {}, {}
        for pk in context.partition_keys:
            day = dt.date.fromisoformat(pk)
            window = [(day - dt.timedelta(days=i)).isoformat() for i in range(history_days, -1, -1)]
            # Blocking checks stop this step only inside the run that ingested the data; a later run must not
            # consume a partition whose ingestion checks failed, so re-verify here. The day itself must have
            # passed; a failed day in the history is left out (named in the metadata) rather than halting every
            # day after it for the length of the window.
            verdicts = ingestion_verdicts(store, "raw_transactions", window)
            refused = refusals(verdicts, [pk])
            if refused:
                raise dg.Failure(f"transaction_features {pk}: refusing to consume partitions that did not pass "
                                 f"ingestion: {'; '.join(refused)}. Fix the "
                                 f"delivery and re-materialize those partitions of raw_transactions first.",
                                 allow_retries=False)
            excluded = {p: why for p, why in verdicts.items() if why}
            records = read_partitions(store, "raw_transactions", [p for p in window if verdicts.get(p, "") is None])
            todays = records[pd.to_datetime(records[contract.timestamp], utc=True).dt.date == day] if len(records) else records
            if todays.empty:
                raise dg.Failure(f"raw_transactions has no rows for {pk}: materialize it first; features are not "
                                 f"computed from missing data")
            feats = compute_features(records, contract, day)
            sha = store.write_parquet(lake_key(ASSET, pk), feats)
            store.write_bytes(HISTORY.format(day=pk), json.dumps({"excluded": excluded}).encode())
            active = set(todays[contract.entity])
            covered = len(active & set(feats[contract.entity])) / len(active)
            null_rate = float(feats[contract.feature_names].isna().mean().max())
            rows += len(feats)
            completeness[pk] = Outcome(covered >= contract.thresholds.completeness_min,
                                       f"{covered:.2%} of {len(active)} active entities have features (limit "
                                       f"{contract.thresholds.completeness_min:.2%})")
            nulls[pk] = Outcome(null_rate <= contract.thresholds.null_rate_max,
                                f"highest feature null rate {null_rate:.2%} (limit {contract.thresholds.null_rate_max:.2%})")
            partition_metadata(context, pk, {
                "rows": len(feats), "entities": int(feats[contract.entity].nunique()), "completeness": covered,
                "max_feature_null_rate": null_rate, "history_days_read": len(window) - len(excluded),
                "history_excluded": "; ".join(excluded.values()) or "none", "sha256": sha})
        yield dg.MaterializeResult(metadata={
            "rows": rows,
            "features": ", ".join(contract.feature_names),
            "feature_count": len(contract.feature_names),
            "feast_feature_view": FEATURE_VIEW,
            "offline_source": source_glob(lake),
            "history_days": history_days,
        })
        yield from partitioned_check(context, ASSET, "completeness", completeness,
                                     metadata={"threshold": contract.thresholds.completeness_min})
        yield from partitioned_check(context, ASSET, "feature_nulls", nulls,
                                     metadata={"threshold": contract.thresholds.null_rate_max})

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
