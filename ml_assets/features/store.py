"""The Feast feature store, generated from the contract.

Offline store: DuckDB over the Parquet files that `transaction_features` writes (not
Feast's file/dask store, which silently drops entity rows without a feature value inside
the TTL), on local disk or on S3. Online store: SQLite by default, Redis in staging and
production.

Feast's DuckDB offline store runs every query on ibis's process-wide default DuckDB
connection. Reading `s3://` needs DuckDB's httpfs extension, which DuckDB would download at
run time; the pinned `duckdb-ext-httpfs` package ships it for the pinned DuckDB, and
`configure_offline_s3` points that connection at it and gives it S3 credentials from the
standard AWS chain (S1). `close_offline_connections` closes the connection when a step is
done with Feast: left open, DuckDB reports it leaked at interpreter exit.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

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


def redis_connection_string(url: str) -> str:
    """Feast's Redis connection string (`host:port,db=N,ssl=true,password=…`) from a redis:// or
    rediss:// URL (the form every other Redis client takes); a Feast-style string passes through."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"Redis URL {parts.scheme}://{parts.hostname or ''}…: expected redis://[:password@]host:port[/db] "
                         "or rediss://…")
    out = [f"{parts.hostname}:{parts.port or 6379}"]
    db = parts.path.lstrip("/")
    if db:
        out.append(f"db={int(db)}")
    if parts.scheme == "rediss":
        out.append("ssl=true")
    if parts.username:
        out.append(f"username={unquote(parts.username)}")
    if parts.password:
        password = unquote(parts.password)
        if "," in password or "=" in password:
            raise ValueError("the Redis password contains ',' or '=', which Feast's connection string cannot carry")
        out.append(f"password={password}")
    return ",".join(out)


def online_store_config(kind: str, path: str | None = None, connection_string: str | None = None) -> Any:
    if kind == "sqlite":
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

        return SqliteOnlineStoreConfig(path=path)
    if kind == "redis":
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        if not connection_string:
            raise ValueError("the Redis online store needs a connection (ML_ASSETS_REDIS_URL, e.g. redis://host:6379/0)")
        return RedisOnlineStoreConfig(connection_string=redis_connection_string(connection_string))
    raise ValueError(f"unknown online store {kind!r}; expected 'sqlite' or 'redis'")


def _offline_connection() -> Any:
    import ibis

    return ibis.get_backend()  # the connection Feast's DuckDB offline store queries on


def httpfs_extension_directory() -> Path:
    """The extension directory of the `duckdb-ext-httpfs` package, checked to hold httpfs for the
    DuckDB that is installed (an extension loads only into the exact version it was built for)."""
    import duckdb

    spec = importlib.util.find_spec("duckdb_ext")
    roots = [Path(p) / "extensions" for p in (spec.submodule_search_locations or [])] if spec else []
    found = sorted(str(p) for r in roots for p in r.glob("v*/*/httpfs.duckdb_extension"))
    for root in roots:
        if list(root.glob(f"v{duckdb.__version__}/*/httpfs.duckdb_extension")):
            return root
    raise RuntimeError(
        f"Feast's offline store on S3 needs DuckDB's httpfs extension for duckdb {duckdb.__version__}; "
        f"found {', '.join(found) or 'none'} (install the pinned duckdb and duckdb-ext-httpfs from constraints.txt)")


def configure_offline_s3(endpoint_url: str | None = None, region: str | None = None) -> None:
    """Let the offline store's DuckDB connection read s3:// with the credentials of the standard AWS
    chain (environment, profile, web identity, instance role) and an optional custom endpoint."""
    import boto3

    con = _offline_connection()
    con.raw_sql(f"SET extension_directory = '{httpfs_extension_directory()}'")
    con.raw_sql("LOAD httpfs")
    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise RuntimeError("Feast's offline store on S3 found no AWS credentials (AWS_ACCESS_KEY_ID/"
                           "AWS_SECRET_ACCESS_KEY, a profile or a role)")
    frozen = credentials.get_frozen_credentials()
    options = {"KEY_ID": frozen.access_key, "SECRET": frozen.secret_key,
               "REGION": region or session.region_name or "us-east-1"}
    if frozen.token:
        options["SESSION_TOKEN"] = frozen.token
    sql_options = [f"{k} '{_sql_text(v)}'" for k, v in options.items()]
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        # S3-compatible servers (MinIO, moto, Ceph) address buckets by path, not by virtual host.
        sql_options += [f"ENDPOINT '{_sql_text(parts.netloc)}'", "URL_STYLE 'path'",
                        f"USE_SSL {'true' if parts.scheme == 'https' else 'false'}"]
    con.raw_sql(f"CREATE OR REPLACE SECRET ml_assets_s3 (TYPE S3, {', '.join(sql_options)})")


def _sql_text(value: str) -> str:
    return str(value).replace("'", "''")


def close_offline_connections() -> None:
    """Close the DuckDB connection Feast's offline store used (a new one opens on next use)."""
    import sys

    ibis = sys.modules.get("ibis")
    backend = getattr(getattr(ibis, "options", None), "default_backend", None) if ibis else None
    if backend is not None:
        backend.disconnect()
        ibis.options.default_backend = None


def build_feature_store(repo_dir: str | Path, source_glob: str, contract: Contract, online: Any,
                        s3_endpoint_url: str | None = None) -> FeatureStore:
    """A FeatureStore whose registry holds the contract's entity and feature view; its offline
    source is `source_glob`, local or `s3://`."""
    from feast import Entity, FeatureStore, FeatureView, FileSource, ValueType
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.repo_config import RepoConfig

    if source_glob.startswith("s3://"):
        configure_offline_s3(s3_endpoint_url)
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
