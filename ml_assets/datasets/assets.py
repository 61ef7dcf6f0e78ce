"""Dagster wiring for the datasets group: golden_set, training_set."""


import json

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets import report
from ml_assets.datasets.build import (
    GoldenManifest,
    GoldenSetError,
    disjointness,
    latest_day,
    no_training_rows,
    rows_missing_features,
    training_manifest,
    training_pool,
)
from ml_assets.datasets.lake import (
    REFRESH_TAG,
    TRAINING_KEY,
    TRAINING_MANIFEST,
    DatasetError,
    freeze_golden,
    golden_keys,
    golden_versions,
    labelled,
    load_training_by_hash,
    plan_golden,
    read_golden,
    reuse_golden,
    training_version_key,
    update_baseline,
    usable_partitions,
    write_training,
)
from ml_assets.features.assets import source_glob
from ml_assets.features.store import historical_features
from ml_assets.metadata import num
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


def _freeze_golden(context, store, feast, contract, version: str, reason: str) -> tuple[pd.DataFrame, GoldenManifest]:
    rows, usable = _labelled(store, contract)
    try:  # the feature store is opened only once the labelled rows can supply a golden set
        golden, manifest = freeze_golden(store, contract, rows, version, reason, lambda sampled: historical_features(
            feast.get_store(contract, source_glob(store)), sampled, contract))
    except GoldenSetError as e:
        raise dg.Failure(str(e), allow_retries=False) from e
    context.log.info("froze golden set %s (%s): %s .. %s, %d rows; excluded days: %s", version, reason,
                     manifest.window_start, manifest.window_end, len(golden), usable.describe())
    return golden, manifest


def _rebaseline_champion(context, mlflow: MLflowResource, golden: pd.DataFrame, contract: Contract,
                         version: str) -> dict[str, str]:
    """P1: the champion is scored on every new golden version (a registry step run here, see test_layering)."""
    try:
        done = rebaseline_champion(mlflow.registry(), golden, version, contract)
        text = "no champion yet" if done is None else f"v{done[0]} on golden {version}: " + ", ".join(
            f"{k} {num(v)}" for k, v in baseline_tags(version, done[1]).items())
    except IntegrityError as e:  # the golden set stands; the champion's own problem is reported, loudly
        context.log.error("cannot re-baseline the champion on golden %s: %s", version, e)
        text = f"refused: {e}"
    return {"champion_rebaselined": text}


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
        latest = latest_day(_labelled(store, contract)[0], contract) if refresh else None
        plan = plan_golden(store, contract, refresh, latest)
        if plan.action == "reuse":
            try:
                golden, manifest = reuse_golden(store, plan.version)
            except DatasetError as e:
                raise dg.Failure(str(e)) from e
            context.log.info("golden set %s is frozen; reusing it unchanged (%s)", plan.version, plan.reason)
        else:
            golden, manifest = _freeze_golden(context, store, feast, contract, plan.version, plan.reason)
        rebaseline = (_rebaseline_champion(context, mlflow, golden, contract, manifest.version)
                      if plan.action == "freeze" else {})
        yield dg.MaterializeResult(metadata=report.golden_metadata(
            golden, manifest, plan, contract, store.uri(golden_keys(manifest.version)[0]), golden_versions(store),
            rebaseline))
        verdict = report.class_minimum(manifest, contract)
        yield dg.AssetCheckResult(check_name="class_minimum", asset_key="golden_set", passed=verdict.passed,
                                  metadata=dict(verdict.metadata or {}))

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
            raise dg.Failure(no_training_rows(manifest), allow_retries=False)
        training = historical_features(feast.get_store(contract, source_glob(store)), pool, contract)
        train_manifest = training_manifest(training, manifest, usable.excluded, contract)
        write_training(store, training, train_manifest)
        overlap = disjointness(training, golden, contract, manifest.holdout, (manifest.window_start, manifest.window_end))
        disjoint, complete = report.disjoint_from_golden(overlap, manifest.holdout), report.features_complete(
            rows_missing_features(training, contract))
        updated = update_baseline(store, contract, train_manifest["partitions"]) if (
            disjoint.passed and complete.passed) else None
        yield dg.MaterializeResult(metadata=report.training_metadata(
            training, train_manifest, usable, contract, store.uri(TRAINING_KEY), report.baseline_metadata(updated)))
        for name, outcome in (("disjoint_from_golden_set", disjoint), ("features_complete", complete)):
            yield dg.AssetCheckResult(check_name=name, asset_key="training_set", passed=outcome.passed,
                                      description=outcome.description, metadata=dict(outcome.metadata or {}))

    return [golden_set, training_set]
