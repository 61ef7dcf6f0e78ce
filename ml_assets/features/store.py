"""The Feast feature store, generated from the contract.

Offline store: DuckDB over the Parquet files that `transaction_features` writes (not
Feast's file/dask store, which silently drops entity rows without a feature value inside
the TTL). Online store: SQLite by default, Redis in production.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ml_assets.contract import Contract

if TYPE_CHECKING:  # importing feast costs seconds; only the steps that use it pay
    from feast import FeatureStore

FEATURE_VIEW = "transaction_features"


def feature_fields(contract: Contract, features: pd.DataFrame | None = None) -> list:
    from feast import Field
    from feast.types import Float64, Int64, String

    cats = set(contract.categorical_features)
    fields = []
    for name in contract.feature_names:
        if name in cats and name in contract.features.passthrough:
            dtype = String
        elif features is not None and pd.api.types.is_integer_dtype(features[name]):
            dtype = Int64
        elif any(d.name == name for d in contract.features.derived):
            dtype = Int64
        else:
            dtype = Float64
        fields.append(Field(name=name, dtype=dtype))
    return fields


def online_store_config(kind: str, path: str | None = None, connection_string: str | None = None) -> Any:
    if kind == "sqlite":
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

        return SqliteOnlineStoreConfig(path=path)
    if kind == "redis":
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        return RedisOnlineStoreConfig(connection_string=connection_string)
    raise ValueError(f"unknown online store {kind!r}; expected 'sqlite' or 'redis'")


def build_feature_store(repo_dir: str | Path, source_glob: str, contract: Contract, online: Any) -> FeatureStore:
    """A FeatureStore whose registry holds the contract's entity and feature view."""
    from feast import Entity, FeatureStore, FeatureView, FileSource, ValueType
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.repo_config import RepoConfig

    repo_dir = Path(repo_dir)
    repo_dir.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project=contract.name,
        registry=str(repo_dir / "registry.db"),
        provider="local",
        offline_store=DuckDBOfflineStoreConfig(),
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=repo_dir,
    )
    store = FeatureStore(config=config)
    entity = Entity(name=contract.entity, join_keys=[contract.entity], value_type=ValueType.STRING)
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=[entity],
        ttl=dt.timedelta(days=contract.features.ttl_days),
        schema=feature_fields(contract),
        source=FileSource(path=source_glob, timestamp_field=contract.timestamp),
        online=True,
    )
    store.apply([entity, view])
    return store


def feature_refs(contract: Contract) -> list[str]:
    return [f"{FEATURE_VIEW}:{name}" for name in contract.feature_names]


def historical_features(store: FeatureStore, entity_df: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Point-in-time join (F2): each row gets the feature values as of its own timestamp."""
    entity_df = entity_df.assign(
        **{contract.timestamp: pd.to_datetime(entity_df[contract.timestamp], utc=True).astype("datetime64[us, UTC]")}
    )
    out = store.get_historical_features(entity_df=entity_df, features=feature_refs(contract)).to_df()
    return out.sort_values([contract.timestamp, contract.record_id], kind="stable").reset_index(drop=True)
