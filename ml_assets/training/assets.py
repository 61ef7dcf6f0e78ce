"""Dagster wiring for the training group: model_checkpoint."""


import hashlib
import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_assets.alerts import Alert
from ml_assets.contract import Contract
from ml_assets.datasets.assets import TRAINING_KEY, TRAINING_MANIFEST
from ml_assets.metadata import md_table
from ml_assets.resources import AlertSinkResource, StorageResource, TrainingLauncherResource
from ml_assets.training.launcher import TrainingFailed

GROUP = "training"
LATEST = "model_checkpoint/latest.json"


def training_spec(contract: Contract) -> dict:
    t = contract.training
    return {
        "numeric": contract.numeric_features,
        "categorical": contract.categorical_features,
        "label": contract.label,
        "timestamp": contract.timestamp,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "learning_rate": t.learning_rate,
        "hidden": list(t.hidden),
        "seed": t.seed,
        "checkpoint_every": t.checkpoint_every,
        "validation_fraction": contract.datasets.validation_fraction,
    }


def run_key(training_hash: str, spec: dict) -> str:
    """Same data + same spec = same checkpoint directory, so a re-run resumes (T1)."""
    return hashlib.sha256((training_hash + json.dumps(spec, sort_keys=True)).encode()).hexdigest()[:16]


def build(contract: Contract, checkpoints_root: Path) -> list[dg.AssetsDefinition]:
    expected_s = contract.training.expected_minutes * 60

    @dg.asset(
        group_name=GROUP,
        deps=["training_set"],
        kinds={"pytorch"},
        op_tags={"ml_assets/gpu": "true"},
        check_specs=[dg.AssetCheckSpec("validation_auc", asset="model_checkpoint",
                                       description="the trained network learned something: validation ROC AUC "
                                                   "at least the golden-set gate")],
        description="DDP training through torchrun behind the launcher resource; resumable checkpoints (T1, T2).",
    )
    def model_checkpoint(context: dg.AssetExecutionContext, lake: StorageResource, trainer: TrainingLauncherResource,
                         alerts: AlertSinkResource):
        store = lake.get_store()
        manifest = json.loads(store.read_bytes(TRAINING_MANIFEST))
        spec = training_spec(contract)
        key = run_key(manifest["content_hash"], spec)
        out_dir = checkpoints_root / key
        out_dir.mkdir(parents=True, exist_ok=True)
        data = out_dir / "training_set.parquet"
        data.write_bytes(store.read_bytes(TRAINING_KEY))
        t0 = time.perf_counter()
        try:
            result = trainer.launch(data, out_dir, spec, log=context.log.info, timeout_s=2 * expected_s)
        except TrainingFailed as e:
            alerts.send(Alert(kind="training_failure", summary=f"model_checkpoint failed: {str(e)[:300]}",
                              run_id=context.run.run_id, job=context.job_name, steps=["model_checkpoint"], error=str(e)))
            raise
        took = time.perf_counter() - t0
        if took > 1.5 * expected_s:  # T3: overtime alerts even when training eventually succeeded
            alerts.send(Alert(kind="training_overtime", run_id=context.run.run_id, job=context.job_name,
                              summary=f"training took {took:.0f}s, over 1.5x the expected {expected_s:.0f}s",
                              details={"duration_s": took, "expected_s": expected_s}))
        r = result.result
        latest = {"run_key": key, "out_dir": str(out_dir), "training_hash": manifest["content_hash"],
                  "dagster_run_id": context.run.run_id, "result": r}
        store.write_bytes(LATEST, json.dumps(latest, indent=2).encode())
        epochs = pd.DataFrame(result.epochs_log)
        yield dg.MaterializeResult(metadata={
            "run_key": key,
            "checkpoint_dir": dg.MetadataValue.path(str(out_dir)),
            "checkpoints": len(list((out_dir / "checkpoints").glob("*.pt"))),
            "training_set_hash": manifest["content_hash"],
            "epochs": r["epochs"],
            "resumed_from_epoch": r.get("resumed_from_epoch"),
            "world_size": r["world_size"],
            "backend": r["backend"],
            "val_auc": r["val_auc"],
            "val_ap": r["val_ap"],
            "val_precision": r["val_precision"],
            "val_recall": r["val_recall"],
            "threshold": r["threshold"],
            "samples_per_s": r.get("samples_per_s"),
            "duration_s": round(took, 1),
            "expected_duration_s": expected_s,
            "launcher": json.dumps(trainer.describe()),
            "epoch_log": md_table(epochs[[c for c in epochs.columns if c != "event"]]) if len(epochs) else "resumed",
        })
        floor = contract.thresholds.gates.roc_auc_min
        yield dg.AssetCheckResult(check_name="validation_auc", asset_key="model_checkpoint",
                                  passed=r["val_auc"] >= floor, severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"val_auc": r["val_auc"], "threshold": floor})

    return [model_checkpoint]
