"""The registry group's plain logic (register.py, report.py), without Dagster or MLflow."""

from __future__ import annotations

import json
from pathlib import Path

from ml_assets.contract import load_contract
from ml_assets.datasets.build import GoldenManifest
from ml_assets.registry import gates, register, report
from ml_assets.registry.gates import GateResult
from ml_assets.registry.mlflow_registry import ModelRef
from ml_assets.registry.promotion import Decision, PromotionOutcome

TRAINING = {"content_hash": "a" * 64, "partitions": ["2026-01-01", "2026-01-09"], "date_from": "2026-01-01",
            "date_to": "2026-01-09", "rows": 1234}
LATEST = {"training_hash": "a" * 64, "artifacts_prefix": "model_checkpoint/runs/k", "run_key": "k",
          "dagster_run_id": "train-run", "checkpoint_uri": "file:///lake/model_checkpoint/runs/k",
          "result": {"threshold": 0.42, "epochs": 3, "world_size": 2, "backend": "gloo", "hidden": [32],
                     "val_auc": 0.9, "device": "cpu"}}
GOLDEN = GoldenManifest(version="v2", window_start="2026-01-10", window_end="2026-01-12", entity_fraction=0.2,
                        seed=1, rows=100, positives=10, negatives=90, content_hash="b" * 64, created_at="now")


def test_a_checkpoint_of_another_training_set_or_without_lake_artifacts_is_refused_with_the_reason():
    assert register.stale_checkpoint(LATEST, TRAINING) is None
    other = register.stale_checkpoint({**LATEST, "training_hash": "c" * 64}, TRAINING)
    assert other is not None and "cccccccccccc vs aaaaaaaaaaaa" in other and "re-run training" in other
    old = register.stale_checkpoint({k: v for k, v in LATEST.items() if k != "artifacts_prefix"}, TRAINING)
    assert old is not None and "names no artifacts_prefix" in old


def test_lineage_tags_name_the_data_the_runs_and_the_checkpoint():
    contract = load_contract()
    tags = register.lineage_tags(LATEST, TRAINING, GOLDEN, contract, "register-run")
    assert tags["training_partitions"] == "2026-01-01..2026-01-09"
    assert (tags["golden_version"], tags["golden_hash"]) == ("v2", "b" * 64)
    assert (tags["dagster_run_id"], tags["training_dagster_run_id"]) == ("register-run", "train-run")
    assert tags["threshold"] == 0.42 and tags["contract"] == contract.name and tags["code_version"]


def test_params_keep_the_run_shape_and_add_the_contract_hyperparameters(tmp_path: Path):
    contract = load_contract()
    params = register.training_params(LATEST["result"], contract)
    assert params["epochs"] == 3 and "val_auc" not in params and "device" not in params
    assert params["learning_rate"] == contract.training.learning_rate
    assert register.epoch_metrics(tmp_path) == []
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 0}) + "\n\n" + json.dumps({"epoch": 1}) + "\n")
    assert register.epoch_metrics(tmp_path) == [{"epoch": 0}, {"epoch": 1}]


def _gate(name: str, passed: bool, check: str) -> GateResult:
    return GateResult(name, passed, 1.0, 1.0, "detail of " + name, check=check, rule=">= 1")


def test_each_check_is_judged_by_its_gates_and_an_unevaluated_one_fails():
    contract = load_contract()
    decision = Decision("2", "1", "v2", [_gate("sha", True, gates.ARTIFACT_INTEGRITY),
                                         _gate("auc", False, gates.GOLDEN_SET_GATES)])
    verdicts = {name: (passed, meta) for name, passed, meta in
                report.check_verdicts(decision, contract, [gates.ARTIFACT_INTEGRITY, gates.GOLDEN_SET_GATES,
                                                           gates.INFERENCE_LATENCY])}
    assert verdicts[gates.ARTIFACT_INTEGRITY][0] and verdicts[gates.ARTIFACT_INTEGRITY][1]["reasons"] == "none"
    assert not verdicts[gates.GOLDEN_SET_GATES][0]
    assert verdicts[gates.GOLDEN_SET_GATES][1]["reasons"] == "auc: detail of auc"
    assert verdicts[gates.INFERENCE_LATENCY] == (False, {"reasons": "not evaluated: auc: detail of auc"})


def test_champion_metadata_reports_outcome_aliases_golden_metrics_and_the_decision():
    current = ModelRef("m", "1", None, {"golden_v2_roc_auc": "0.93", "golden_v1_roc_auc": "0.5", "x": "y"})
    challenger = ModelRef("m", "2", None, {})
    decision = Decision("2", "1", "v2", [_gate("auc", False, gates.GOLDEN_SET_GATES)])
    result = PromotionOutcome("rejected", challenger, current, decision, {"1": {"roc_auc": 0.93}})
    meta = report.champion_metadata(result, current, {"champion": "1", "challenger": "2"}, "v2")
    assert (meta["outcome"], meta["champion_version"], meta["previous_champion"]) == ("rejected", "1", "1")
    assert meta["champion_golden_v2_roc_auc"] == 0.93 and "champion_golden_v1_roc_auc" not in meta
    assert meta["alias_challenger"] == "2" and meta["rebaselined"] == "v1 on golden v2: roc_auc 0.9300"
    assert meta["decision"] == "reject" and meta["reasons"] == "auc: detail of auc"
    assert report.no_champion(PromotionOutcome("rejected", challenger, None, decision)) == (
        "no champion: the first challenger v2 was refused: auc: detail of auc")
