"""Fixtures for the staging profile (ML_ASSETS_ENV=staging): the real servers of `servers.staging_stack`,
started once per test session, and one small whole-graph run on them that several tests read (the
end-to-end assertions, the browser test). Imported by conftest.py.

`staging_env` alone is reusable by any test that runs something else on the same servers (e.g. a
replay): it yields the environment to apply with `applied_env`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest

from ml_assets.settings import Settings
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets_tests import servers

STAGING_DAYS = 20
FIRST, LAST = "2026-01-01", "2026-01-20"


@contextlib.contextmanager
def applied_env(values: dict[str, str], also_restore: tuple[str, ...] = ()) -> Iterator[None]:
    """Set environment variables for the duration (restored after, also on failure), and restore
    `also_restore`, which the code under test may set itself (e.g. DAGSTER_HOME)."""
    old = {k: os.environ.get(k) for k in [*values, *also_restore]}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def staging_env() -> Iterator[dict[str, str]]:
    with servers.staging_stack() as env:
        yield env


def deliver_to_s3(env: dict[str, str], landing_dir: Path) -> int:
    """Upload a simulated landing zone to the staging landing bucket, as a producer would."""
    s3 = boto3.client("s3", endpoint_url=env["ML_ASSETS_S3_ENDPOINT_URL"])
    files = sorted(p for p in landing_dir.rglob("*") if p.is_file())
    for path in files:
        key = f"{env['ML_ASSETS_LANDING_PREFIX']}/{path.relative_to(landing_dir).as_posix()}"
        s3.put_object(Bucket=env["ML_ASSETS_LANDING_BUCKET"], Key=key, Body=path.read_bytes())
    return len(files)


@pytest.fixture(scope="session")
def staging_run(staging_env, tmp_path_factory) -> Iterator[dict]:
    """The whole graph over FIRST..LAST in one run on the staging servers (Dagster on PostgreSQL,
    landing and lake on S3, Feast offline on S3 and online on Redis, MLflow server with artifacts on S3,
    local torchrun)."""
    from ml_assets.cli import run_graph
    from ml_assets.instance import ensure_dagster_home
    from ml_assets_tests.conftest import write_contract  # conftest imports this module

    home = tmp_path_factory.mktemp("staging_home")
    contract = write_contract(
        home / "contract.yaml",
        partitions={"start_date": FIRST, "end_date": "2026-01-21"},
        datasets={"golden": {"window_days": 5, "min_per_class": 100}},
        training={"epochs": 4, "checkpoint_every": 2, "expected_minutes": 3},
        # About the services, not latency: a shared CI core can miss the demo's 50 ms p99.
        thresholds={"gates": {"latency_p99_ms": 500}},
    )
    sim = simulate(home / "simulated", SimulationConfig(start_date=dt.date.fromisoformat(FIRST), days=STAGING_DAYS,
                                                        n_cards=2500))
    env = {**staging_env, "ML_ASSETS_HOME": str(home), "ML_ASSETS_CONTRACT": str(contract),
           "DAGSTER_HOME": str(home / "dagster_home")}
    # The environment is applied while the run happens, and only then: tests after this fixture must not
    # inherit ML_ASSETS_ENV=staging and its servers. Tests that need it apply `env` themselves.
    with applied_env(env):
        deliver_to_s3(env, home / "simulated")
        settings = Settings(env="staging", home=home, contract_path=contract)
        ensure_dagster_home(settings)
        instance = dg.DagsterInstance.get()
        result, first, last = run_graph(settings, FIRST, LAST, instance=instance)
    try:
        yield {"settings": settings, "env": env, "result": result, "sim": sim, "instance": instance,
               "first": first, "last": last}
    finally:
        instance.dispose()
