"""Dagster wiring for the datasets group: golden_set, training_set."""


import datetime as dt
import json

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets.build import (
    GoldenManifest,
    GoldenSetError,
    content_hash,
    disjointness,
    golden_pool,
    labeled_records,
    stratified_golden,
    training_pool,
)
from ml_assets.features.assets import source_glob
from ml_assets.features.store import historical_features
from ml_assets.ingestion.baseline import compute_baseline, write_baseline
from ml_assets.ingestion.ingest import IngestionRefused, materialized_partitions, read_partitions, verify_ingested
from ml_assets.metadata import md_table
from ml_assets.registry.mlflow_registry import IntegrityError
from ml_assets.registry.promotion import baseline_tags, rebaseline_champion
from ml_assets.resources import FeastResource, MLflowResource, StorageResource
from ml_assets.storage import ObjectStore

GROUP = "datasets"
TRAINING_KEY = "training_set/training_set.parquet"
TRAINING_MANIFEST = "training_set/manifest.json"


def golden_keys(version: str) -> tuple[str, str]:
    return f"golden_set/{version}/golden_set.parquet", f"golden_set/{version}/manifest.json"


def load_golden(store: ObjectStore, contract: Contract) -> tuple[pd.DataFrame, GoldenManifest]:
    data_key, manifest_key = golden_keys(contract.datasets.golden.version)
    if not store.exists(manifest_key):
        raise dg.Failure(f"golden set version {contract.datasets.golden.version} does not exist yet; "
                         f"materialize golden_set first")
    manifest = GoldenManifest(**json.loads(store.read_bytes(manifest_key)))
    return store.read_parquet(data_key), manifest


def load_training(store: ObjectStore) -> tuple[pd.DataFrame, dict]:
    return store.read_parquet(TRAINING_KEY), json.loads(store.read_bytes(TRAINING_MANIFEST))


def training_version_key(digest: str) -> str:
    """Where every training set ever built is kept, by content hash: a model's lineage tag
    `training_set_hash` finds the exact data it was trained on (T4), also after a rebuild."""
    return f"training_set/versions/{digest}/training_set.parquet"


def load_training_by_hash(store: ObjectStore, digest: str) -> pd.DataFrame | None:
    """The training data with this content hash, or None when the lake does not hold it."""
    key = training_version_key(digest)
    if store.exists(key):
        return store.read_parquet(key)
    if store.exists(TRAINING_MANIFEST) and json.loads(store.read_bytes(TRAINING_MANIFEST))["content_hash"] == digest:
        return store.read_parquet(TRAINING_KEY)
    return None


def _verified(store: ObjectStore, asset: str) -> None:
    """Training data is built from every ingested partition: refuse if any failed its checks."""
    try:
        verify_ingested(store, asset, materialized_partitions(store, asset))
    except IngestionRefused as e:
        raise dg.Failure(str(e), allow_retries=False) from e


def _labeled(store: ObjectStore, contract: Contract) -> pd.DataFrame:
    _verified(store, "raw_transactions")
    _verified(store, "raw_labels")
    labels = read_partitions(store, "raw_labels")
    records = read_partitions(store, "raw_transactions")
    if labels.empty or records.empty:
        raise dg.Failure("no labelled records yet: materialize raw_transactions and raw_labels first")
    return labeled_records(records, labels, contract)


def _stats(df: pd.DataFrame, contract: Contract) -> dict:
    pos = int((df[contract.label] == contract.labels.positive).sum())
    return {"rows": len(df), "positives": pos, "negatives": len(df) - pos,
            "positive_rate": round(pos / max(len(df), 1), 5),
            "entities": int(df[contract.entity].nunique()),
            "date_from": str(df[contract.timestamp].min().date()), "date_to": str(df[contract.timestamp].max().date())}


def _feature_summary(df: pd.DataFrame, contract: Contract) -> dg.MarkdownMetadataValue:
    rows = []
    for name in contract.feature_names:
        col = df[name]
        if name in contract.categorical_features:
            rows.append({"feature": name, "null_rate": col.isna().mean(), "distinct": col.nunique(),
                         "mean": None, "p50": None, "max": None})
        else:
            rows.append({"feature": name, "null_rate": col.isna().mean(), "distinct": col.nunique(),
                         "mean": col.mean(), "p50": col.median(), "max": col.max()})
    return md_table(pd.DataFrame(rows))


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    del partitions  # both sets span every labelled partition

    @dg.asset(
        group_name=GROUP,
        deps=["transaction_features", "raw_labels", "raw_transactions"],
        kinds={"feast", "parquet"},
        check_specs=[dg.AssetCheckSpec("class_minimum", asset="golden_set", blocking=True,
                                       description="P1: at least min_per_class examples of each class")],
        description="Frozen, versioned, stratified evaluation set from reserved entities over the last labelled days. "
        "Never trained on; rebuilt only when datasets.golden.version changes, next to the older versions; a new "
        "version re-baselines the current champion on it.",
    )
    def golden_set(context: dg.AssetExecutionContext, lake: StorageResource, feast: FeastResource,
                   mlflow: MLflowResource):
        store = lake.get_store()
        g = contract.datasets.golden
        data_key, manifest_key = golden_keys(g.version)
        if store.exists(manifest_key):
            golden, manifest = load_golden(store, contract)
            if content_hash(golden) != manifest.content_hash:
                raise dg.Failure(f"golden set {g.version} at {store.uri(data_key)} no longer matches the hash in its "
                                 f"manifest; it was modified after it was frozen. Restore it or bump the version.")
            context.log.info("golden set %s is frozen; reusing it unchanged", g.version)
            frozen = True
        else:
            pool, start, end = golden_pool(_labeled(store, contract), contract)
            try:
                sampled = stratified_golden(pool, contract)
            except GoldenSetError as e:
                raise dg.Failure(str(e)) from e
            fs = feast.get_store(contract, source_glob(lake))
            golden = historical_features(fs, sampled, contract)
            stats = _stats(golden, contract)
            manifest = GoldenManifest(
                version=g.version, window_start=start.isoformat(), window_end=end.isoformat(),
                entity_fraction=g.entity_fraction, seed=g.seed, rows=stats["rows"], positives=stats["positives"],
                negatives=stats["negatives"], content_hash=content_hash(golden),
                created_at=dt.datetime.now(dt.UTC).isoformat(),
            )
            store.write_parquet(data_key, golden)
            store.write_bytes(manifest_key, json.dumps(manifest.to_dict(), indent=2).encode())
            frozen = False
        rebaseline = {}
        if not frozen:
            try:
                rebaselined = rebaseline_champion(mlflow.registry(), golden, g.version, contract)
                text = "no champion yet" if rebaselined is None else f"v{rebaselined[0]} on golden {g.version}: " + \
                    ", ".join(f"{k} {v:.4f}" for k, v in baseline_tags(g.version, rebaselined[1]).items())
            except IntegrityError as e:  # the golden set stands; the champion's own problem is reported, loudly
                context.log.error("cannot re-baseline the champion on golden %s: %s", g.version, e)
                text = f"refused: {e}"
            rebaseline = {"champion_rebaselined": text}
        yield dg.MaterializeResult(metadata={
            "version": manifest.version,
            "frozen": frozen,
            "content_hash": manifest.content_hash,
            "window": f"{manifest.window_start} .. {manifest.window_end}",
            "entity_fraction": manifest.entity_fraction,
            "threshold_min_per_class": g.min_per_class,
            **_stats(golden, contract),
            "feature_stats": _feature_summary(golden, contract),
            "path": dg.MetadataValue.path(store.uri(data_key)),
            "other_versions": ", ".join(sorted({k.split("/")[1] for k in store.list("golden_set")} - {g.version}))
            or "none",
            **rebaseline,
        })
        smallest = min(manifest.positives, manifest.negatives)
        yield dg.AssetCheckResult(check_name="class_minimum", asset_key="golden_set",
                                  passed=smallest >= g.min_per_class,
                                  metadata={"positives": manifest.positives, "negatives": manifest.negatives,
                                            "threshold_min_per_class": g.min_per_class})

    @dg.asset(
        group_name=GROUP,
        deps=["golden_set", "transaction_features", "raw_labels", "raw_transactions"],
        kinds={"feast", "parquet"},
        check_specs=[
            dg.AssetCheckSpec("disjoint_from_golden_set", asset="training_set", blocking=True,
                              description="P1: no entity, record or day of the golden set is in the training set"),
            dg.AssetCheckSpec("features_complete", asset="training_set", blocking=True,
                              description="F2: every labelled row found its point-in-time feature row"),
        ],
        description="Labelled records outside the golden entities and window, with features joined point-in-time "
        "by Feast (get_historical_features).",
    )
    def training_set(context: dg.AssetExecutionContext, lake: StorageResource, feast: FeastResource):
        store = lake.get_store()
        golden, manifest = load_golden(store, contract)
        pool = training_pool(_labeled(store, contract), manifest, contract)
        fs = feast.get_store(contract, source_glob(lake))
        training = historical_features(fs, pool, contract)
        digest = content_hash(training)
        stats = _stats(training, contract)
        partitions_used = [p for p in materialized_partitions(store, "transaction_features")
                           if stats["date_from"] <= p <= stats["date_to"]]
        train_manifest = {"content_hash": digest, "golden_version": manifest.version, "partitions": partitions_used,
                          **stats, "created_at": dt.datetime.now(dt.UTC).isoformat()}
        store.write_parquet(TRAINING_KEY, training)
        store.write_parquet(training_version_key(digest), training)
        store.write_bytes(TRAINING_MANIFEST, json.dumps(train_manifest, indent=2).encode())
        overlap = disjointness(training, golden, contract)
        disjoint = (overlap["shared_entities"] == 0 and overlap["shared_records"] == 0
                    and overlap["training_rows_in_golden_window"] == 0)
        null_rows = int(training[contract.feature_names].isna().any(axis=1).sum())
        baseline_meta = {"baseline_stats": "not updated: a training_set check failed"}
        if disjoint and not null_rows:
            # D2: new partitions are compared with the stats of the data trained on.
            baseline = compute_baseline(read_partitions(store, "raw_transactions", partitions_used), contract,
                                        partitions_used)
            baseline_meta = {"baseline_stats": dg.MetadataValue.path(write_baseline(store, baseline)),
                             "baseline_rows": baseline["rows"]}
        yield dg.MaterializeResult(metadata={
            "content_hash": digest,
            "golden_version": manifest.version,
            "partitions": f"{partitions_used[0]} .. {partitions_used[-1]} ({len(partitions_used)})",
            **stats,
            "feature_stats": _feature_summary(training, contract),
            "path": dg.MetadataValue.path(store.uri(TRAINING_KEY)),
            **baseline_meta,
        })
        yield dg.AssetCheckResult(
            check_name="disjoint_from_golden_set", asset_key="training_set",
            passed=disjoint,
            metadata={k: str(v) if isinstance(v, list) else v for k, v in overlap.items()},
        )
        yield dg.AssetCheckResult(
            check_name="features_complete", asset_key="training_set", passed=null_rows == 0,
            description="every row has all features" if not null_rows else
            f"{null_rows} rows lack features at their event time (missing feature partitions?)",
            metadata={"rows_missing_features": null_rows},
        )

    return [golden_set, training_set]
