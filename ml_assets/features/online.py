"""Online store: materialize from the offline store and check it serves what training saw."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.features.store import feature_refs


def latest_per_entity(features: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    ordered = features.sort_values([contract.timestamp, contract.record_id], kind="stable")
    return ordered.groupby(contract.entity, sort=True).tail(1).set_index(contract.entity)


def online_offline_mismatches(store: Any, features: pd.DataFrame, contract: Contract,
                              sample: int = 200, seed: int = 0) -> dict:
    """Compare online values of sampled entities with their latest offline feature row (F1)."""
    latest = latest_per_entity(features, contract)
    entities = latest.index.to_series().sample(n=min(sample, len(latest)), random_state=seed).tolist()
    online = store.get_online_features(
        features=feature_refs(contract), entity_rows=[{contract.entity: e} for e in entities]
    ).to_df().set_index(contract.entity)
    mismatches, missing = [], []
    for name in contract.feature_names:
        want, got = latest.loc[entities, name], online.loc[entities, name]
        if got.isna().any():
            missing.append(name)
        if name in contract.categorical_features:
            bad = (want.astype(str) != got.astype(str)) & got.notna()
        else:
            bad = ~np.isclose(want.astype(float), got.astype(float), equal_nan=True) & got.notna()
        if bad.any():
            mismatches.append({"feature": name, "entities": int(bad.sum()), "example": str(bad[bad].index[0])})
    return {"sampled_entities": len(entities), "mismatched_features": mismatches, "features_missing_online": missing}


def materialize_window(partitions: list[str], ttl_days: int) -> tuple[dt.datetime, dt.datetime]:
    """From `ttl_days` before the first materialized partition (the values still served) to the end of the last."""
    start = dt.datetime.fromisoformat(partitions[0]).replace(tzinfo=dt.UTC) - dt.timedelta(days=ttl_days)
    end = dt.datetime.fromisoformat(partitions[-1]).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    return start, end


def consistency_verdict(consistency: dict) -> tuple[bool, dict[str, Any]]:
    """The online_matches_offline check from `online_offline_mismatches`: passed, and its metadata."""
    passed = not consistency["mismatched_features"] and not consistency["features_missing_online"]
    return passed, {"sampled_entities": consistency["sampled_entities"],
                    "mismatches": str(consistency["mismatched_features"]),
                    "missing_online": str(consistency["features_missing_online"])}
