"""Links a person can open from the Dagster UI: the MLflow UI and the HTML reports in the lake.

A tracking URI (`sqlite:///…`) or a lake path (`file://`, `s3://`) is no link: a browser on an http
page cannot open it. The bases come from settings (ML_ASSETS_MLFLOW_UI_URL, ML_ASSETS_REPORTS_URL),
whose local defaults are what `ml-assets dev` serves: the MLflow UI, and the lake's `reports/` over
http (`ml-assets serve-reports`, also what serves them in production when the lake is on S3).
"""

from __future__ import annotations

from urllib.parse import quote

from ml_assets.settings import mlflow_ui_url, reports_url

REPORTS_PREFIX = "reports/"


def mlflow_run_url(run_id: str, experiment_id: str) -> str:
    return f"{mlflow_ui_url()}/#/experiments/{quote(str(experiment_id))}/runs/{quote(run_id)}"


def mlflow_model_version_url(name: str, version: str | int) -> str:
    return f"{mlflow_ui_url()}/#/models/{quote(name)}/versions/{quote(str(version))}"


def report_url(lake_key: str) -> str:
    """The http URL of a lake object under `reports/` (e.g. `reports/drift_report/2026-01-05.html`)."""
    key = lake_key.lstrip("/")
    if not key.startswith(REPORTS_PREFIX):
        raise ValueError(f"report_url: expected a lake key under {REPORTS_PREFIX!r}, got {lake_key!r}; only "
                         "reports are served over http")
    return f"{reports_url()}/{quote(key)}"
