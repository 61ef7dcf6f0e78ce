"""Dagster wiring for the training group: model_checkpoint."""


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
from ml_assets.training.checkpoint import LATEST, RUNS_PREFIX, run_key
from ml_assets.training.launcher import TrainingFailed

GROUP = "training"

__all__ = ["LATEST", "RUNS_PREFIX", "build", "run_key"]


def build(contract: Contract, checkpoints_root: Path, op_tags: dict[str, str] | None = None
          ) -> list[dg.AssetsDefinition]:
    """`op_tags` add to the step's tags: in production the `dagster-k8s/config` GPU request (see training.k8s)."""
    t = contract.training
    expected_s = t.expected_minutes * 60
    overtime_s = t.overtime_factor * expected_s
    deadline_s = t.deadline_factor * expected_s

    @dg.asset(
        group_name=GROUP,
        deps=["training_set"],
        kinds={"pytorch"},
        op_tags={"ml_assets/gpu": "true", **(op_tags or {})},
        check_specs=[dg.AssetCheckSpec("validation_auc", asset="model_checkpoint",
                                       description="the trained network learned something: validation ROC AUC "
                                                   "at least the golden-set gate")],
        description="DDP training through torchrun behind the launcher resource; resumable checkpoints (T1, T2).",
    )
    def model_checkpoint(context: dg.AssetExecutionContext, lake: StorageResource, trainer: TrainingLauncherResource,
                         alerts: AlertSinkResource):
        store = lake.get_store()
        manifest = json.loads(store.read_bytes(TRAINING_MANIFEST))
        spec = contract.training_spec
        key = run_key(manifest["content_hash"], spec)
        out_dir = checkpoints_root / key
        out_dir.mkdir(parents=True, exist_ok=True)
        data = out_dir / "training_set.parquet"
        data.write_bytes(store.read_bytes(TRAINING_KEY))
        artifacts_prefix = f"{RUNS_PREFIX}/{key}"
        checkpoint_uri = store.uri(artifacts_prefix)
        overtime: list[float] = []

        def on_overtime(elapsed_s: float) -> None:
            # T3: sent while training still runs, so a person hears before the deadline kills it.
            overtime.append(elapsed_s)
            alerts.send(Alert(kind="training_overtime", run_id=context.run.run_id, job=context.job_name,
                              steps=["model_checkpoint"],
                              summary=f"training has run {elapsed_s:.0f}s, over {t.overtime_factor}x the expected "
                                      f"{expected_s:.0f}s (deadline {deadline_s:.0f}s)",
                              details={"elapsed_s": elapsed_s, "expected_s": expected_s, "overtime_s": overtime_s,
                                       "deadline_s": deadline_s}))

        t0 = time.perf_counter()
        try:
            result = trainer.launch(data, out_dir, spec, log=context.log.info, timeout_s=deadline_s,
                                    checkpoint_uri=checkpoint_uri, overtime_s=overtime_s, on_overtime=on_overtime)
        except TrainingFailed as e:
            alerts.send(Alert(kind="training_failure", summary=f"model_checkpoint failed: {e.reason}"[:300],
                              run_id=context.run.run_id, job=context.job_name, steps=["model_checkpoint"], error=str(e),
                              details={"reason": e.reason, "returncode": e.returncode,
                                       "checkpoint_uri": checkpoint_uri, "output_tail": e.output_tail[-10:]}))
            raise
        took = time.perf_counter() - t0
        r = result.result
        latest = {"run_key": key, "out_dir": str(out_dir), "artifacts_prefix": artifacts_prefix,
                  "checkpoint_uri": checkpoint_uri, "training_hash": manifest["content_hash"],
                  "dagster_run_id": context.run.run_id, "result": r}
        store.write_bytes(LATEST, json.dumps(latest, indent=2).encode())
        epochs = pd.DataFrame(result.epochs_log)
        yield dg.MaterializeResult(metadata={
            "run_key": key,
            "checkpoint_dir": dg.MetadataValue.path(str(out_dir)),
            "checkpoint_uri": checkpoint_uri,
            "checkpoints": len(r.get("checkpoints") or []),
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
            "overtime_after_s": overtime_s,
            "deadline_s": deadline_s,
            "overtime_alerted": bool(overtime),
            "launcher": json.dumps(trainer.describe()),
            "epoch_log": md_table(epochs[[c for c in epochs.columns if c != "event"]]) if len(epochs) else "resumed",
        })
        floor = contract.thresholds.gates.roc_auc_min
        defined = r.get("val_auc") is not None
        yield dg.AssetCheckResult(
            check_name="validation_auc", asset_key="model_checkpoint", passed=defined and r["val_auc"] >= floor,
            severity=dg.AssetCheckSeverity.WARN,
            description=(f"validation AUC {r['val_auc']:.4f} vs roc_auc_min {floor}" if defined else
                         "validation AUC undefined: the validation split (the last validation_fraction of the "
                         "training window, by time) holds a single class; deliver more labelled days or widen "
                         "datasets.training_window_days"),
            metadata={"val_auc": r.get("val_auc"), "threshold": floor})

    return [model_checkpoint]
