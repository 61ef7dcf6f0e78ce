"""Where the monitoring group reads and keeps its data in the lake (plain functions over an ObjectStore)."""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict

import numpy as np
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets.lake import load_training_by_hash, training_version_key
from ml_assets.ingestion.ingest import lake_key
from ml_assets.monitoring.drift import Reference, build_reference
from ml_assets.monitoring.performance import LabelledDay
from ml_assets.storage import ObjectStore

VERDICT = "drift_report/{day}.json"
FEATURE_TABLE = "drift_report/{day}.parquet"
DELAYED_LABELS = "delayed_labels/{day}.parquet"  # one event day's scores joined with its labels
PERFORMANCE = "model_performance/{day}.parquet"
REPORT = "reports/drift_report/{day}.html"

_REFERENCES: OrderedDict[tuple, tuple] = OrderedDict()


def _cached(key: tuple, build):
    if key not in _REFERENCES:
        _REFERENCES[key] = build()
        while len(_REFERENCES) > 6:
            _REFERENCES.popitem(last=False)
    _REFERENCES.move_to_end(key)
    return _REFERENCES[key]


def reference_sample(store: ObjectStore, contract: Contract, training_hash: str) -> tuple[pd.DataFrame, Reference]:
    """A seeded sample of the data the serving model was trained on (found by its `training_set_hash`
    lineage tag, not "the newest training set": a refused challenger's data is no reference) and its
    profile. Cached per hash: a run over many days profiles the reference once."""

    def build():
        frame = load_training_by_hash(store, training_hash)
        if frame is None:
            raise LookupError(f"the serving model's training data (training_set {training_hash[:12]}) is not in the "
                              f"lake at {store.uri(training_version_key(training_hash))}; drift has no reference")
        n = contract.thresholds.drift.reference_rows
        if len(frame) > n:
            frame = frame.sample(n=n, random_state=0).sort_values(contract.timestamp, kind="stable")
        frame = frame.reset_index(drop=True)
        days = pd.to_datetime(frame[contract.timestamp], utc=True).dt.date
        return frame, build_reference(frame, contract.numeric_features, contract.categorical_features, days)

    return _cached(("training", store.uri(""), training_hash, contract.thresholds.drift.reference_rows), build)


def calendar_cache(training_hash: str) -> dict:
    """Calendar-matched references of one training set, kept across the days of a run (and of a replay)."""
    return _cached(("calendar", training_hash), dict)


def golden_reference(golden: pd.DataFrame, digest: str, contract: Contract) -> Reference:
    return _cached(("golden", digest), lambda: build_reference(golden, contract.numeric_features,
                                                                  contract.categorical_features))


def reference_scores(key: tuple, compute) -> np.ndarray:
    return _cached(("scores", *key), compute)


def window_frames(store: ObjectStore, day: str, days: int) -> dict[str, pd.DataFrame]:
    """Feature frames of `day` and up to `days - 1` days before it that exist in the lake."""
    out = {}
    current = dt.date.fromisoformat(day)
    for i in range(days):
        key = lake_key("transaction_features", (current - dt.timedelta(days=i)).isoformat())
        if store.exists(key):
            out[key.rsplit("/", 1)[-1].removesuffix(".parquet")] = store.read_parquet(key)
    return out


def window_scores(store: ObjectStore, days: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for d in days:
        key = lake_key("batch_predictions", d)
        if store.exists(key):
            out[d] = store.read_parquet(key, columns=["score"])["score"].to_numpy()
    return out


def write_labelled_day(store: ObjectStore, day: LabelledDay, record_ids: np.ndarray) -> None:
    store.write_parquet(DELAYED_LABELS.format(day=day.day), pd.DataFrame({
        "record_id": record_ids, "y": day.y.astype("int8"), "score": day.scores, "model_version": day.model_version,
        "threshold": day.threshold}))


def labelled_days(store: ObjectStore, last_day: str, days: int) -> list[LabelledDay]:
    """The stored labelled days up to `last_day`, oldest first (at most `days` calendar days back)."""
    out = []
    end = dt.date.fromisoformat(last_day)
    for i in range(days - 1, -1, -1):
        d = (end - dt.timedelta(days=i)).isoformat()
        key = DELAYED_LABELS.format(day=d)
        if store.exists(key):
            f = store.read_parquet(key)
            if len(f):
                out.append(LabelledDay(d, str(f["model_version"].iloc[0]), float(f["threshold"].iloc[0]),
                                       f["y"].to_numpy().astype(int), f["score"].to_numpy(dtype=float)))
    return out


def previous_states(store: ObjectStore, partition: str, days: int) -> list[dict]:
    """The stored model_performance rows of the `days` partitions before `partition`, oldest first."""
    out = []
    end = dt.date.fromisoformat(partition)
    for i in range(days, 0, -1):
        key = PERFORMANCE.format(day=(end - dt.timedelta(days=i)).isoformat())
        if store.exists(key):
            row = store.read_parquet(key).iloc[0].to_dict()
            out.append({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()})
    return out


def read_verdict(store: ObjectStore, day: str) -> dict | None:
    key = VERDICT.format(day=day)
    return json.loads(store.read_bytes(key)) if store.exists(key) else None


def feature_history(store: ObjectStore, day: str) -> dict[str, str]:
    """History days left out of a feature partition's windows (they failed ingestion), with why."""
    key = f"feature_history/{day}.json"
    return json.loads(store.read_bytes(key)).get("excluded", {}) if store.exists(key) else {}
