"""Where things live, and which environment we are in: read from the environment once.

ML_ASSETS_ENV          local (default) | staging | prod — picks the resource set in definitions.py
ML_ASSETS_HOME         root of every local file the pipeline writes (default ./var)
ML_ASSETS_CONTRACT     path of the dataset contract (default: the packaged demo contract)
ML_ASSETS_MLFLOW_UI_URL  where a browser reaches the MLflow UI (links in the Dagster UI); default: the
                       tracking server when MLFLOW_TRACKING_URI is http(s), else what `ml-assets dev` serves
ML_ASSETS_REPORTS_URL  where a browser reaches the lake's `reports/` (HTML reports); default: what
                       `ml-assets dev` serves
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENTS = ("local", "staging", "prod")
# What `ml-assets dev` serves by default; the link defaults below must match them.
DEFAULT_DAGSTER_PORT = 3000
DEFAULT_MLFLOW_UI_PORT = 5000
DEFAULT_REPORTS_PORT = 3001
DEFAULT_HOST = "127.0.0.1"


class SettingsError(ValueError):
    """A setting (environment variable) has a value the pipeline cannot use; the message names the
    variable, what was expected and what was found."""


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
    def mlflow_db(self) -> Path:
        return self.mlflow_dir / "mlflow.db"

    @property
    def mlflow_tracking_uri(self) -> str:
        """The local registry; staging and prod read MLFLOW_TRACKING_URI (see `tracking_uri`)."""
        return f"sqlite:///{self.mlflow_db}"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI this environment uses."""
        if self.env == "local":
            return os.environ.get("MLFLOW_TRACKING_URI") or self.mlflow_tracking_uri
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise SettingsError(f"ML_ASSETS_ENV={self.env} needs MLFLOW_TRACKING_URI (the MLflow tracking server, "
                                "e.g. http://mlflow:5000); it is not set")
        return uri

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
        raise SettingsError(f"ML_ASSETS_ENV={env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    home = Path(os.environ.get("ML_ASSETS_HOME", "var")).resolve()
    contract = os.environ.get("ML_ASSETS_CONTRACT")
    contract_path = Path(contract).resolve() if contract else None
    if contract_path is not None and not contract_path.is_file():
        found = "a directory" if contract_path.is_dir() else "nothing"
        raise SettingsError(f"ML_ASSETS_CONTRACT={contract}: expected a contract YAML file, found {found} at "
                            f"{contract_path}")
    return Settings(env=env, home=home, contract_path=contract_path)


def _http_base(value: str) -> str:
    return value.rstrip("/")


def mlflow_ui_url() -> str:
    """Base URL of the MLflow UI as a browser reaches it."""
    explicit = os.environ.get("ML_ASSETS_MLFLOW_UI_URL")
    if explicit:
        return _http_base(explicit)
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    if tracking.startswith(("http://", "https://")):
        return _http_base(tracking)  # a tracking server serves its own UI
    return f"http://{DEFAULT_HOST}:{DEFAULT_MLFLOW_UI_PORT}"


def reports_url() -> str:
    """Base URL under which the lake's keys (`reports/...`) are served over http."""
    return _http_base(os.environ.get("ML_ASSETS_REPORTS_URL") or f"http://{DEFAULT_HOST}:{DEFAULT_REPORTS_PORT}")


def dagster_url() -> str:
    """Base URL of the Dagster UI (run links in alerts)."""
    return _http_base(os.environ.get("DAGSTER_WEBSERVER_URL") or f"http://{DEFAULT_HOST}:{DEFAULT_DAGSTER_PORT}")
