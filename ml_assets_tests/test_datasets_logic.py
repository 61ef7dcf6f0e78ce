"""The datasets group's plain logic (build.py, lake.py, report.py), without Dagster or Feast."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from ml_assets.contract import load_contract
from ml_assets.datasets import lake, report
from ml_assets.datasets.build import (
    content_hash,
    dataset_stats,
    golden_manifest,
    latest_day,
    rows_missing_features,
    training_manifest,
)
from ml_assets.datasets.lake import (
    GOLDEN_CURRENT,
    TRAINING_MANIFEST,
    DatasetError,
    golden_keys,
    load_training_by_hash,
    reuse_golden,
    training_version_key,
    write_golden,
    write_training,
)
from ml_assets.storage import LocalStore


def _labelled(contract, days: int = 3, per_day: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = days * per_day
    df = pd.DataFrame({
        contract.entity: [f"e{i % 5}" for i in range(n)],
        contract.timestamp: pd.to_datetime("2026-01-01", utc=True) + pd.to_timedelta(np.repeat(range(days), per_day),
                                                                                      unit="D"),
        contract.label: [contract.labels.positive if i % 4 == 0 else 0 for i in range(n)],
    })
    for name in contract.feature_names:
        df[name] = rng.normal(size=n) if name not in contract.categorical_features else "a"
    return df


def test_stats_and_manifests_count_classes_days_and_missing_features():
    contract = load_contract()
    df = _labelled(contract)
    stats = dataset_stats(df, contract)
    assert (stats["rows"], stats["positives"], stats["negatives"]) == (12, 3, 9)
    assert (stats["date_from"], stats["date_to"]) == ("2026-01-01", "2026-01-03")
    assert latest_day(df, contract) == "2026-01-03" and latest_day(df.head(0), contract) is None
    manifest = training_manifest(df, golden_manifest(df, contract, "v9", df[contract.timestamp].min().date(),
                                                     df[contract.timestamp].max().date(), "why"),
                                 {"2025-12-31": "failed checks"}, contract)
    assert manifest["content_hash"] == content_hash(df) and manifest["golden_version"] == "v9"
    assert manifest["partitions"] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert manifest["excluded_days"] == {"2025-12-31": "failed checks"} and manifest["rows"] == 12
    assert rows_missing_features(df, contract) == 0
    df.loc[[1, 2], contract.feature_names[0]] = None
    assert rows_missing_features(df, contract) == 2
    assert not report.features_complete(2).passed and report.features_complete(0).passed
    assert "2 rows lack features" in report.features_complete(2).description


def test_a_golden_set_changed_after_freezing_is_refused_and_an_intact_one_becomes_current(tmp_path):
    contract = load_contract()
    store = LocalStore(tmp_path)
    df = _labelled(contract)
    manifest = golden_manifest(df, contract, "v7", dt.date.fromisoformat("2026-01-01"), dt.date.fromisoformat("2026-01-03"), "first")
    write_golden(store, df, manifest)
    store.write_bytes(GOLDEN_CURRENT, b'{"version": "older"}')
    golden, read = reuse_golden(store, "v7")
    assert read == manifest and content_hash(golden) == manifest.content_hash
    assert json.loads(store.read_bytes(GOLDEN_CURRENT))["version"] == "v7"
    assert report.class_minimum(read, contract).passed == (3 >= contract.datasets.golden.min_per_class)
    store.write_parquet(golden_keys("v7")[0], df.iloc[1:])
    with pytest.raises(DatasetError, match="golden set v7 at .* no longer matches the hash in its manifest"):
        reuse_golden(store, "v7")


def test_the_training_set_is_kept_by_content_hash_for_lineage(tmp_path):
    contract = load_contract()
    store = LocalStore(tmp_path)
    df = _labelled(contract)
    manifest = {"content_hash": content_hash(df), "partitions": []}
    write_training(store, df, manifest)
    assert json.loads(store.read_bytes(TRAINING_MANIFEST)) == manifest
    assert store.exists(training_version_key(content_hash(df)))
    assert load_training_by_hash(store, content_hash(df)) is not None


def test_disjointness_verdict_and_baseline_metadata_say_what_happened():
    out = report.disjoint_from_golden({"violations": 2, "shared_days": ["2026-01-02"]}, "time")
    assert not out.passed and out.description == "2 violation(s) of the time holdout"
    assert out.metadata == {"violations": 2, "shared_days": "['2026-01-02']"}
    manifest = {"partitions": ["2026-01-01", "2026-01-02"], "content_hash": "ab" * 32,
                "checks": {"disjoint_from_golden_set": True, "features_complete": True}}
    meta = report.baseline_metadata("lake/baseline.json", 5, manifest)
    assert meta["rows"] == 5 and meta["partitions"] == "2026-01-01 .. 2026-01-02 (2)"
    assert meta["training_set_checks"] == "disjoint_from_golden_set: passed, features_complete: passed"


def test_a_training_set_that_failed_a_blocking_check_never_becomes_the_baseline():
    manifest = {"content_hash": "cd" * 32, "checks": {"disjoint_from_golden_set": False, "features_complete": True}}
    why = lake.baseline_refusal(manifest)
    assert "disjoint_from_golden_set" in why and "features_complete" not in why and "cdcdcdcdcdcd" in why
    assert lake.baseline_refusal({**manifest, "checks": {"disjoint_from_golden_set": True}}) == ""


def test_the_baseline_check_fails_when_the_profile_is_not_the_training_sets():
    contract = load_contract()
    manifest = {"partitions": ["2026-01-01", "2026-01-02"], "content_hash": "ef" * 32}
    good = {"partitions": manifest["partitions"], "rows": 10, "columns": {c: {} for c in contract.columns}}
    assert report.baseline_matches(good, manifest, contract).passed
    stale = report.baseline_matches({**good, "partitions": ["2026-01-01"]}, manifest, contract)
    assert not stale.passed and "days differ: baseline 1, training set 2" in stale.description
    column = next(iter(contract.columns))
    partial = report.baseline_matches({**good, "columns": {c: {} for c in contract.columns if c != column}},
                                      manifest, contract)
    assert not partial.passed and partial.metadata["columns_missing"] == column
    assert not report.baseline_matches({**good, "rows": 0}, manifest, contract).passed
    assert not report.baseline_matches(None, manifest, contract).passed
