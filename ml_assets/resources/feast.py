from typing import Any, Literal

import dagster as dg

from ml_assets.contract import Contract
from ml_assets.features.store import build_feature_store, close_offline_connections, online_store_config


class FeastResource(dg.ConfigurableResource):
    """Feast: DuckDB offline store over the lake's feature files (local or S3); SQLite or Redis online.

    `redis_connection_string` takes a redis:// URL (or Feast's own `host:port,password=…` form);
    `s3_endpoint_url` is the S3-compatible endpoint the offline store reads the lake from, when the
    lake is not on AWS S3 itself. Credentials come from the AWS chain, never from config (S1).
    """

    repo_dir: str
    online_store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str | None = None
    redis_connection_string: str | None = None
    s3_endpoint_url: str | None = None

    def get_store(self, contract: Contract, source_glob: str) -> Any:
        online = online_store_config(self.online_store, self.sqlite_path, self.redis_connection_string)
        return build_feature_store(self.repo_dir, source_glob, contract, online, s3_endpoint_url=self.s3_endpoint_url)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        # The offline store's DuckDB connection is process-wide; a step that used it closes it.
        close_offline_connections()
