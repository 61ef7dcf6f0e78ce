"""The staging profile end to end: production in everything but the executor, on real servers
started on 127.0.0.1 (PostgreSQL, Redis, moto's S3 server, an MLflow tracking server)."""

import io
import urllib.request

import boto3
import dagster as dg
import pandas as pd
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.registry.mlflow_registry import CHAMPION, Registry
from ml_assets.resources import FeastResource, LocalTorchrunLauncherResource, S3StorageResource

pytestmark = pytest.mark.slow


def s3(run):
    env = run["env"]
    return boto3.client("s3", endpoint_url=env["ML_ASSETS_S3_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"])


def keys(run, bucket: str, prefix: str = "") -> set[str]:
    pages = s3(run).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_the_staging_profile_selects_the_production_services_and_the_local_trainer(staging_run):
    defs = build_definitions(staging_run["settings"])
    assert isinstance(defs.resources["landing"], S3StorageResource)
    assert isinstance(defs.resources["lake"], S3StorageResource)
    assert isinstance(defs.resources["feast"], FeastResource) and defs.resources["feast"].online_store == "redis"
    assert isinstance(defs.resources["trainer"], LocalTorchrunLauncherResource)
    instance = staging_run["instance"]
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"


def test_the_whole_graph_runs_on_the_staging_servers_with_every_check_passing(staging_run):
    result = staging_run["result"]
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    evaluations = {(e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name):
                   e.event_specific_data.passed for e in result.all_events
                   if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    declared = {(k.asset_key.to_user_string(), k.name)
                for k in build_definitions(staging_run["settings"]).resolve_asset_graph().asset_check_keys}
    assert set(evaluations) == declared
    assert [k for k, passed in evaluations.items() if not passed] == []


def test_dagster_runs_and_events_are_in_postgres(staging_run):
    import psycopg2

    env = staging_run["env"]
    with psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=env["DAGSTER_PG_PORT"], dbname=env["DAGSTER_PG_DB"],
                          user=env["DAGSTER_PG_USER"], password=env["DAGSTER_PG_PASSWORD"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (staging_run["result"].run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                    "'ASSET_MATERIALIZATION'", (staging_run["result"].run_id,))
        assert cur.fetchone()[0] >= 12
    assert not (staging_run["settings"].home / "dagster_home" / "history").exists(), "no SQLite instance on the side"


def test_landing_and_lake_live_on_s3_and_nothing_on_local_disk(staging_run):
    env, home = staging_run["env"], staging_run["settings"].home
    lake = keys(staging_run, env["ML_ASSETS_LAKE_BUCKET"], env["ML_ASSETS_LAKE_PREFIX"])
    prefix = env["ML_ASSETS_LAKE_PREFIX"]
    for asset in ("raw_transactions", "raw_labels", "transaction_features", "batch_predictions", "drift_report"):
        assert f"{prefix}/{asset}/{staging_run['last']}.parquet" in lake, asset
    assert f"{prefix}/training_set/training_set.parquet" in lake
    assert any(k.startswith(f"{prefix}/model_checkpoint/runs/") for k in lake), "checkpoints are durable on S3"
    assert any(k.startswith(f"{prefix}/reports/drift_report/") and k.endswith(".html") for k in lake)
    assert not (home / "lake").exists() and not (home / "landing").exists()
    features = pd.read_parquet(io.BytesIO(s3(staging_run).get_object(
        Bucket=env["ML_ASSETS_LAKE_BUCKET"], Key=f"{prefix}/transaction_features/{staging_run['last']}.parquet")
        ["Body"].read()))
    assert len(features) > 0


def test_feast_reads_its_offline_store_from_s3_and_serves_online_from_redis(staging_run):
    import redis

    env, home = staging_run["env"], staging_run["settings"].home
    instance = staging_run["instance"]
    features = instance.get_latest_materialization_event(dg.AssetKey("transaction_features")).asset_materialization
    assert features.metadata["offline_source"].value.startswith(f"s3://{env['ML_ASSETS_LAKE_BUCKET']}/")
    online = instance.get_latest_materialization_event(dg.AssetKey("online_features")).asset_materialization
    assert online.metadata["online_store"].value == "redis"
    assert online.metadata["entities"].value > 0
    # Feast wrote the online rows to Redis, not to a SQLite file.
    assert redis.Redis.from_url(env["ML_ASSETS_REDIS_URL"]).dbsize() >= online.metadata["entities"].value
    assert not list(home.rglob("online.db"))
    # The point-in-time join read the features through DuckDB's httpfs from S3.
    training = instance.get_latest_materialization_event(dg.AssetKey("training_set")).asset_materialization
    assert training.metadata["rows"].value > 0


def test_mlflow_tracking_server_holds_the_champion_and_its_artifacts_are_on_s3(staging_run):
    env = staging_run["env"]
    contract_name = "card_transactions"
    registry = Registry(env["MLFLOW_TRACKING_URI"], f"{contract_name}_model", contract_name)
    champion = registry.alias(CHAMPION)
    assert champion is not None
    registry.verify(champion.version, staging_run["settings"].home / "verify")  # downloaded through the server
    artifacts = keys(staging_run, "ml-assets-mlflow", "artifacts/")
    assert any(k.endswith("/model.pt") or "weights" in k for k in artifacts), sorted(artifacts)[:5]
    assert not (staging_run["settings"].home / "mlflow").exists(), "no local MLflow store on the side"


def test_the_mlflow_link_on_registered_model_opens_the_tracking_server(staging_run):
    meta = staging_run["instance"].get_latest_materialization_event(
        dg.AssetKey("registered_model")).asset_materialization.metadata
    url = meta["mlflow_run"].value
    assert url.startswith(staging_run["env"]["MLFLOW_TRACKING_URI"] + "/#/experiments/")
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and b"MLflow" in r.read()
    model_url = meta["mlflow_model_version"].value
    assert model_url.startswith(staging_run["env"]["MLFLOW_TRACKING_URI"] + "/#/models/")


def test_training_ran_through_local_torchrun(staging_run):
    meta = staging_run["instance"].get_latest_materialization_event(
        dg.AssetKey("model_checkpoint")).asset_materialization.metadata
    text = " ".join(str(v.value) for v in meta.values())
    assert "torchrun" in text


def test_ml_assets_check_judges_the_current_data_and_fails_on_a_tampered_partition(staging_run, tmp_path, capsys):
    """Asset checks in CI: every check against what is in the instance, lake and registry now,
    without re-materializing; a partition changed behind the pipeline's back fails it."""
    import xml.etree.ElementTree as ET

    from ml_assets.asset_checks import run_checks
    from ml_assets_tests.staging import applied_env

    env, settings = staging_run["env"], staging_run["settings"]
    declared = build_definitions(settings).resolve_asset_graph().asset_check_keys
    with applied_env(env):
        assert run_checks(settings, junit_path=tmp_path / "ok.xml") == 0, capsys.readouterr().err
        report = ET.parse(tmp_path / "ok.xml").getroot()
        assert report.get("failures") == "0"
        cases = {(c.get("classname"), c.get("name").split("[")[0]) for c in report.iter("testcase")}
        assert {(k.asset_key.to_user_string(), k.name) for k in declared} <= cases, "every declared check reported"
        assert ("lake", "raw_transactions") in cases and ("registry", "champion_artifact_integrity") in cases

        key = f"{env['ML_ASSETS_LAKE_PREFIX']}/raw_transactions/2026-01-05.parquet"
        original = s3(staging_run).get_object(Bucket=env["ML_ASSETS_LAKE_BUCKET"], Key=key)["Body"].read()
        frame = pd.read_parquet(io.BytesIO(original))
        tampered = io.BytesIO()
        frame.iloc[:-1].to_parquet(tampered)  # one row gone, as a hand edit or a bad copy would do
        s3(staging_run).put_object(Bucket=env["ML_ASSETS_LAKE_BUCKET"], Key=key, Body=tampered.getvalue())
        try:
            assert run_checks(settings, junit_path=tmp_path / "bad.xml") == 1
        finally:
            s3(staging_run).put_object(Bucket=env["ML_ASSETS_LAKE_BUCKET"], Key=key, Body=original)
    assert "raw_transactions[2026-01-05]" in capsys.readouterr().err
    [failure] = [c.find("failure") for c in ET.parse(tmp_path / "bad.xml").getroot().iter("testcase")
                 if c.find("failure") is not None]
    assert failure.get("type") == "blocking" and "sha256 differs" in failure.text
