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
    stratified_golden,
    training_pool,
)
from ml_assets.datasets.lake import (
    GOLDEN_CURRENT,
    REFRESH_TAG,
    TRAINING_KEY,
    TRAINING_MANIFEST,
    DatasetError,
    golden_keys,
    golden_versions,
    labelled,
    load_training_by_hash,
    plan_golden,
    read_golden,
    training_version_key,
    usable_partitions,
    write_golden,
)
from ml_assets.features.assets import source_glob
from ml_assets.features.store import historical_features
from ml_assets.ingestion.baseline import compute_baseline, write_baseline
from ml_assets.ingestion.ingest import read_partitions
from ml_assets.metadata import Outcome, num, table
from ml_assets.registry.mlflow_registry import IntegrityError
from ml_assets.registry.promotion import baseline_tags, rebaseline_champion
from ml_assets.resources import FeastResource, MLflowResource, StorageResource
from ml_assets.storage import ObjectStore

GROUP = "datasets"

__all__ = ["TRAINING_KEY", "TRAINING_MANIFEST", "build", "golden_keys", "load_golden", "load_training",
           "load_training_by_hash", "training_version_key"]


def load_golden(store: ObjectStore, contract: Contract) -> tuple[pd.DataFrame, GoldenManifest]:
    """The golden set in force (the newest frozen version); a Failure when there is none yet."""
    from ml_assets.datasets.lake import current_golden_version

    try:
        return read_golden(store, current_golden_version(store, contract))
    except DatasetError as e:
        raise dg.Failure(str(e)) from e


def load_training(store: ObjectStore) -> tuple[pd.DataFrame, dict]:
    return store.read_parquet(TRAINING_KEY), json.loads(store.read_bytes(TRAINING_MANIFEST))


def _labelled(store: ObjectStore, contract: Contract):
    try:
        usable = usable_partitions(store)
        return labelled(store, contract, usable), usable
    except DatasetError as e:
        raise dg.Failure(str(e), allow_retries=False) from e


def _stats(df: pd.DataFrame, contract: Contract) -> dict:
    pos = int((df[contract.label] == contract.labels.positive).sum())
    return {"rows": len(df), "positives": pos, "negatives": len(df) - pos,
            "positive_rate": num(pos / max(len(df), 1)),
            "entities": int(df[contract.entity].nunique()),
            "date_from": str(df[contract.timestamp].min().date()), "date_to": str(df[contract.timestamp].max().date())}


def _feature_summary(df: pd.DataFrame, contract: Contract) -> dg.TableMetadataValue:
    rows = []
    for name in contract.feature_names:
        col = df[name]
        numeric = name not in contract.categorical_features
        rows.append({"feature": name, "null_rate": col.isna().mean(), "distinct": col.nunique(),
                     "mean": col.mean() if numeric else None, "p50": col.median() if numeric else None,
                     "max": col.max() if numeric else None})
    return table(pd.DataFrame(rows))


def _freeze_golden(context, store, feast, contract, version: str, reason: str) -> tuple[pd.DataFrame, GoldenManifest]:
    g = contract.datasets.golden
    rows, usable = _labelled(store, contract)
    try:
        pool, start, end = golden_pool(rows, contract)
        sampled = stratified_golden(pool, contract, version)
    except GoldenSetError as e:
        raise dg.Failure(str(e), allow_retries=False) from e
    golden = historical_features(feast.get_store(contract, source_glob(store)), sampled, contract)
    stats = _stats(golden, contract)
    manifest = GoldenManifest(
        version=version, window_start=start.isoformat(), window_end=end.isoformat(), entity_fraction=g.entity_fraction,
        seed=g.seed, rows=stats["rows"], positives=stats["positives"], negatives=stats["negatives"],
        content_hash=content_hash(golden), created_at=dt.datetime.now(dt.UTC).isoformat(), holdout=g.holdout,
        base_version=g.version, reason=reason)
    write_golden(store, golden, manifest)
    context.log.info("froze golden set %s (%s): %s .. %s, %d rows; excluded days: %s", version, reason, start, end,
                     len(golden), usable.describe())
    golden.attrs["golden_scope"] = {"holdout": manifest.holdout, "window": (manifest.window_start, manifest.window_end)}
    return golden, manifest


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    del partitions  # both sets span every labelled partition

    @dg.asset(
        group_name=GROUP,
        deps=["transaction_features", "raw_labels", "raw_transactions"],
        kinds={"feast", "parquet"},
        check_specs=[dg.AssetCheckSpec("class_minimum", asset="golden_set", blocking=True,
                                       description="P1: at least min_per_class examples of each class")],
        description="Frozen, versioned, stratified evaluation set over the last labelled days (reserved entities, or "
        "every entity for a time holdout). Never trained on. A new version is frozen when the contract's version "
        "changes, or by a retrain run that the drift sensor asked to refresh it (a confirmed decline, or live data "
        "that left the golden set); the current champion is re-baselined on every new version.",
    )
    def golden_set(context: dg.AssetExecutionContext, lake: StorageResource, feast: FeastResource,
                   mlflow: MLflowResource):
        store = lake.get_store()
        refresh = context.run.tags.get(REFRESH_TAG)
        latest = None
        if refresh:
            rows, _ = _labelled(store, contract)
            latest = rows[contract.timestamp].max().date().isoformat() if len(rows) else None
        plan = plan_golden(store, contract, refresh, latest)
        if plan.action == "reuse":
            try:
                golden, manifest = read_golden(store, plan.version)
            except DatasetError as e:
                raise dg.Failure(str(e)) from e
            if content_hash(golden) != manifest.content_hash:
                raise dg.Failure(f"golden set {plan.version} at {store.uri(golden_keys(plan.version)[0])} no longer "
                                 f"matches the hash in its manifest: it was modified after it was frozen. Restore it "
                                 f"or bump datasets.golden.version.")
            store.write_bytes(GOLDEN_CURRENT, json.dumps({"version": manifest.version, "base_version":
                                                          manifest.base_version or manifest.version,
                                                          "window_end": manifest.window_end}).encode())
            context.log.info("golden set %s is frozen; reusing it unchanged (%s)", plan.version, plan.reason)
        else:
            golden, manifest = _freeze_golden(context, store, feast, contract, plan.version, plan.reason)
        rebaseline = {}
        if plan.action == "freeze":
            try:
                done = rebaseline_champion(mlflow.registry(), golden, manifest.version, contract)
                text = "no champion yet" if done is None else f"v{done[0]} on golden {manifest.version}: " + ", ".join(
                    f"{k} {num(v)}" for k, v in baseline_tags(manifest.version, done[1]).items())
            except IntegrityError as e:  # the golden set stands; the champion's own problem is reported, loudly
                context.log.error("cannot re-baseline the champion on golden %s: %s", manifest.version, e)
                text = f"refused: {e}"
            rebaseline = {"champion_rebaselined": text}
        g = contract.datasets.golden
        yield dg.MaterializeResult(metadata={
            "version": manifest.version,
            "action": "frozen now" if plan.action == "freeze" else "reused (frozen)",
            "reason": plan.reason,
            "holdout": manifest.holdout,
            "content_hash": manifest.content_hash,
            "window": f"{manifest.window_start} .. {manifest.window_end}",
            "entity_fraction": manifest.entity_fraction if manifest.holdout == "entity" else "every entity (time holdout)",
            "threshold_min_per_class": g.min_per_class,
            **_stats(golden, contract),
            "feature_stats": _feature_summary(golden, contract),
            "path": dg.MetadataValue.path(store.uri(golden_keys(manifest.version)[0])),
            "other_versions": ", ".join(v for v in golden_versions(store) if v != manifest.version) or "none",
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
                              description="P1: no record or day of the golden set (nor, for an entity holdout, any of "
                                          "its entities) is in the training set"),
            dg.AssetCheckSpec("features_complete", asset="training_set", blocking=True,
                              description="F2: every labelled row found its point-in-time feature row"),
        ],
        description="Labelled records of the last `training_window_days` labelled days outside the golden window (and "
        "entities), with features joined point-in-time by Feast (get_historical_features). Days whose ingestion "
        "checks failed or whose drift verdict was a pipeline bug are left out, named.",
    )
    def training_set(context: dg.AssetExecutionContext, lake: StorageResource, feast: FeastResource):
        store = lake.get_store()
        golden, manifest = load_golden(store, contract)
        rows, usable = _labelled(store, contract)
        pool = training_pool(rows, manifest, contract)
        if pool.empty:
            raise dg.Failure(f"no labelled rows outside golden set {manifest.version} ({manifest.window_start} .. "
                             f"{manifest.window_end}); deliver more days", allow_retries=False)
        training = historical_features(feast.get_store(contract, source_glob(store)), pool, contract)
        digest = content_hash(training)
        stats = _stats(training, contract)
        partitions_used = sorted({str(d) for d in training[contract.timestamp].dt.date.unique()})
        train_manifest = {"content_hash": digest, "golden_version": manifest.version, "partitions": partitions_used,
                          **stats, "excluded_days": usable.excluded,
                          "training_window_days": contract.datasets.training_window_days,
                          "created_at": dt.datetime.now(dt.UTC).isoformat()}
        store.write_parquet(TRAINING_KEY, training)
        store.write_parquet(training_version_key(digest), training)
        store.write_bytes(TRAINING_MANIFEST, json.dumps(train_manifest, indent=2).encode())
        overlap = disjointness(training, golden, contract, manifest.holdout, (manifest.window_start, manifest.window_end))
        disjoint = overlap["violations"] == 0
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
            "training_window_days": contract.datasets.training_window_days or "all labelled history",
            "excluded_days": table(pd.DataFrame([{"day": d, "why": w} for d, w in sorted(usable.excluded.items())],
                                                columns=["day", "why"])),
            **stats,
            "feature_stats": _feature_summary(training, contract),
            "path": dg.MetadataValue.path(store.uri(TRAINING_KEY)),
            **baseline_meta,
        })
        outcome = Outcome(disjoint, f"{overlap['violations']} violation(s) of the {manifest.holdout} holdout")
        yield dg.AssetCheckResult(
            check_name="disjoint_from_golden_set", asset_key="training_set", passed=outcome.passed,
            description=outcome.description,
            metadata={k: str(v) if isinstance(v, list) else v for k, v in overlap.items()},
        )
        yield dg.AssetCheckResult(
            check_name="features_complete", asset_key="training_set", passed=null_rows == 0,
            description="every row has all features" if not null_rows else
            f"{null_rows} rows lack features at their event time (missing feature partitions?)",
            metadata={"rows_missing_features": null_rows},
        )

    return [golden_set, training_set]
