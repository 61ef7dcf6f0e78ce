"""Where the datasets group keeps its data in the lake, and which days it may learn from.

Plain functions over an ObjectStore; the Dagster wiring is in assets.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets.build import (
    GoldenManifest,
    content_hash,
    golden_manifest,
    golden_pool,
    labeled_records,
    stratified_golden,
)
from ml_assets.ingestion.baseline import compute_baseline, write_baseline
from ml_assets.ingestion.ingest import TAMPERED, ingestion_verdicts, materialized_partitions, read_partitions
from ml_assets.storage import ObjectStore

TRAINING_KEY = "training_set/training_set.parquet"
TRAINING_MANIFEST = "training_set/manifest.json"
GOLDEN_CURRENT = "golden_set/current.json"
DRIFT_VERDICT = "drift_report/{day}.json"


class DatasetError(RuntimeError):
    """The lake cannot supply the data a dataset needs (message says what and where)."""


def golden_keys(version: str) -> tuple[str, str]:
    return f"golden_set/{version}/golden_set.parquet", f"golden_set/{version}/manifest.json"


def current_golden_version(store: ObjectStore, contract: Contract) -> str:
    """The golden version in force: the newest one frozen (the pointer), or the contract's before any."""
    if store.exists(GOLDEN_CURRENT):
        return json.loads(store.read_bytes(GOLDEN_CURRENT))["version"]
    return contract.datasets.golden.version


def read_golden(store: ObjectStore, version: str) -> tuple[pd.DataFrame, GoldenManifest]:
    data_key, manifest_key = golden_keys(version)
    if not store.exists(manifest_key):
        raise DatasetError(f"golden set version {version} does not exist at {store.uri(manifest_key)}; "
                           f"materialize golden_set first")
    raw = json.loads(store.read_bytes(manifest_key))
    manifest = GoldenManifest(**{k: v for k, v in raw.items() if k in GoldenManifest.__dataclass_fields__})
    golden = store.read_parquet(data_key)
    golden.attrs["golden_scope"] = {"holdout": manifest.holdout, "window": (manifest.window_start, manifest.window_end)}
    return golden, manifest


def write_golden(store: ObjectStore, golden: pd.DataFrame, manifest: GoldenManifest) -> str:
    data_key, manifest_key = golden_keys(manifest.version)
    store.write_parquet(data_key, golden)
    store.write_bytes(manifest_key, json.dumps(manifest.to_dict(), indent=2).encode())
    store.write_bytes(GOLDEN_CURRENT, json.dumps({"version": manifest.version, "base_version": manifest.base_version,
                                                  "window_end": manifest.window_end}).encode())
    return store.uri(data_key)


def golden_versions(store: ObjectStore) -> list[str]:
    return sorted({k.split("/")[1] for k in store.list("golden_set") if k.endswith("/manifest.json")})


def golden_scope(golden: pd.DataFrame) -> dict:
    """The holdout and window of a golden set read by `read_golden` (for disjointness checks)."""
    return dict(golden.attrs.get("golden_scope", {}))


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


@dataclass
class Usable:
    """The partitions a dataset may learn from, and the ones left out with the reason."""

    records: list[str]
    labels: list[str]
    excluded: dict[str, str] = field(default_factory=dict)  # day -> why

    def describe(self) -> str:
        return "; ".join(f"{d}: {why}" for d, why in sorted(self.excluded.items())) or "none"


def usable_partitions(store: ObjectStore) -> Usable:
    """Published partitions that passed their ingestion checks and whose files match their records.

    A day whose checks failed (quarantine rate, null rates, baseline) is left out, named, rather than
    blocking every dataset built after it; a day whose drift verdict was a pipeline bug (M5) is left
    out of records too: never retrain on corrupted data. A published file that does not match its
    ingestion record was changed behind the pipeline's back, which is refused outright.
    """
    out = Usable([], [])
    for asset, bucket in (("raw_transactions", out.records), ("raw_labels", out.labels)):
        for p, why in ingestion_verdicts(store, asset, materialized_partitions(store, asset)).items():
            if why is not None and why.startswith(TAMPERED):
                raise DatasetError(why.removeprefix(f"{TAMPERED} ") + ". Re-materialize that partition.")
            if why is None:
                bucket.append(p)
            else:
                out.excluded[p] = why
    for p in list(out.records):
        key = DRIFT_VERDICT.format(day=p)
        if store.exists(key):
            verdict = json.loads(store.read_bytes(key))
            if verdict.get("status") == "bug":
                out.records.remove(p)
                out.excluded[p] = "drift_report: pipeline bug signals (" + "; ".join(verdict.get("reasons", []))[:200] + ")"
    return out


def labelled(store: ObjectStore, contract: Contract, usable: Usable) -> pd.DataFrame:
    """Id, entity, event time and label of every labelled record of the usable days (warm-up left out)."""
    labels = read_partitions(store, "raw_labels", usable.labels)
    records = read_partitions(store, "raw_transactions", usable.records)
    if labels.empty or records.empty:
        raise DatasetError("no labelled records yet: materialize raw_transactions and raw_labels first")
    return labeled_records(records, labels, contract)


REFRESH_TAG = "ml_assets/refresh_golden"
"""Run tag set by retrain_on_drift: freeze a new golden version from recent data (its value says why)."""


@dataclass(frozen=True)
class GoldenPlan:
    action: str  # "reuse" | "freeze"
    version: str
    reason: str


def plan_golden(store: ObjectStore, contract: Contract, refresh: str | None, latest_labelled_day: str | None) -> GoldenPlan:
    """Which golden version this run stands on, and whether it freezes a new one.

    - no golden set yet, or the contract's `datasets.golden.version` was bumped: that version
      (frozen now unless it exists);
    - a refresh asked for by the retrain sensor (`refresh`: why — a confirmed decline, or live data
      that left the golden set, M6) and allowed by `retraining.refresh_golden`: a new version
      `<contract version>-<YYYYMMDD of its last day>` from the newest labelled days, unless the
      current one already ends on the newest labelled day;
    - otherwise the current version, unchanged (frozen means frozen).
    """
    base = contract.datasets.golden.version
    current = json.loads(store.read_bytes(GOLDEN_CURRENT)) if store.exists(GOLDEN_CURRENT) else None
    exists = store.exists(golden_keys(base)[1])
    if current is None or current.get("base_version", current["version"]) != base:
        if exists:
            return GoldenPlan("reuse", base, "the contract's version, frozen earlier")
        why = "first golden set" if current is None else f"datasets.golden.version changed to {base}"
        return GoldenPlan("freeze", base, why)
    if refresh and contract.retraining.refresh_golden and latest_labelled_day:
        if current.get("window_end") == latest_labelled_day:
            return GoldenPlan("reuse", current["version"], f"refresh asked ({refresh}) but the current version "
                                                           f"already ends on the newest labelled day {latest_labelled_day}")
        version = f"{base}-{latest_labelled_day.replace('-', '')}"
        return GoldenPlan("freeze", version, f"refresh after {refresh}: the golden set follows the data (M6, P1)")
    if refresh and not contract.retraining.refresh_golden:
        return GoldenPlan("reuse", current["version"], f"refresh asked ({refresh}) but retraining.refresh_golden is "
                                                       f"false")
    return GoldenPlan("reuse", current["version"], "frozen")


def reuse_golden(store: ObjectStore, version: str) -> tuple[pd.DataFrame, GoldenManifest]:
    """A frozen golden version, verified against its manifest's hash and made the current one.

    DatasetError when it cannot be read or was modified after it was frozen."""
    golden, manifest = read_golden(store, version)
    if content_hash(golden) != manifest.content_hash:
        raise DatasetError(f"golden set {version} at {store.uri(golden_keys(version)[0])} no longer "
                           f"matches the hash in its manifest: it was modified after it was frozen. Restore it "
                           f"or bump datasets.golden.version.")
    store.write_bytes(GOLDEN_CURRENT, json.dumps({"version": manifest.version, "base_version":
                                                  manifest.base_version or manifest.version,
                                                  "window_end": manifest.window_end}).encode())
    return golden, manifest


def freeze_golden(store: ObjectStore, contract: Contract, rows: pd.DataFrame, version: str, reason: str,
                  join_features: Callable[[pd.DataFrame], pd.DataFrame]) -> tuple[pd.DataFrame, GoldenManifest]:
    """Sample, join features to and write a new golden version from the labelled `rows`.

    `join_features` is the point-in-time join (Feast); GoldenSetError when the data cannot supply the set."""
    pool, start, end = golden_pool(rows, contract)
    sampled = stratified_golden(pool, contract, version)
    golden = join_features(sampled)
    manifest = golden_manifest(golden, contract, version, start, end, reason)
    write_golden(store, golden, manifest)
    golden.attrs["golden_scope"] = {"holdout": manifest.holdout, "window": (manifest.window_start, manifest.window_end)}
    return golden, manifest


def write_training(store: ObjectStore, training: pd.DataFrame, manifest: dict) -> None:
    """The current training set, its copy by content hash (lineage, T4) and its manifest."""
    store.write_parquet(TRAINING_KEY, training)
    store.write_parquet(training_version_key(manifest["content_hash"]), training)
    store.write_bytes(TRAINING_MANIFEST, json.dumps(manifest, indent=2).encode())


def baseline_refusal(training_manifest: dict) -> str:
    """Why the training set must not become the D2 baseline ('' when it may): a failed blocking check.

    Dagster skips the baseline when a blocking check of training_set fails in the same run; this is the
    same rule for a later run (or a manual materialization) that reads the set from the lake."""
    failed = [name for name, passed in training_manifest.get("checks", {}).items() if not passed]
    if not failed:
        return ""
    return (f"training set {training_manifest['content_hash'][:12]} failed its blocking check(s) "
            f"{', '.join(failed)}: the D2 baseline stays as it was (fix the training set and materialize it again)")


def update_baseline(store: ObjectStore, contract: Contract, partitions: list[str]) -> tuple[str, int]:
    """D2: new partitions are compared with the stats of the data trained on. Returns (where, rows)."""
    baseline = compute_baseline(read_partitions(store, "raw_transactions", partitions), contract, partitions)
    return write_baseline(store, baseline), baseline["rows"]
