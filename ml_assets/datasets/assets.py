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
from ml_assets.datasets.checks import (
    BASELINE_MATCHES_TRAINING_SET,
    CLASS_MINIMUM,
    DISJOINT_FROM_GOLDEN_SET,
    FEATURES_COMPLETE,
)
from ml_assets.datasets.lake import (
    REFRESH_TAG,
    TRAINING_KEY,
    TRAINING_MANIFEST,
    DatasetError,
    baseline_refusal,
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
from ml_assets.ingestion.baseline import load_baseline
from ml_assets.lake_layout import feedback_text
from ml_assets.resources import FeastResource, LakeInput, StorageResource, session
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


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    del partitions  # both sets span every labelled partition

    @dg.asset(
        group_name=GROUP,
        ins={name: dg.AssetIn() for name in ("transaction_features", "raw_labels", "raw_transactions")},
        kinds={"feast", "parquet"},
        check_specs=[CLASS_MINIMUM.spec()],
        description="Frozen, versioned, stratified evaluation set over the last labelled days (reserved entities, or "
        "every entity for a time holdout). Never trained on. A new version is frozen when the contract's version "
        "changes, or by a retrain run that the drift sensor asked to refresh it (a confirmed decline, or live data "
        "that left the golden set); champion_golden_metrics scores the champion on every new version. "
        f"Feedback input (not an edge: it would be a cycle): {feedback_text('golden_set')}.",
    )
    def golden_set(context: dg.AssetExecutionContext, lake: StorageResource, feast: FeastResource,
                   transaction_features: LakeInput, raw_labels: LakeInput, raw_transactions: LakeInput):
        store = session(context, lake, transaction_features, raw_labels, raw_transactions)
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
        yield dg.MaterializeResult(value=store, metadata=report.golden_metadata(
            golden, manifest, plan, contract, store.uri(golden_keys(manifest.version)[0]), golden_versions(store)))
        yield CLASS_MINIMUM.result(report.class_minimum(manifest, contract))

    @dg.asset(
        group_name=GROUP,
        ins={name: dg.AssetIn() for name in ("golden_set", "transaction_features", "raw_labels", "raw_transactions")},
        kinds={"feast", "parquet"},
        check_specs=[DISJOINT_FROM_GOLDEN_SET.spec(), FEATURES_COMPLETE.spec()],
        description="Labelled records of the last `training_window_days` labelled days outside the golden window (and "
        "entities), with features joined point-in-time by Feast (get_historical_features). Days whose ingestion "
        "checks failed or whose drift verdict was a pipeline bug are left out, named. "
        f"Feedback input (not an edge: it would be a cycle): {feedback_text('training_set')}.",
    )
    def training_set(context: dg.AssetExecutionContext, lake: StorageResource, feast: FeastResource,
                     golden_set: LakeInput, transaction_features: LakeInput, raw_labels: LakeInput,
                     raw_transactions: LakeInput):
        store = session(context, lake, golden_set, transaction_features, raw_labels, raw_transactions)
        golden, manifest = load_golden(store, contract)
        rows, usable = _labelled(store, contract)
        pool = training_pool(rows, manifest, contract)
        if pool.empty:
            raise dg.Failure(no_training_rows(manifest), allow_retries=False)
        training = historical_features(feast.get_store(contract, source_glob(store)), pool, contract)
        overlap = disjointness(training, golden, contract, manifest.holdout, (manifest.window_start, manifest.window_end))
        disjoint, complete = report.disjoint_from_golden(overlap, manifest.holdout), report.features_complete(
            rows_missing_features(training, contract))
        train_manifest = training_manifest(training, manifest, usable.excluded, contract,
                                           {"disjoint_from_golden_set": disjoint.passed, "features_complete": complete.passed})
        write_training(store, training, train_manifest)
        yield dg.MaterializeResult(value=store, metadata=report.training_metadata(
            training, train_manifest, usable, contract, store.uri(TRAINING_KEY)))
        yield DISJOINT_FROM_GOLDEN_SET.result(disjoint)
        yield FEATURES_COMPLETE.result(complete)

    @dg.asset(
        group_name=GROUP,
        ins={"training_set": dg.AssetIn(), "raw_transactions": dg.AssetIn()},
        kinds={"json"},
        check_specs=[BASELINE_MATCHES_TRAINING_SET.spec()],
        description="D2: the profile of the raw records the current training set was built from (null rates, ranges, "
        "quantiles, categories; each partition's delivered null rates). raw_transactions judges every new day "
        "against it. Built only from a training set whose blocking checks passed.",
    )
    def training_baseline(context: dg.AssetExecutionContext, lake: StorageResource, training_set: LakeInput,
                          raw_transactions: LakeInput):
        store = session(context, lake, training_set, raw_transactions)
        manifest = json.loads(store.read_bytes(TRAINING_MANIFEST))
        if failed := baseline_refusal(manifest):
            raise dg.Failure(failed, allow_retries=False)
        where, rows = update_baseline(store, contract, manifest["partitions"])
        yield dg.MaterializeResult(value=store, metadata=report.baseline_metadata(where, rows, manifest))
        yield BASELINE_MATCHES_TRAINING_SET.result(report.baseline_matches(load_baseline(store), manifest, contract))

    return [golden_set, training_set, training_baseline]
