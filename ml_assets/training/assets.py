"""Dagster wiring for the training group: model_checkpoint."""


import json
import time
from pathlib import Path

import dagster as dg

from ml_assets.contract import Contract
from ml_assets.datasets.assets import TRAINING_MANIFEST
from ml_assets.resources import AlertSinkResource, LakeInput, StorageResource, TrainingLauncherResource, session
from ml_assets.training.checkpoint import (
    LATEST,
    RUNS_PREFIX,
    checkpoint_metadata,
    failure_alert,
    latest_record,
    overtime_alert,
    run_key,
    stage_run,
    time_budget,
    validation_auc,
)
from ml_assets.training.checks import VALIDATION_AUC
from ml_assets.training.launcher import TrainingFailed

GROUP = "training"

__all__ = ["LATEST", "RUNS_PREFIX", "build", "run_key"]


def build(contract: Contract, checkpoints_root: Path, op_tags: dict[str, str] | None = None
          ) -> list[dg.AssetsDefinition]:
    """`op_tags` add to the step's tags: in production the `dagster-k8s/config` GPU request (see training.k8s)."""
    budget = time_budget(contract.training)

    @dg.asset(
        group_name=GROUP,
        ins={"training_set": dg.AssetIn()},
        kinds={"pytorch"},
        op_tags={"ml_assets/gpu": "true", **(op_tags or {})},
        check_specs=[VALIDATION_AUC.spec()],
        description="DDP training through torchrun behind the launcher resource, epochs and result reported "
                    "through Dagster Pipes; resumable checkpoints (T1, T2).",
    )
    def model_checkpoint(context: dg.AssetExecutionContext, lake: StorageResource, trainer: TrainingLauncherResource,
                         alerts: AlertSinkResource, training_set: LakeInput):
        store = session(context, lake, training_set)
        training_hash = json.loads(store.read_bytes(TRAINING_MANIFEST))["content_hash"]
        spec = contract.training_spec
        run = stage_run(store, training_hash, spec, checkpoints_root)
        overtime: list[float] = []

        def on_overtime(elapsed_s: float) -> None:
            overtime.append(elapsed_s)
            alerts.send(overtime_alert(elapsed_s, budget, context.run.run_id, context.job_name))

        t0 = time.perf_counter()
        try:
            trained = trainer.launch(context, run.data, run.out_dir, spec, timeout_s=budget.deadline_s,
                                     checkpoint_uri=run.checkpoint_uri, overtime_s=budget.overtime_s,
                                     on_overtime=on_overtime)
        except TrainingFailed as e:
            alerts.send(failure_alert(e, run.checkpoint_uri, context.run.run_id, context.job_name))
            raise
        took = time.perf_counter() - t0
        latest = latest_record(run, training_hash, context.run.run_id, trained.result)
        store.write_bytes(LATEST, json.dumps(latest, indent=2).encode())
        yield dg.MaterializeResult(value=store, metadata=checkpoint_metadata(
            run, training_hash, trained, took, budget, bool(overtime), trainer.describe()))
        yield VALIDATION_AUC.result(validation_auc(trained.result, contract.thresholds.gates.roc_auc_min))

    return [model_checkpoint]
