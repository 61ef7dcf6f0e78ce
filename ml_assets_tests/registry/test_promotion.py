"""Promotion, refusal and rollback with real models (P1-P8).

One small simulated dataset, features from the one feature definition, a golden set and a
training set laid out in the lake exactly as the datasets assets write them, and one real
model trained in-process by the DDP entry point (world size 1). Variants of that model
(ml_assets_tests/registry/variants.py) are registered through the real MLflow registry
(sqlite) and judged by the real `champion_model` asset; each injected failure must be
refused with its own reason, recorded on the model version, with `champion` unchanged.
"""

import datetime as dt
import json
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.alerts import read_alerts
from ml_assets.contract import Contract, load_contract
from ml_assets.datasets.assets import TRAINING_KEY, TRAINING_MANIFEST, golden_keys, training_version_key
from ml_assets.datasets.build import (
    GoldenManifest,
    content_hash,
    golden_pool,
    labeled_records,
    stratified_golden,
    training_pool,
)
from ml_assets.features.compute import compute_features
from ml_assets.ingestion.ingest import lake_key
from ml_assets.metadata import as_markdown
from ml_assets.monitoring import assets as monitoring_assets
from ml_assets.registry import assets as registry_assets
from ml_assets.registry.mlflow_registry import CHALLENGER, CHAMPION, PREVIOUS, ModelRef, Registry, pip_requirements
from ml_assets.registry.promotion import disjointness_gate, golden_tag
from ml_assets.registry.pyfunc import PipelineModel
from ml_assets.resources import LocalStorageResource, LogFileAlertSink, MLflowResource, lake_resources
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets.storage import LocalStore
from ml_assets.training import ddp
from ml_assets.training.assets import LATEST, RUNS_PREFIX
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.harness import with_lake_inputs
from ml_assets_tests.registry.variants import BiasedModel, NeverFlagsModel, NoisyModel, SlowModel, SquareRootModel

pytestmark = pytest.mark.slow
DAYS = 20


def _read_landing(landing: Path, kind: str) -> pd.DataFrame:
    files = sorted((landing / kind).glob("*.*"))
    return pd.concat([pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p) for p in files],
                     ignore_index=True)


def _golden_frame(sampled: pd.DataFrame, features: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    # Features are computed per record, so joining on the record id is point-in-time correct by construction.
    cols = [contract.record_id, contract.label]
    return sampled[cols].merge(features, on=contract.record_id, how="inner", validate="1:1")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("promotion")
    contract = load_contract(write_contract(
        home / "contract.yaml",
        partitions={"start_date": "2026-01-01", "end_date": "2026-01-21"},
        datasets={"golden": {"window_days": 5, "min_per_class": 100}},
        thresholds={"gates": {"bootstrap_resamples": 100}},
        training={"epochs": 2, "checkpoint_every": 2},
    ))
    simulate(home / "landing", SimulationConfig(start_date=dt.date(2026, 1, 1), days=DAYS, n_cards=2500,
                                                file_format="parquet"))
    records = _read_landing(home / "landing", "transactions")
    labels = _read_landing(home / "landing", "labels").astype({"transaction_id": str, "is_fraud": int})
    features = compute_features(records, contract)
    labeled = labeled_records(records, labels, contract)

    pool, start, end = golden_pool(labeled, contract)
    golden = _golden_frame(stratified_golden(pool, contract), features, contract)
    g = contract.datasets.golden
    manifest = GoldenManifest(version=g.version, window_start=start.isoformat(), window_end=end.isoformat(),
                              entity_fraction=g.entity_fraction, seed=g.seed, rows=len(golden),
                              positives=int(golden[contract.label].sum()),
                              negatives=int((golden[contract.label] == 0).sum()),
                              content_hash=content_hash(golden), created_at="2026-01-23T00:00:00+00:00")
    training = _golden_frame(training_pool(labeled, manifest, contract), features, contract)
    digest = content_hash(training)

    lake = LocalStore(home / "lake")
    data_key, manifest_key = golden_keys(g.version)
    lake.write_parquet(data_key, golden)
    lake.write_bytes(manifest_key, json.dumps(manifest.to_dict()).encode())
    lake.write_parquet(TRAINING_KEY, training)
    lake.write_parquet(training_version_key(digest), training)
    days = sorted(training[contract.timestamp].dt.date.astype(str).unique())
    lake.write_bytes(TRAINING_MANIFEST, json.dumps({"content_hash": digest, "golden_version": g.version,
                                                    "partitions": days, "date_from": days[0], "date_to": days[-1],
                                                    "rows": len(training)}).encode())

    out = home / "run"
    out.mkdir()
    training.to_parquet(out / "training_set.parquet", index=False)
    (out / "spec.json").write_text(contract.training_spec.model_dump_json())
    assert ddp.main(["--data", str(out / "training_set.parquet"), "--out", str(out), "--spec",
                     str(out / "spec.json")]) == 0
    # As model_checkpoint leaves it: the outputs in the lake, registered_model reads them from there.
    prefix = f"{RUNS_PREFIX}/promotion-tests"
    for name in ("model.pt", "preprocessor.json", "result.json", "metrics.jsonl"):
        lake.write_bytes(f"{prefix}/{name}", (out / name).read_bytes())
    lake.write_bytes(LATEST, json.dumps({"run_key": "promotion-tests", "out_dir": str(out), "training_hash": digest,
                                         "artifacts_prefix": prefix, "checkpoint_uri": lake.uri(prefix),
                                         "dagster_run_id": "promotion-tests",
                                         "result": json.loads((out / "result.json").read_text())}).encode())
    (home / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        yield {"instance": instance, "home": home, "contract": contract, "lake": lake, "golden": golden,
               "training": training, "training_hash": digest, "out": out, "features": features, "labels": labels,
               "tracking_uri": f"sqlite:///{home / 'mlflow.db'}", "artifacts": (home / "artifacts").as_uri()}


def by_name(assets: list[dg.AssetsDefinition], name: str) -> dg.AssetsDefinition:
    return next(a for a in assets if a.key.to_user_string() == name)


def registry_for(world, name: str) -> Registry:
    return Registry(world["tracking_uri"], name, "promotion_tests", world["artifacts"])


def resources(world, name: str) -> dict:
    return {**lake_resources(LocalStorageResource(root=str(world["lake"].root))),
            "mlflow": MLflowResource(tracking_uri=world["tracking_uri"], experiment="promotion_tests",
                                     model_name=name, artifact_location=world["artifacts"]),
            "alerts": LogFileAlertSink(path=str(world["home"] / f"alerts-{name}.jsonl"))}


def register(world, registry: Registry, model: PipelineModel, training_hash: str | None = None) -> ModelRef:
    out, contract = world["out"], world["contract"]
    example = world["golden"][contract.feature_names].head(3)
    return registry.register(
        python_model=model,
        artifacts={"weights": str(out / "model.pt"), "preprocessor": str(out / "preprocessor.json"),
                   "result": str(out / "result.json")},
        input_example=example,
        output_example=pd.DataFrame({"score": [0.5] * 3, "prediction": [0] * 3}),
        pip_requirements=pip_requirements(), params={}, metrics={}, epoch_metrics=[],
        tags={"training_set_hash": training_hash or world["training_hash"], "golden_version": "v1",
              "threshold": json.loads((out / "result.json").read_text())["threshold"]},
        run_name=type(model).__name__,
    )


def materialize_champion(world, name: str, contract: Contract | None = None) -> dg.ExecuteInProcessResult:
    champion_model = by_name(registry_assets.build(contract or world["contract"]), "champion_model")
    result = dg.materialize(with_lake_inputs([champion_model]), resources=resources(world, name), instance=world["instance"],
                            raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    [mat] = result.asset_materializations_for_node("champion_model")
    return {k: as_markdown(v) if isinstance(v, dg.TableMetadataValue) else getattr(v, "value", v)
            for k, v in mat.metadata.items()}


@pytest.fixture(scope="module")
def with_champion(world):
    """A registry whose champion is the real model, promoted through every gate by champion_model."""
    name = "injections"
    registry = registry_for(world, name)
    v1 = register(world, registry, PipelineModel())
    meta = metadata(materialize_champion(world, name))
    assert meta["outcome"] == "promoted" and meta["champion_version"] == v1.version
    assert meta["failed_gates"] == "none", meta["reasons"]
    return name, registry, v1, meta


def refused(world, with_champion, model: PipelineModel, training_hash: str | None = None,
            tamper: bool = False) -> tuple[dict, dict, ModelRef]:
    name, registry, champion, _ = with_champion
    ref = register(world, registry, model, training_hash)
    if tamper:
        tamper_with(registry, ref)
    meta = metadata(materialize_champion(world, name))
    assert meta["outcome"] == "rejected"
    assert registry.alias(CHAMPION).version == champion.version, "a refused challenger never moves the champion"
    assert registry.alias(CHALLENGER).version == ref.version
    tags = registry.version(ref.version).tags
    assert tags["promotion_decision"] == "rejected"
    assert tags["promotion_failed_gates"] == meta["failed_gates"]
    return meta, tags, ref


def new_golden_version(world, version: str, golden: pd.DataFrame, tmp_path: Path) -> Contract:
    """`golden` frozen as golden `version` next to v1 in the lake, and the contract that names it."""
    lake = world["lake"]
    data_key, manifest_key = golden_keys(version)
    lake.write_parquet(data_key, golden)
    lake.write_bytes(manifest_key, json.dumps({**json.loads(lake.read_bytes(golden_keys("v1")[1])), "version": version,
                                               "content_hash": content_hash(golden)}).encode())
    return load_contract(write_contract(tmp_path / f"{version}.yaml", partitions={"start_date": "2026-01-01",
                                                                                  "end_date": "2026-01-21"},
                                        datasets={"golden": {"version": version, "window_days": 5,
                                                             "min_per_class": 100}}))


def champion_golden_metrics(world, name: str, contract: Contract) -> tuple[dict, dg.AssetCheckEvaluation]:
    """champion_golden_metrics materialized as the retrain job runs it: its metadata and its check."""
    asset = by_name(registry_assets.build(contract), "champion_golden_metrics")
    run = dg.materialize(with_lake_inputs([asset]), resources=resources(world, name), instance=world["instance"])
    [mat] = run.asset_materializations_for_node("champion_golden_metrics")
    [check] = [e.event_specific_data for e in run.all_events
               if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    return {k: v.value for k, v in mat.metadata.items()}, check


def tamper_with(registry: Registry, ref: ModelRef) -> None:
    """Flip bytes of the stored weights of this version (the artifact store's copy, not a download)."""
    mv = registry.client.get_model_version(registry.model_name, ref.version)
    location = registry.client.get_logged_model(mv.source.removeprefix("models:/")).artifact_location
    weights = sorted(Path(urlparse(location).path).rglob("model.pt"))
    assert len(weights) == 1, weights
    data = weights[0].read_bytes()
    weights[0].write_bytes(data[:-16] + bytes(16))


# --- the real model passes every gate on the demo data ---------------------------------------------------------


def test_real_model_passes_every_gate_with_a_side_by_side_table(world, with_champion):
    _, registry, v1, meta = with_champion
    contract = world["contract"]
    table = meta["comparison"]
    assert table.splitlines()[0] == "| metric | challenger | champion | CI | threshold | pass |"
    for gate in ("artifact_integrity", "golden_set_disjoint", "absolute_precision", "absolute_recall",
                 "absolute_roc_auc", "latency_p99_ms", "fairness_equalized_odds"):
        assert f"| {gate} |" in table, gate
    assert "FAIL" not in table
    assert f">= {contract.thresholds.gates.roc_auc_min}" in table and "p99 <= 50" in table
    assert "customer_age_band" in meta["fairness"] and "65+" in meta["fairness"]
    assert "true_positive_rate" in meta["fairness"] and "false_positive_rate" in meta["fairness"]
    assert "| channel |" in meta["slices"] and "| customer_age_band |" in meta["slices"]
    tags = registry.version(v1.version).tags
    assert float(tags[golden_tag("v1", "roc_auc")]) >= contract.thresholds.gates.roc_auc_min
    assert tags["promotion_decision"] == "promoted" and tags["promotion_golden_version"] == "v1"


# --- each injected failure is refused with its own reason -----------------------------------------------------


def test_regressed_model_is_refused_on_the_champion_comparison(world, with_champion):
    meta, tags, _ = refused(world, with_champion, NoisyModel())
    failed = set(meta["failed_gates"].split(", "))
    assert "champion_challenger_roc_auc" in failed
    assert failed.isdisjoint({"artifact_integrity", "golden_set_disjoint", "latency_p99_ms"})
    assert "champion_challenger_roc_auc: AUC challenger" in tags["promotion_reasons"]
    row = next(line for line in meta["comparison"].splitlines() if line.startswith("| champion_challenger_roc_auc"))
    assert row.endswith("| FAIL |") and "[-" in row


def test_slow_model_is_refused_on_latency(world, with_champion):
    meta, tags, _ = refused(world, with_champion, SlowModel())
    assert meta["failed_gates"] == "latency_p99_ms"
    assert "latency_p99_ms: 100 single-row requests" in tags["promotion_reasons"]
    assert "> limit 50" in tags["promotion_reasons"]


def test_model_biased_on_the_sensitive_attribute_is_refused_on_equalized_odds(world, with_champion):
    # Flags every 65+ customer: their frauds are all caught, their legitimate transactions all flagged.
    meta, tags, _ = refused(world, with_champion, BiasedModel())
    failed = set(meta["failed_gates"].split(", "))
    assert "fairness_equalized_odds" in failed
    assert failed.isdisjoint({"artifact_integrity", "golden_set_disjoint", "latency_p99_ms"})
    reason = next(r for r in tags["promotion_reasons"].split(" | ") if r.startswith("fairness_equalized_odds"))
    assert "customer_age_band" in reason and "CI upper bound < 0.8" in reason
    fpr = reason.split("false_positive_rate ratio ")[1]
    assert "65+: 1.0000" in fpr, reason


def test_model_that_never_flags_a_group_is_refused_on_its_true_positive_rate(world, with_champion):
    meta, tags, _ = refused(world, with_champion, NeverFlagsModel())
    assert "fairness_equalized_odds" in meta["failed_gates"].split(", ")
    reason = next(r for r in tags["promotion_reasons"].split(" | ") if r.startswith("fairness_equalized_odds"))
    tpr = reason.split("true_positive_rate ratio ")[1].split("false_positive_rate")[0]
    assert tpr.startswith("0.0000") and "65+: 0.0000" in tpr, reason


def test_tampered_artifact_is_refused_before_any_scoring(world, with_champion):
    meta, tags, ref = refused(world, with_champion, PipelineModel(), tamper=True)
    assert meta["failed_gates"] == "artifact_integrity"
    assert f"v{ref.version}: artifact sha256 is" in tags["promotion_reasons"]
    assert "modified after registration" in tags["promotion_reasons"]


def test_tampered_champion_is_an_incident_that_stops_promotion_until_an_operator_rolls_back(world, tmp_path):
    """P3 is never skipped: with the serving champion's artifact modified, a new challenger (however good) is not
    promoted, a security alert goes out, and the decision names the way out; after the operator's rollback the
    next run compares the challenger with the restored, verified champion."""
    name = "tampered_champion"
    registry = registry_for(world, name)
    v1 = register(world, registry, PipelineModel())
    assert metadata(materialize_champion(world, name))["outcome"] == "promoted"
    v2 = register(world, registry, SquareRootModel())
    assert metadata(materialize_champion(world, name))["outcome"] == "promoted"
    assert registry.aliases() == {CHAMPION: v2.version, CHALLENGER: v2.version, PREVIOUS: v1.version}

    tamper_with(registry, v2)  # the serving model's stored weights
    # A new golden version cannot be scored with that artifact: said on champion_golden_metrics, no metric recorded.
    meta, check = champion_golden_metrics(world, name, new_golden_version(world, "vt", world["golden"], tmp_path))
    assert meta["action"].startswith("refused: ") and "modified after registration" in meta["action"]
    assert check.check_name == "champion_scored_on_golden" and not check.passed
    assert not any(k.startswith("golden_vt_") for k in registry.version(v2.version).tags)
    v3 = register(world, registry, PipelineModel())
    run = dg.materialize(with_lake_inputs([by_name(registry_assets.build(world["contract"]), "champion_model")]),
                         resources=resources(world, name),
                         instance=world["instance"], raise_on_error=False)
    # The run fails loudly: the champion it leaves in place does not verify (its own blocking check).
    assert not run.success
    check = next(e.event_specific_data for e in run.all_events
                 if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert check.check_name == "champion_serves_verified_artifact" and not check.passed
    meta = metadata(run)
    assert meta["outcome"] == "rejected" and meta["failed_gates"] == "champion_challenger_baseline"
    assert registry.aliases() == {CHAMPION: v2.version, CHALLENGER: v3.version, PREVIOUS: v1.version}
    reason = registry.version(v3.version).tags["promotion_reasons"]
    assert reason.startswith(f"champion_challenger_baseline: SECURITY: the serving champion v{v2.version} fails its "
                             f"integrity check") and "modified after registration" in reason
    assert f"run the rollback job (champion <- previous v{v1.version}, whose artifact verifies)" in reason
    assert "all gates passed" not in reason
    assert "| champion_challenger_baseline |" in meta["comparison"] and "FAIL" in meta["comparison"]
    assert "Promotion decision" in registry.description(v3.version) and "rejected" in registry.description(v3.version)
    [alert] = [a for a in read_alerts(world["home"] / f"alerts-{name}.jsonl") if a["kind"] == "model_integrity"]
    assert alert["steps"] == ["champion_model"] and f"champion v{v2.version}" in alert["summary"]
    assert alert["details"]["challenger_version"] == v3.version and alert["details"]["champion_version"] == v2.version

    # The operator's action: roll back to the verified previous champion. The challenger is then judged against it.
    assert registry_assets.rollback.execute_in_process(resources={"mlflow": resources(world, name)["mlflow"]},
                                                       instance=world["instance"]).success
    assert registry.alias(CHAMPION).version == v1.version
    meta = metadata(materialize_champion(world, name))
    assert meta["outcome"] == "promoted" and meta["failed_gates"] == "none", meta["reasons"]
    assert "| champion_challenger_roc_auc |" in meta["comparison"] and meta["previous_champion"] == v1.version
    assert registry.alias(CHAMPION).version == v3.version


def test_mlflow_shows_inputs_golden_metrics_curves_and_descriptions(world):
    """What a person finds in the MLflow UI after registered_model and champion_model ran (issue 11)."""
    name = "mlflow_ui"
    contract = world["contract"]
    result = dg.materialize(with_lake_inputs(registry_assets.build(contract)), resources=resources(world, name),
                            instance=world["instance"], raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    registry = registry_for(world, name)
    version = registry.alias(CHAMPION)
    client = registry.client
    run = client.get_run(version.run_id)

    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"training_set", "golden_set_v1"}
    training, golden = inputs["training_set"].dataset, inputs["golden_set_v1"].dataset
    training_tags = {t.key: t.value for t in inputs["training_set"].tags}
    golden_tags = {t.key: t.value for t in inputs["golden_set_v1"].tags}
    assert training_tags == {"mlflow.data.context": "training", "content_hash": world["training_hash"]}
    assert golden_tags == {"mlflow.data.context": "evaluation", "content_hash": content_hash(world["golden"])}
    assert training.digest == world["training_hash"][:32] and "training_set/versions/" in training.source
    assert golden.digest == golden_tags["content_hash"][:32] and "golden_set/v1/golden_set.parquet" in golden.source
    assert json.loads(golden.profile)["num_rows"] == len(world["golden"])

    tags = registry.version(version.version).tags
    for metric in ("roc_auc", "precision", "recall"):
        key = golden_tag("v1", metric)
        assert run.data.metrics[key] == pytest.approx(float(tags[key]))
        # scored by registered_model and again by champion_model on the same golden set: one point, not two
        assert len(client.get_metric_history(run.info.run_id, key)) == 1
    logged_model = client.get_model_version(name, version.version).source.removeprefix("models:/")
    linked = {m.key: m for m in client.get_logged_model(logged_model).metrics}
    assert linked[golden_tag("v1", "roc_auc")].dataset_name == "golden_set_v1"
    assert linked[golden_tag("v1", "roc_auc")].dataset_digest == golden.digest

    epochs = json.loads((world["out"] / "result.json").read_text())["epochs"]
    for key in ("val_auc", "val_ap", "train_loss"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, epochs + 1)), key
    assert "world_size" not in run.data.metrics and run.data.params["world_size"] == "1"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_recall")] == [epochs]

    model_text = client.get_registered_model(name).description
    assert contract.name in model_text and "'champion'" in model_text and "rollback" in model_text
    version_text = registry.description(version.version)
    assert version_text.startswith("MLP [64, 32] trained for") and world["training_hash"][:12] in version_text
    assert run.data.tags["mlflow.note.content"] in version_text  # the run page says the same
    assert "Promotion decision" in version_text and "promoted over no champion: all" in version_text


def test_challenger_trained_on_golden_rows_is_refused(world, with_champion):
    contract, lake = world["contract"], world["lake"]
    leaked = pd.concat([world["training"], world["golden"].head(40)], ignore_index=True)
    digest = content_hash(leaked)
    lake.write_parquet(training_version_key(digest), leaked)
    meta, tags, _ = refused(world, with_champion, PipelineModel(), training_hash=digest)
    assert meta["failed_gates"] == "golden_set_disjoint"
    shared = world["golden"].head(40)[contract.entity].nunique()
    assert f"{shared} shared card_id values" in tags["promotion_reasons"]
    assert "40 shared records" in tags["promotion_reasons"]


def test_disjointness_is_refused_when_the_training_data_cannot_be_found_or_was_changed(world):
    contract, golden = world["contract"], world["golden"]
    store = {world["training_hash"]: world["training"]}
    ok = disjointness_gate(ModelRef("m", "3", None, {"training_set_hash": world["training_hash"]}), store.get,
                           golden, "v1", contract)
    assert ok.passed and ok.value == 0.0
    unknown = disjointness_gate(ModelRef("m", "4", None, {"training_set_hash": "f" * 64}), store.get, golden, "v1",
                                contract)
    assert not unknown.passed and "is not in the lake any more" in unknown.detail
    untagged = disjointness_gate(ModelRef("m", "5", None, {}), store.get, golden, "v1", contract)
    assert not untagged.passed and "no training_set_hash lineage tag" in untagged.detail
    changed = {world["training_hash"]: world["training"].head(100)}
    modified = disjointness_gate(ModelRef("m", "6", None, {"training_set_hash": world["training_hash"]}),
                                 changed.get, golden, "v1", contract)
    assert not modified.passed and "it was modified" in modified.detail


def test_failed_blocking_check_on_registered_model_stops_promotion_in_the_same_run(world, with_champion, tmp_path):
    name, registry, champion, _ = with_champion
    # The same real model against a latency limit no model meets: registered_model's check must stop the run.
    strict = load_contract(write_contract(tmp_path / "strict.yaml",
                                          partitions={"start_date": "2026-01-01", "end_date": "2026-01-21"},
                                          datasets={"golden": {"window_days": 5, "min_per_class": 100}},
                                          thresholds={"gates": {"bootstrap_resamples": 100, "latency_p99_ms": 0.001}}))
    result = dg.materialize(with_lake_inputs(registry_assets.build(strict)), resources=resources(world, name),
                            instance=world["instance"], raise_on_error=False)
    checks = {e.event_specific_data.check_name: e.event_specific_data.passed for e in result.all_events
              if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    assert checks == {"artifact_integrity": True, "golden_set_disjoint": True, "golden_set_gates": True,
                      "inference_latency": False, "fairness": True, "champion_scored_on_golden": True}
    materialized = [e.event_specific_data.materialization.asset_key.to_user_string() for e in result.all_events
                    if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    assert materialized == ["champion_golden_metrics", "registered_model"], \
        "champion_model must not run after a failed blocking check"
    challenger = registry.alias(CHALLENGER)
    assert challenger.version != champion.version and registry.alias(CHAMPION).version == champion.version
    assert challenger.tags["training_set_hash"] == world["training_hash"]
    assert float(challenger.tags[golden_tag("v1", "roc_auc")]) > 0.9


# --- promotion, golden versions and the rollback drill -----------------------------------------------------------


def test_passing_model_is_promoted_and_a_rollback_drill_restores_scoring(world, with_champion):
    # Runs on the shared registry and leaves `champion` where it found it (the drill rolls it back).
    name, registry, v1, _ = with_champion
    contract, lake = world["contract"], world["lake"]
    assert registry.alias(CHAMPION).version == v1.version and registry.alias(PREVIOUS) is None
    v2 = register(world, registry, SquareRootModel())
    meta = metadata(materialize_champion(world, name))
    assert meta["outcome"] == "promoted", meta["reasons"]
    assert registry.aliases() == {CHAMPION: v2.version, CHALLENGER: v2.version, PREVIOUS: v1.version}
    assert meta["previous_champion"] == v1.version
    assert "| champion_challenger_roc_auc | " in meta["comparison"] and "FAIL" not in meta["comparison"]
    assert registry.version(v2.version).tags["promotion_decision"] == "promoted"

    day = "2026-01-20"
    feats = world["features"]
    lake.write_parquet(lake_key("transaction_features", day), feats[feats[contract.timestamp].dt.date.astype(str)
                                                                    == day])
    scoring = monitoring_assets.build(contract, dg.DailyPartitionsDefinition(start_date="2026-01-01",
                                                                             end_date="2026-01-21"))[0]

    def score_day() -> pd.DataFrame:
        res = dg.materialize(with_lake_inputs([scoring]), partition_key=day, resources=resources(world, name),
                             instance=world["instance"])
        assert res.success
        return lake.read_parquet(lake_key("batch_predictions", day))

    before = score_day()
    assert (before["model_version"] == v2.version).all()

    drill = registry_assets.rollback.execute_in_process(resources={"mlflow": resources(world, name)["mlflow"]},
                                                        instance=world["instance"])
    assert drill.success
    assert registry.alias(CHAMPION).version == v1.version and registry.alias(PREVIOUS) is None
    assert registry.version(v2.version).tags["rolled_back_to"] == v1.version

    # The next champion_model run (a later retrain, automation) does not put the demoted version back.
    again = metadata(materialize_champion(world, name))
    assert again["outcome"] == "rejected" and again["failed_gates"] == "not_rolled_back"
    assert registry.alias(CHAMPION).version == v1.version

    after = score_day()
    assert (after["model_version"] == v1.version).all()
    # The restored model really scores: v2's scores are the square roots of v1's.
    np.testing.assert_allclose(before["score"].to_numpy(), np.sqrt(after["score"].to_numpy()), rtol=1e-6)
    assert (before["prediction"] == after["prediction"]).all()

    second = registry_assets.rollback.execute_in_process(resources={"mlflow": resources(world, name)["mlflow"]},
                                                         instance=world["instance"], raise_on_error=False)
    assert not second.success and registry.alias(CHAMPION).version == v1.version, "nothing left to roll back to"


def test_golden_version_bump_rebaselines_the_champion_and_monitoring_uses_it(world, with_champion, tmp_path):
    name, registry, v1, _ = with_champion
    lake, contract = world["lake"], world["contract"]
    before = dict(registry.version(v1.version).tags)
    # v2 is a new frozen sample next to v1: here every positive and half of v1's negatives.
    golden = world["golden"]
    v2_golden = golden[(golden[contract.label] == 1) | (np.arange(len(golden)) % 2 == 0)].reset_index(drop=True)
    v2_contract = new_golden_version(world, "v2", v2_golden, tmp_path)
    meta, check = champion_golden_metrics(world, name, v2_contract)
    tags = registry.version(v1.version).tags
    assert check.passed and meta["champion_version"] == v1.version and meta["golden_version"] == "v2"
    assert meta["action"] == f"scored now on {len(v2_golden)} golden rows"
    assert float(tags["golden_v2_roc_auc"]) == pytest.approx(meta["roc_auc"], abs=1e-4)
    # Once per golden version: the next retrain reads the metrics back instead of scoring again.
    again, _ = champion_golden_metrics(world, name, v2_contract)
    assert again["action"] == "read from its tags (scored earlier)" and again["roc_auc"] == meta["roc_auc"]
    assert {k: v for k, v in tags.items() if k.startswith("golden_v1_")} == \
        {k: v for k, v in before.items() if k.startswith("golden_v1_")}, "older golden metrics stay as they were"
    assert lake.exists(golden_keys("v1")[0]), "the old version stays next to the new one"

    # model_performance judges delayed labels against the champion's AUC on the current golden version.
    day, scored_day = "2026-01-20", "2026-01-17"
    feats = world["features"]
    todays = feats[feats[contract.timestamp].dt.date.astype(str) == scored_day]
    model, _ = registry.load_verified(v1.version)
    out = model.predict(todays[contract.feature_names])
    lake.write_parquet(lake_key("batch_predictions", scored_day), pd.DataFrame({
        contract.record_id: todays[contract.record_id].to_numpy(), "score": out["score"].to_numpy(),
        "prediction": out["prediction"].to_numpy(), "model_version": v1.version}))
    labels = world["labels"][world["labels"][contract.record_id].isin(todays[contract.record_id])]
    lake.write_parquet(lake_key("raw_labels", day), labels)
    perf = next(a for a in monitoring_assets.build(v2_contract, dg.DailyPartitionsDefinition(
        start_date="2026-01-01", end_date="2026-01-21")) if a.key.to_user_string() == "model_performance")
    assert dg.materialize(with_lake_inputs([perf]), partition_key=day, resources=resources(world, name),
                          instance=world["instance"]).success
    row = lake.read_parquet(lake_key("model_performance", day)).iloc[0]
    assert row["golden_version"] == "v2"
    assert row["reference_auc"] == pytest.approx(float(tags["golden_v2_roc_auc"]))
    assert row["reference_auc"] != pytest.approx(float(tags["golden_v1_roc_auc"]), abs=1e-9)
