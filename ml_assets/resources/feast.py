
from typing import Any, Literal

import dagster as dg

from ml_assets.contract import Contract
from ml_assets.features.store import build_feature_store, online_store_config


class FeastResource(dg.ConfigurableResource):
    """Feast: DuckDB offline store over the lake's feature files; SQLite or Redis online."""

    repo_dir: str
    online_store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str | None = None
    redis_connection_string: str | None = None

    def get_store(self, contract: Contract, source_glob: str) -> Any:
        online = online_store_config(self.online_store, self.sqlite_path, self.redis_connection_string)
        return build_feature_store(self.repo_dir, source_glob, contract, online)
