"""The local Dagster instance: DAGSTER_HOME under ML_ASSETS_HOME, with the repo's dagster.yaml."""

from __future__ import annotations

import os
from pathlib import Path

from ml_assets.settings import Settings

REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def ensure_dagster_home(settings: Settings) -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and REPO_DAGSTER_YAML.exists():
        target.symlink_to(REPO_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
