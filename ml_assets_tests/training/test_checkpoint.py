"""The training group's plain logic (checkpoint.py), without Dagster or torchrun."""

from __future__ import annotations

import json
from pathlib import Path

from ml_assets.contract import load_contract
from ml_assets.datasets.lake import TRAINING_KEY
from ml_assets.storage import LocalStore
from ml_assets.training.checkpoint import (
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
from ml_assets.training.launcher import TrainingFailed, TrainingResult

RESULT = {"epochs": 2, "world_size": 1, "backend": "gloo", "val_auc": 0.81234, "val_ap": 0.5, "val_precision": 0.4,
          "val_recall": 0.3, "threshold": 0.5, "checkpoints": ["a", "b"]}


def test_a_run_is_staged_where_the_same_data_and_spec_resume_it(tmp_path: Path):
    contract = load_contract()
    store = LocalStore(tmp_path / "lake")
    store.write_bytes(TRAINING_KEY, b"parquet bytes")
    run = stage_run(store, "h" * 64, contract.training_spec, tmp_path / "ckpt")
    assert run.key == run_key("h" * 64, contract.training_spec) != run_key("g" * 64, contract.training_spec)
    assert run.out_dir == tmp_path / "ckpt" / run.key and run.data.read_bytes() == b"parquet bytes"
    assert run.artifacts_prefix == f"{RUNS_PREFIX}/{run.key}" and run.checkpoint_uri == store.uri(run.artifacts_prefix)
    latest = latest_record(run, "h" * 64, "dagster-run", RESULT)
    assert (latest["run_key"], latest["training_hash"], latest["dagster_run_id"]) == (run.key, "h" * 64, "dagster-run")
    budget = time_budget(contract.training)
    meta = checkpoint_metadata(run, "h" * 64, TrainingResult(run.out_dir, RESULT, [], [], 1.0, 0), 12.345, budget,
                               True, {"kind": "local"})
    assert meta["checkpoints"] == 2 and meta["duration_s"] == 12.3 and meta["epoch_log"] == "resumed"
    assert json.loads(meta["launcher"]) == {"kind": "local"} and meta["overtime_alerted"] is True


def test_the_time_budget_and_its_alerts_follow_the_contract():
    t = load_contract().training
    budget = time_budget(t)
    assert budget.expected_s == t.expected_minutes * 60
    assert (budget.overtime_s, budget.deadline_s) == (t.overtime_factor * budget.expected_s,
                                                      t.deadline_factor * budget.expected_s)
    late = overtime_alert(budget.overtime_s + 1, budget, "r1", "retrain")
    assert late.kind == "training_overtime" and late.steps == ["model_checkpoint"] and late.run_id == "r1"
    assert f"over {t.overtime_factor}x the expected" in late.summary
    failed = failure_alert(TrainingFailed("rank 1 died", 1, [str(i) for i in range(20)]), "s3://b/ck", "r1", "j")
    assert failed.summary == "model_checkpoint failed: rank 1 died" and failed.details["output_tail"] == [
        str(i) for i in range(10, 20)]


def test_validation_auc_passes_at_the_floor_and_explains_an_undefined_one():
    assert validation_auc(RESULT, 0.8).passed and not validation_auc(RESULT, 0.9).passed
    assert validation_auc(RESULT, 0.8).description == "validation AUC 0.8123 vs roc_auc_min 0.8"
    undefined = validation_auc({**RESULT, "val_auc": None}, 0.8)
    assert not undefined.passed and "holds a single class" in undefined.description
    assert undefined.metadata == {"val_auc": None, "threshold": 0.8}
