"""The same ingestion against S3: a real moto_server on 127.0.0.1, the production storage
resource selected by ML_ASSETS_ENV=prod in definitions.py, credentials only in the environment."""

import datetime as dt
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import dagster as dg
import pandas as pd
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.metadata import as_markdown
from ml_assets.resources import S3StorageResource
from ml_assets.settings import Settings
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets_tests.conftest import write_contract

pytestmark = pytest.mark.slow

LANDING_BUCKET, LANDING_PREFIX = "acme-landing", "cards/incoming"
LAKE_BUCKET, LAKE_PREFIX = "acme-lake", "ml"
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    exe = exe if os.path.exists(exe) else shutil.which("moto_server")
    assert exe, "moto_server (pip install 'moto[server]') is required for the S3 tests"
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server on {url} did not answer (exit code {proc.poll()})") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prod(s3_endpoint, tmp_path, monkeypatch):
    # S1: credentials and addresses come from the environment only, as in production.
    for k, v in {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
                 "AWS_DEFAULT_REGION": "us-east-1", "ML_ASSETS_S3_ENDPOINT_URL": s3_endpoint,
                 "ML_ASSETS_LANDING_BUCKET": LANDING_BUCKET, "ML_ASSETS_LANDING_PREFIX": LANDING_PREFIX,
                 "ML_ASSETS_LAKE_BUCKET": LAKE_BUCKET, "ML_ASSETS_LAKE_PREFIX": LAKE_PREFIX}.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for bucket in (LANDING_BUCKET, LAKE_BUCKET):
        s3.create_bucket(Bucket=bucket)
    contract = write_contract(tmp_path / "contract.yaml", partitions={"start_date": DAYS[0], "end_date": "2026-01-04"})
    sim = simulate(tmp_path / "sim", SimulationConfig(start_date=dt.date(2026, 1, 1), days=3, n_cards=200))
    delivered = {}
    for path in [*sim.transaction_files, *sim.label_files]:
        data = path.read_bytes()
        if path.parent.name == "transactions" and path.stem == DAYS[0]:
            # One row breaks the contract's range for amount: it must land in quarantine, on S3.
            df = pd.read_csv(io.BytesIO(data), dtype=str)
            df.loc[0, "amount"] = "-12.5"
            data = df.to_csv(index=False).encode()
        s3.put_object(Bucket=LANDING_BUCKET, Key=f"{LANDING_PREFIX}/{path.parent.name}/{path.name}", Body=data)
        delivered[(path.parent.name, path.stem)] = data.count(b"\n") - 1
    settings = Settings(env="prod", home=tmp_path / "home", contract_path=contract)
    defs = build_definitions(settings)
    yield {"s3": s3, "defs": defs, "delivered": delivered}
    for bucket in (LANDING_BUCKET, LAKE_BUCKET):
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)


def execute(defs: dg.Definitions, assets: list[str], instance, first: str, last: str):
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey(a) for a in assets})
    return job.execute_in_process(instance=instance, raise_on_error=False, tags={
        "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})


def lake_frame(s3, key: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(s3.get_object(Bucket=LAKE_BUCKET, Key=f"{LAKE_PREFIX}/{key}")["Body"].read()))


def test_the_s3_storage_resource_gets_its_client_from_dagster_aws(prod):
    """The client is dagster-aws's S3Resource's: the configured endpoint, Dagster's standard retries, and
    credentials found by boto3 in the environment; a round trip through the store reaches the bucket."""
    store = S3StorageResource(bucket=LAKE_BUCKET, prefix="roundtrip", endpoint_url=os.environ["ML_ASSETS_S3_ENDPOINT_URL"]
                              ).get_store()
    assert store.client.meta.endpoint_url == os.environ["ML_ASSETS_S3_ENDPOINT_URL"]
    # S3Resource's max_attempts=5 (retries, in botocore's terms) in botocore's "standard" retry mode.
    assert store.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
    store.write_bytes("a/b.txt", b"hello")
    assert prod["s3"].get_object(Bucket=LAKE_BUCKET, Key="roundtrip/a/b.txt")["Body"].read() == b"hello"
    assert store.list("a") == ["a/b.txt"] and store.read_bytes("a/b.txt") == b"hello"


def test_ingestion_and_features_run_through_the_production_s3_resource(prod):
    s3, defs = prod["s3"], prod["defs"]
    assert isinstance(defs.resources["landing"], S3StorageResource)
    assert isinstance(defs.resources["lake"], S3StorageResource)
    with dg.instance_for_test() as instance:
        result = execute(defs, ["landing_zone", "raw_transactions", "raw_labels", "transaction_features"], instance,
                         DAYS[0], DAYS[-1])
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        observation = instance.fetch_observations(dg.AssetKey("landing_zone"), limit=1).records[0].asset_observation
        (record,) = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("raw_transactions"), asset_partitions=[DAYS[0]]), limit=1).records
        meta = record.asset_materialization.metadata  # the first day's own counts, and the run's totals
    assert observation.metadata["delivery_state"].value == "complete"
    assert f"s3://{LANDING_BUCKET}/{LANDING_PREFIX}/transactions" in as_markdown(observation.metadata["sources"])
    assert f"s3://{LANDING_BUCKET}/{LANDING_PREFIX}/transactions/{DAYS[0]}.csv" in meta["sources"].value

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=LAKE_BUCKET, Prefix=LAKE_PREFIX)["Contents"]}
    for day in DAYS:
        for asset in ("raw_transactions", "raw_labels", "transaction_features"):
            assert f"{LAKE_PREFIX}/{asset}/{day}.parquet" in keys
        valid = lake_frame(s3, f"raw_transactions/{day}.parquet")
        quarantined = lake_frame(s3, f"quarantine/raw_transactions/{day}.parquet")
        assert len(valid) + len(quarantined) == prod["delivered"][("transactions", day)]
        assert len(quarantined) == (1 if day == DAYS[0] else 0)
        assert len(lake_frame(s3, f"raw_labels/{day}.parquet")) == prod["delivered"][("labels", day)]
        assert len(lake_frame(s3, f"transaction_features/{day}.parquet")) == len(valid)
    reason = lake_frame(s3, f"quarantine/raw_transactions/{DAYS[0]}.parquet")["_reason"].iloc[0]
    assert "amount" in reason and "-12.5" in reason
    assert meta["rows_quarantined"].value == 1
    assert meta["rows_valid"].value + 1 == prod["delivered"][("transactions", DAYS[0])]
    assert meta["run_rows_valid"].value + 1 == sum(prod["delivered"][("transactions", d)] for d in DAYS)


def test_a_missing_s3_object_fails_loudly_naming_its_uri_and_writes_nothing(prod):
    s3, defs = prod["s3"], prod["defs"]
    missing = f"{LANDING_PREFIX}/transactions/{DAYS[1]}.csv"
    s3.delete_object(Bucket=LANDING_BUCKET, Key=missing)
    with dg.instance_for_test() as instance:
        result = execute(defs, ["raw_transactions", "transaction_features"], instance, DAYS[1], DAYS[1])
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert failure.step_key == "raw_transactions"
        error = failure.event_specific_data.error
        text = error.message + "".join(c.message for c in [error.cause] if c)
        assert f"s3://{LANDING_BUCKET}/{missing}" in text
        assert instance.get_latest_materialization_event(dg.AssetKey("transaction_features")) is None
    lake = s3.list_objects_v2(Bucket=LAKE_BUCKET, Prefix=LAKE_PREFIX).get("Contents", [])
    assert lake == [], "nothing was written to the lake for the failed partition"
