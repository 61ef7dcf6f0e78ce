"""Shared fixtures: isolated ML_ASSETS_HOME / DAGSTER_HOME and small contracts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ml_assets.contract import DEFAULT_CONTRACT
from ml_assets.settings import Settings


def write_contract(path: Path, **overrides) -> Path:
    """The demo contract with nested overrides, e.g. partitions={"end_date": "2026-01-21"}."""
    data = yaml.safe_load(DEFAULT_CONTRACT.read_text())

    def merge(dst: dict, src: dict) -> None:
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(data, overrides)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def contract_file(tmp_path: Path) -> Path:
    return write_contract(tmp_path / "contract.yaml")


@pytest.fixture
def settings_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(home: Path | None = None, contract_path: Path | None = None, env: str = "local") -> Settings:
        home = home or tmp_path / "home"
        home.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv("ML_ASSETS_HOME", str(home))
        monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
        if contract_path:
            monkeypatch.setenv("ML_ASSETS_CONTRACT", str(contract_path))
        return Settings(env=env, home=home, contract_path=contract_path)

    return make


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two cores: keep torch and BLAS from oversubscribing them in-process.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))


# The staging profile's real servers and its one graph run, shared by every test that uses them.
from ml_assets_tests.staging import staging_env, staging_run  # noqa: E402, F401
