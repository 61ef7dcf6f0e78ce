"""model_checkpoint as Dagster runs it (T1, T3): checkpoints in the configured storage (S3 here, a real
moto server), a SIGKILL of the training process group, a re-materialization on a wiped local disk that
resumes from the checkpoint in S3, and alerts through the alert sink."""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch

from ml_assets.alerts import read_alerts
from ml_assets.contract import Contract, load_contract
from ml_assets.datasets.assets import TRAINING_KEY, TRAINING_MANIFEST
from ml_assets.resources import LocalTorchrunLauncherResource, LogFileAlertSink, S3StorageResource, lake_resources
from ml_assets.storage import S3Store, frame_to_parquet_bytes, sha256_bytes
from ml_assets.training import assets as training
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.harness import with_lake_inputs
from ml_assets_tests.processes import processes_mentioning
from ml_assets_tests.training.conftest import make_bucket

pytestmark = pytest.mark.slow
EPOCHS = 10


def synthetic_training_set(contract: Contract, n: int = 6000, seed: int = 5) -> pd.DataFrame:
    """The contract's feature columns with a learnable fraud signal (~4% positives)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.lognormal(3.0, 1.0, n) for c in contract.numeric_features})
    df["hour_of_day"] = rng.integers(0, 24, n)
    df["merchant_category"] = rng.choice(["grocery", "fuel", "retail", "gift_cards"], n)
    df["channel"] = rng.choice(["in_store", "online", "atm"], n)
    df["customer_age_band"] = rng.choice(["18-29", "30-44", "45-64", "65+"], n)
    df["is_foreign"] = (rng.random(n) < 0.1).astype("int64")
    logit = -5.5 + 1.8 * (np.log(df["amount"]) - 3.0) + 2.5 * df["is_foreign"] + 1.5 * (df["channel"] == "online")
    df[contract.label] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    df[contract.timestamp] = pd.Timestamp("2026-01-08", tz="UTC") + pd.to_timedelta(np.arange(n) * 60, unit="s")
    df[contract.entity] = rng.integers(0, 500, n)
    return df


@pytest.fixture(scope="module")
def setup(moto_s3: str, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("asset")
    contract = load_contract(write_contract(root / "contract.yaml", training={
        "epochs": EPOCHS, "checkpoint_every": 1, "batch_size": 64, "hidden": [16, 8], "nproc_per_node": 2,
        # T3 thresholds as settings: 1.5x of 1.2 s passes during torchrun's start-up; the deadline stays far.
        "expected_minutes": 0.02, "overtime_factor": 1.5, "deadline_factor": 150}))
    bucket = make_bucket(moto_s3, "lake")
    data = frame_to_parquet_bytes(synthetic_training_set(contract))
    manifest = {"content_hash": sha256_bytes(data), "partitions": ["2026-01-08", "2026-01-12"],
                "date_from": "2026-01-08", "date_to": "2026-01-12", "rows": 6000}
    for prefix in ("reference", "crash"):
        store = S3Store(bucket, prefix, endpoint_url=moto_s3)
        store.write_bytes(TRAINING_KEY, data)
        store.write_bytes(TRAINING_MANIFEST, json.dumps(manifest).encode())
    return {"root": root, "contract": contract, "bucket": bucket, "endpoint": moto_s3}


def materialize(setup: dict, prefix: str, work: Path, alerts: Path) -> dg.ExecuteInProcessResult:
    (asset,) = training.build(setup["contract"], work)
    resources = {**lake_resources(S3StorageResource(bucket=setup["bucket"], prefix=prefix,
                                                    endpoint_url=setup["endpoint"])),
                 "trainer": LocalTorchrunLauncherResource(nproc_per_node=2),
                 "alerts": LogFileAlertSink(path=str(alerts))}
    with dg.instance_for_test() as instance:
        return dg.materialize(with_lake_inputs([asset]), resources=resources, instance=instance, raise_on_error=False)


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def reference(setup: dict) -> dict:
    alerts = setup["root"] / "reference_alerts.jsonl"
    result = materialize(setup, "reference", setup["root"] / "reference_work", alerts)
    assert result.success
    return {"metadata": metadata(result), "alerts": read_alerts(alerts), "run_id": result.run_id}


def test_overtime_alerts_while_training_still_runs(setup: dict, reference: dict):
    meta = reference["metadata"]
    assert meta["expected_duration_s"] == pytest.approx(1.2) and meta["overtime_after_s"] == pytest.approx(1.8)
    assert meta["deadline_s"] == pytest.approx(180) and meta["overtime_alerted"] is True
    assert meta["duration_s"] > meta["overtime_after_s"]
    (alert,) = [a for a in reference["alerts"] if a["kind"] == "training_overtime"]
    assert alert["run_id"] == reference["run_id"] and alert["steps"] == ["model_checkpoint"]
    assert alert["details"]["expected_s"] == pytest.approx(1.2) and alert["details"]["elapsed_s"] >= 1.8
    assert "over 1.5x the expected" in alert["summary"]
    assert not [a for a in reference["alerts"] if a["kind"] == "training_failure"]


def test_sigkill_after_a_checkpoint_resumes_from_storage_with_the_same_metrics(setup: dict, reference: dict):
    store = S3Store(setup["bucket"], "crash", endpoint_url=setup["endpoint"])
    work, alerts = setup["root"] / "crash_work", setup["root"] / "crash_alerts.jsonl"
    run_prefix = f"{training.RUNS_PREFIX}/{reference['metadata']['run_key']}"  # same data + spec = same key
    killed: dict = {}

    def kill_after_second_checkpoint() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if store.exists(f"{run_prefix}/checkpoints/epoch_0002.pt"):
                # torchrun and every rank at once (each rank has a session of its own; torchrun shares the step's,
                # as the Pipes client starts it): the whole training dies, as with a lost node, and nothing gets
                # to clean up.
                pids = [pid for pid in processes_mentioning(str(work)) if pid != os.getpid()]
                assert len(pids) >= 3, pids
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed["checkpoints"] = store.list(f"{run_prefix}/checkpoints")
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_second_checkpoint, daemon=True)
    killer.start()
    crashed = materialize(setup, "crash", work, alerts)
    killer.join()
    assert killed, "training finished before it could be killed"
    assert not crashed.success and not crashed.get_asset_materialization_events()
    last_durable = max(int(Path(k).stem.split("_")[1]) for k in killed["checkpoints"])
    assert 2 <= last_durable < EPOCHS
    assert not store.exists(f"{run_prefix}/result.json")
    (failure,) = [a for a in read_alerts(alerts) if a["kind"] == "training_failure"]
    # torchrun's own status (SIGKILL), read back from the Pipes client; the ranks' output tail rides along.
    assert failure["run_id"] == crashed.run_id and failure["details"]["returncode"] == -signal.SIGKILL
    assert "training command failed" in failure["details"]["reason"]

    shutil.rmtree(work)  # a fresh pod: nothing on local disk, only what reached the configured storage
    resumed = materialize(setup, "crash", work, alerts)
    assert resumed.success
    meta = metadata(resumed)
    assert meta["resumed_from_epoch"] == last_durable  # not from zero, and no durable epoch lost
    assert meta["checkpoint_uri"] == store.uri(run_prefix)
    assert meta["val_auc"] == pytest.approx(reference["metadata"]["val_auc"], abs=1e-4)
    assert meta["val_precision"] == pytest.approx(reference["metadata"]["val_precision"], abs=1e-3)
    assert meta["threshold"] == pytest.approx(reference["metadata"]["threshold"], abs=1e-4)
    latest = json.loads(store.read_bytes(training.LATEST))
    assert latest["result"]["resumed_from_epoch"] == last_durable and latest["artifacts_prefix"] == run_prefix
    reference_store = S3Store(setup["bucket"], "reference", endpoint_url=setup["endpoint"])
    ours = torch.load(_bytes_file(store.read_bytes(f"{run_prefix}/model.pt"), work / "a.pt"), weights_only=True)
    theirs = torch.load(_bytes_file(reference_store.read_bytes(f"{run_prefix}/model.pt"), work / "b.pt"),
                        weights_only=True)
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=1e-5)


def _bytes_file(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path
