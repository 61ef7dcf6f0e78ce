"""Where things live, and which environment we are in: read from the environment once.

ML_ASSETS_ENV       local (default) | prod — picks the resource set in definitions.py
ML_ASSETS_HOME      root of every local file the pipeline writes (default ./var)
ML_ASSETS_CONTRACT  path of the dataset contract (default: the packaged demo contract)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENTS = ("local", "prod")


@dataclass(frozen=True)
class Settings:
    env: str
    home: Path
    contract_path: Path | None

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def alerts_path(self) -> Path:
        return self.home / "alerts.jsonl"

    @property
    def work_dir(self) -> Path:
        return self.home / "work"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"


def current_settings() -> Settings:
    env = os.environ.get("ML_ASSETS_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"ML_ASSETS_ENV={env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    home = Path(os.environ.get("ML_ASSETS_HOME", "var")).resolve()
    contract = os.environ.get("ML_ASSETS_CONTRACT")
    return Settings(env=env, home=home, contract_path=Path(contract).resolve() if contract else None)
