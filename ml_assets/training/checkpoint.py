"""Where a training run's checkpoint lives in the lake, and what model_checkpoint records and
reports about it. Plain functions over plain data; training/assets.py wires them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ml_assets.alerts import Alert
from ml_assets.contract.model import Training, TrainingSpec
from ml_assets.datasets.lake import TRAINING_KEY
from ml_assets.metadata import Outcome, md_table, path
from ml_assets.storage import ObjectStore
from ml_assets.training.launcher import TrainingFailed, TrainingResult

LATEST = "model_checkpoint/latest.json"
# Durable checkpoints and outputs of each training run, in the lake (local directory or S3 prefix): T1.
RUNS_PREFIX = "model_checkpoint/runs"


def run_key(training_hash: str, spec: TrainingSpec) -> str:
    """Same data + same spec = same checkpoint directory, so a re-run resumes (T1)."""
    return hashlib.sha256((training_hash + json.dumps(spec.model_dump(), sort_keys=True)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TimeBudget:
    """T2/T3: how long a run is expected to take, when a person hears of it, and when it is killed."""

    expected_s: float
    overtime_factor: float
    overtime_s: float
    deadline_s: float


def time_budget(training: Training) -> TimeBudget:
    expected_s = training.expected_minutes * 60
    return TimeBudget(expected_s, training.overtime_factor, training.overtime_factor * expected_s,
                      training.deadline_factor * expected_s)


@dataclass(frozen=True)
class CheckpointRun:
    """One training run's places: its local checkpoint directory and data, and its durable prefix in the lake."""

    key: str
    out_dir: Path
    data: Path
    artifacts_prefix: str
    checkpoint_uri: str


def stage_run(store: ObjectStore, training_hash: str, spec: TrainingSpec, checkpoints_root: Path) -> CheckpointRun:
    """The run's directory (the same for the same data and spec, so a re-run resumes), with the training set in it."""
    key = run_key(training_hash, spec)
    out_dir = checkpoints_root / key
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "training_set.parquet"
    data.write_bytes(store.read_bytes(TRAINING_KEY))
    artifacts_prefix = f"{RUNS_PREFIX}/{key}"
    return CheckpointRun(key, out_dir, data, artifacts_prefix, store.uri(artifacts_prefix))


def overtime_alert(elapsed_s: float, budget: TimeBudget, run_id: str, job: str) -> Alert:
    """T3: sent while training still runs, so a person hears before the deadline kills it."""
    return Alert(kind="training_overtime", run_id=run_id, job=job, steps=["model_checkpoint"],
                 summary=f"training has run {elapsed_s:.0f}s, over {budget.overtime_factor}x the expected "
                         f"{budget.expected_s:.0f}s (deadline {budget.deadline_s:.0f}s)",
                 details={"elapsed_s": elapsed_s, "expected_s": budget.expected_s, "overtime_s": budget.overtime_s,
                          "deadline_s": budget.deadline_s})


def failure_alert(error: TrainingFailed, checkpoint_uri: str, run_id: str, job: str) -> Alert:
    return Alert(kind="training_failure", summary=f"model_checkpoint failed: {error.reason}"[:300],
                 run_id=run_id, job=job, steps=["model_checkpoint"], error=str(error),
                 details={"reason": error.reason, "returncode": error.returncode,
                          "checkpoint_uri": checkpoint_uri, "output_tail": error.output_tail[-10:]})


def latest_record(run: CheckpointRun, training_hash: str, run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """What LATEST says about the newest checkpoint: registered_model registers from it."""
    return {"run_key": run.key, "out_dir": str(run.out_dir), "artifacts_prefix": run.artifacts_prefix,
            "checkpoint_uri": run.checkpoint_uri, "training_hash": training_hash, "dagster_run_id": run_id,
            "result": result}


def checkpoint_metadata(run: CheckpointRun, training_hash: str, trained: TrainingResult, took_s: float,
                        budget: TimeBudget, overtime_alerted: bool, launcher: dict[str, Any]) -> dict[str, Any]:
    r = trained.result
    epochs = pd.DataFrame(trained.epochs_log)
    return {
        "run_key": run.key,
        "checkpoint_dir": path(str(run.out_dir)),
        "checkpoint_uri": run.checkpoint_uri,
        "checkpoints": len(r.get("checkpoints") or []),
        "training_set_hash": training_hash,
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
        "duration_s": round(took_s, 1),
        "expected_duration_s": budget.expected_s,
        "overtime_after_s": budget.overtime_s,
        "deadline_s": budget.deadline_s,
        "overtime_alerted": overtime_alerted,
        "launcher": json.dumps(launcher),
        "epoch_log": md_table(epochs[[c for c in epochs.columns if c != "event"]]) if len(epochs) else "resumed",
    }


def validation_auc(result: dict[str, Any], floor: float) -> Outcome:
    """The trained network learned something: validation ROC AUC at least the golden-set gate."""
    defined = result.get("val_auc") is not None
    return Outcome(defined and result["val_auc"] >= floor,
                   f"validation AUC {result['val_auc']:.4f} vs roc_auc_min {floor}" if defined else
                   "validation AUC undefined: the validation split (the last validation_fraction of the "
                   "training window, by time) holds a single class; deliver more labelled days or widen "
                   "datasets.training_window_days",
                   {"val_auc": result.get("val_auc"), "threshold": floor})
