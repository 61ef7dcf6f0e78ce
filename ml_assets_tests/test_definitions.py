"""The shape of the graph is part of the user interface (DESIGN.md): a change is a visible diff."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions

# asset -> (group, upstream assets), exactly as DESIGN.md draws the graph.
EXPECTED = {
    "landing_zone": ("ingestion", set()),
    "raw_transactions": ("ingestion", {"landing_zone"}),
    "raw_labels": ("ingestion", {"raw_transactions", "landing_zone"}),
    "transaction_features": ("features", {"raw_transactions"}),
    "online_features": ("features", {"transaction_features"}),
    "golden_set": ("datasets", {"transaction_features", "raw_labels", "raw_transactions"}),
    "training_set": ("datasets", {"golden_set", "transaction_features", "raw_labels", "raw_transactions"}),
    "training_baseline": ("datasets", {"training_set", "raw_transactions"}),
    "model_checkpoint": ("training", {"training_set"}),
    "champion_golden_metrics": ("registry", {"golden_set"}),
    "registered_model": ("registry", {"model_checkpoint", "golden_set", "training_set", "champion_golden_metrics"}),
    "champion_model": ("registry", {"registered_model", "golden_set", "training_set"}),
    "batch_predictions": ("monitoring", {"transaction_features", "champion_model"}),
    "drift_report": ("monitoring", {"transaction_features", "batch_predictions", "training_set", "champion_model",
                                    "golden_set"}),
    "evidently_report": ("monitoring", {"drift_report", "transaction_features", "training_set", "champion_model"}),
    "model_performance": ("monitoring", {"raw_labels", "batch_predictions", "champion_model", "golden_set"}),
}
# Observable source assets: observed (data version = what was delivered), never materialized.
SOURCES = {"landing_zone"}
DAILY = {"raw_transactions", "raw_labels", "transaction_features", "batch_predictions", "drift_report",
         "evidently_report", "model_performance"}
BLOCKING = {  # checks that guard training data or promotion must stop downstream steps
    ("raw_transactions", "schema_contract"), ("raw_transactions", "null_rates"), ("raw_transactions", "baseline_stats"),
    ("raw_transactions", "row_volume"),
    ("raw_labels", "schema_contract"), ("raw_labels", "labels_match_records"),
    ("transaction_features", "completeness"), ("transaction_features", "feature_nulls"),
    ("online_features", "online_matches_offline"), ("golden_set", "class_minimum"),
    ("training_set", "disjoint_from_golden_set"), ("training_set", "features_complete"),
    ("training_baseline", "baseline_matches_training_set"),
    ("registered_model", "golden_set_gates"), ("registered_model", "artifact_integrity"),
    ("registered_model", "golden_set_disjoint"), ("registered_model", "inference_latency"),
    ("registered_model", "fairness"),
    ("champion_model", "champion_serves_verified_artifact"), ("batch_predictions", "predictions_complete"),
}


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    from ml_assets.settings import Settings

    return build_definitions(Settings(env="local", home=tmp_path_factory.mktemp("home"), contract_path=None))


def test_every_asset_has_its_design_name_group_and_dependencies(defs):
    graph = defs.resolve_asset_graph()
    found = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        found[key.to_user_string()] = (node.group_name, {p.to_user_string() for p in node.parent_keys})
    assert found == EXPECTED
    partitioned = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def}
    assert partitioned == DAILY
    observable = {k.to_user_string() for k in graph.get_all_asset_keys()
                  if graph.get(k).is_observable and not graph.get(k).is_materializable}
    assert observable == SOURCES


def test_every_asset_has_a_check_and_guards_are_blocking(defs):
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}
    # The landing zone is observed, not materialized: its observation's delivery_state and the freshness
    # sensor judge it (test_freshness.py).
    assert {a for a, _ in checks} == set(EXPECTED) - SOURCES, "every materialized asset carries at least one check"
    blocking = {k for k, spec in checks.items() if spec.blocking}
    assert blocking == BLOCKING


def test_jobs_sensors_schedules_and_freshness(defs):
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"daily_ingest", "retrain", "rollback"}
    # golden_set is in retrain: a retrain asked for by a decline refreshes what the challenger is judged on.
    assert set(defs.resolve_job_def("retrain").asset_layer.executable_asset_keys) == {
        dg.AssetKey(a) for a in ("golden_set", "training_set", "training_baseline", "champion_golden_metrics",
                                 "model_checkpoint", "registered_model", "champion_model")}
    assert {s.name for s in defs.sensors} == {"retrain_on_drift", "alert_on_run_failure", "alert_on_stale_assets",
                                              "ml_assets_automation"}
    assert [s.name for s in defs.schedules] == ["daily_ingest_schedule"]
    graph = defs.resolve_asset_graph()
    fresh = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).freshness_policy}
    assert fresh == {"raw_transactions", "raw_labels", "transaction_features", "online_features", "champion_model"}


def test_dagster_cli_validates_the_code_location(tmp_path):
    env = {**os.environ, "ML_ASSETS_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    out = subprocess.run([dagster, "definitions", "validate", "-w", "workspace.yaml"], capture_output=True, text=True,
                         env=env, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Validation successful" in out.stdout + out.stderr


def _private_dagster_imports(path: Path) -> list[str]:
    """`import dagster._x`, `from dagster._x import y` and `from dagster import _x` in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "dagster" else [node.module]
        else:
            continue
        found += [f"line {node.lineno}: {n}" for n in names
                  if n.split(".")[0].startswith("dagster") and any(p.startswith("_") for p in n.split(".")[1:])]
    return found


def test_production_code_uses_only_public_dagster_apis():
    """Private Dagster modules move between minor versions without notice; the package must not import them."""
    package = Path(__file__).resolve().parent.parent / "ml_assets"
    offenders = {str(p.relative_to(package.parent)): found for p in sorted(package.rglob("*.py"))
                 if (found := _private_dagster_imports(p))}
    assert not offenders, f"private Dagster imports (use the public `dagster` API): {offenders}"


def test_the_private_import_scan_finds_each_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import dagster\nimport dagster._core.launcher\nfrom dagster._core import x\n"
                      "from dagster import _check, DagsterRun\nfrom dagster_aws.s3 import S3Resource\n"
                      "from dagster_k8s._x import y\n")
    assert _private_dagster_imports(sample) == [
        "line 2: dagster._core.launcher", "line 3: dagster._core", "line 4: dagster._check", "line 6: dagster_k8s._x"]
