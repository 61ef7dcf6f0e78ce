"""Dagster wiring for the registry group: registered_model, champion_model, and the
rollback job's op."""


import json
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_assets import links
from ml_assets.alerts import Alert
from ml_assets.contract import Contract
from ml_assets.datasets.assets import (
    TRAINING_MANIFEST,
    golden_keys,
    load_golden,
    load_training_by_hash,
    training_version_key,
)
from ml_assets.metadata import md_table, table
from ml_assets.registry import gates
from ml_assets.registry.describe import model_description, version_description
from ml_assets.registry.importance import IMPORTANCE_TAG, permutation_importance
from ml_assets.registry.importance import shares as importance_shares
from ml_assets.registry.importance import to_tag as importance_tag
from ml_assets.registry.mlflow_registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    DatasetRef,
    IntegrityError,
    code_version,
    pip_requirements,
)
from ml_assets.registry.promotion import Decision, assess, baseline_tags, golden_dataset, promote_if_passing
from ml_assets.registry.pyfunc import PipelineModel
from ml_assets.resources import AlertSinkResource, MLflowResource, StorageResource
from ml_assets.training.assets import LATEST

GROUP = "registry"
# Blocking checks on registered_model; each gate names the check it counts towards (GateResult.check).
REGISTERED_CHECKS = {
    gates.ARTIFACT_INTEGRITY: "P8: the registered artifact's sha256 matches the recorded one",
    gates.GOLDEN_SET_DISJOINT: "P1: the training data in the model's lineage shares no entity, record or day with "
                               "the golden set",
    gates.GOLDEN_SET_GATES: "P2/P3: precision, recall and ROC AUC on the golden set meet the contract, and no "
                            "regression against the champion (bootstrap CI)",
    gates.INFERENCE_LATENCY: "P4: p99 of single-row scoring within the contract's limit",
    gates.FAIRNESS: "P5: no group of the declared sensitive attribute is treated worse (the contract's fairness "
                    "metric: error-rate or flag-rate ratios, confidence bounds)",
}


def _decision_metadata(decision: Decision) -> dict:
    meta = {
        "decision": "promote" if decision.passed else "reject",
        "comparison": md_table(decision.side_by_side()),
        "gates": md_table(decision.table()),
        "failed_gates": ", ".join(decision.failed()) or "none",
        "golden_version": decision.golden_version,
    }
    if decision.slices is not None:
        meta["slices"] = md_table(decision.slices)
    fair = [g for g in decision.gates if g.check == gates.FAIRNESS]
    if fair:
        meta["fairness"] = fair[0].detail
    return meta


def _alert_incidents(decision: Decision, alerts: AlertSinkResource, context: dg.AssetExecutionContext,
                     step: str) -> None:
    """A champion that fails its integrity check is a security incident: one alert per decision that found it."""
    for incident in decision.incidents:
        alerts.send(Alert(kind="model_integrity", summary=incident[:300], run_id=context.run.run_id,
                          job=context.job_name, steps=[step], error=incident,
                          details={"challenger_version": decision.challenger, "champion_version": decision.champion,
                                   "golden_version": decision.golden_version}))


def _check_results(decision: Decision, contract: Contract) -> list[dg.AssetCheckResult]:
    out = []
    for name in REGISTERED_CHECKS:
        judged_gates = [g for g in decision.gates if g.check == name]
        if judged_gates:
            judged = Decision(decision.challenger, decision.champion, decision.golden_version, judged_gates)
            passed = judged.passed
            meta = {"gates": md_table(judged.side_by_side()), "reasons": " | ".join(judged.reasons) or "none"}
        elif name == gates.FAIRNESS and not contract.slices.sensitive_attribute:
            passed, meta = True, {"note": "the contract declares no slices.sensitive_attribute"}
        else:  # not evaluated: the artifact was refused before any scoring
            passed, meta = False, {"reasons": "not evaluated: " + " | ".join(decision.reasons)}
        out.append(dg.AssetCheckResult(check_name=name, asset_key="registered_model", passed=passed, metadata=meta))
    return out


def _record_importance(registry, version: str, golden: pd.DataFrame, contract: Contract) -> dict:
    """M1: permutation importance on the golden set, recorded on the version (drift_report weighs by it)."""
    try:
        model, _ = registry.load_verified(version)
    except IntegrityError:
        return {"feature_importance": "not computed: the artifact failed its integrity check"}
    y = (golden[contract.label] == contract.labels.positive).astype(int).to_numpy()
    raw = permutation_importance(model, golden, contract.feature_names, y)
    registry.tag_version(version, {IMPORTANCE_TAG: importance_tag(raw)})
    share = importance_shares(raw)
    rows = sorted(({"feature": f, "auc_drop_when_shuffled": raw[f], "share": share[f]} for f in raw),
                  key=lambda r: -r["share"])
    return {"feature_importance": table(pd.DataFrame(rows))}


def build(contract: Contract) -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name=GROUP,
        deps=["model_checkpoint", "golden_set", "training_set"],
        kinds={"mlflow"},
        check_specs=[dg.AssetCheckSpec(name, asset="registered_model", blocking=True, description=text)
                     for name, text in REGISTERED_CHECKS.items()],
        description="The trained pipeline (preprocessing + network) as an MLflow model version with lineage tags; "
        "alias 'challenger'. Every promotion gate is evaluated here as a blocking check (and again by "
        "champion_model before any alias moves).",
    )
    def registered_model(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                         alerts: AlertSinkResource):
        store = lake.get_store()
        latest = json.loads(store.read_bytes(LATEST))
        training = json.loads(store.read_bytes(TRAINING_MANIFEST))
        golden, golden_manifest = load_golden(store, contract)
        if latest["training_hash"] != training["content_hash"]:
            raise dg.Failure("model_checkpoint was trained on a different training_set than the current one "
                             f"({latest['training_hash'][:12]} vs {training['content_hash'][:12]}); re-run training")
        if "artifacts_prefix" not in latest:
            raise dg.Failure(f"{LATEST} was written before checkpoints were kept in the lake and names no "
                             "artifacts_prefix; re-materialize model_checkpoint (it resumes, nothing is retrained "
                             "twice)")
        # The artifacts come from the lake, not from the training step's disk: on Kubernetes every step is a pod.
        out_dir = Path(tempfile.mkdtemp(prefix="registered_model-"))
        for name in ("model.pt", "preprocessor.json", "result.json", "metrics.jsonl"):
            (out_dir / name).write_bytes(store.read_bytes(f"{latest['artifacts_prefix']}/{name}"))
        r = latest["result"]
        registry = mlflow.registry()
        tags = {
            "training_set_hash": training["content_hash"],
            "training_partitions": f"{training['partitions'][0]}..{training['partitions'][-1]}",
            "training_date_range": f"{training['date_from']}..{training['date_to']}",
            "training_rows": training["rows"],
            "golden_version": golden_manifest.version,
            "golden_hash": golden_manifest.content_hash,
            "code_version": code_version(),
            "dagster_run_id": context.run.run_id,
            "checkpoint_run_key": latest["run_key"],
            # The run that trained may be an earlier one than the run that registers (resumed or re-registered).
            "training_dagster_run_id": latest["dagster_run_id"],
            "checkpoint_uri": latest["checkpoint_uri"],
            "contract": contract.name,
            "threshold": r["threshold"],
        }
        example = golden[contract.feature_names].head(5)
        training_data = load_training_by_hash(store, training["content_hash"])
        golden_source = store.uri(golden_keys(golden_manifest.version)[0])
        golden_ref = golden_dataset(golden, golden_manifest.version, contract, golden_source)
        inputs = [golden_ref]
        if training_data is not None:
            inputs.insert(0, DatasetRef(name="training_set", source=store.uri(training_version_key(
                training["content_hash"])), digest=training["content_hash"], context="training",
                frame=training_data, targets=contract.label))
        ref = registry.register(
            python_model=PipelineModel(),
            artifacts={"weights": str(out_dir / "model.pt"), "preprocessor": str(out_dir / "preprocessor.json"),
                       "result": str(out_dir / "result.json")},
            input_example=example,
            output_example=pd.DataFrame({"score": [0.5] * len(example), "prediction": [0] * len(example)}),
            pip_requirements=pip_requirements(),
            params={k: v for k, v in r.items() if k in ("epochs", "world_size", "backend", "hidden", "threshold")}
            | {"learning_rate": contract.training.learning_rate, "batch_size": contract.training.batch_size,
               "accumulation_steps": contract.training.accumulation_steps, "seed": contract.training.seed},
            metrics={k: r[k] for k in ("val_auc", "val_ap", "val_precision", "val_recall") if r.get(k) is not None},
            epoch_metrics=[json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()
                           if line.strip()] if (out_dir / "metrics.jsonl").exists() else [],
            tags=tags,
            run_name=f"train-{latest['run_key']}",
            inputs=inputs,
            description=version_description(r, training, golden_manifest.version, golden_manifest.content_hash,
                                            tags["code_version"]),
            model_description=model_description(contract),
        )
        shutil.rmtree(out_dir, ignore_errors=True)  # MLflow holds its own copy now
        decision = assess(registry, ref, registry.alias(CHAMPION), golden, golden_manifest.version, contract,
                          training_data=lambda digest: training_data if digest == training["content_hash"]
                          else load_training_by_hash(store, digest), log=context.log.error)
        _alert_incidents(decision, alerts, context, "registered_model")
        golden_metrics = baseline_tags(golden_manifest.version, decision.challenger_metrics)
        registry.record_golden_metrics(ref.version, golden_metrics, golden_ref)
        importance = _record_importance(registry, ref.version, golden, contract)
        yield dg.MaterializeResult(metadata={
            "model_name": ref.name,
            "version": ref.version,
            "alias": CHALLENGER,
            "model_uri": ref.uri,
            "mlflow_run": dg.MetadataValue.url(links.mlflow_run_url(ref.run_id, registry.experiment_id()))
            if ref.run_id else "",
            "mlflow_model_version": dg.MetadataValue.url(links.mlflow_model_version_url(ref.name, ref.version)),
            "artifact_sha256": ref.tags.get("artifact_sha256", ""),
            **{k: str(v) for k, v in tags.items()},
            **golden_metrics,
            **_decision_metadata(decision),
            **importance,
        })
        yield from _check_results(decision, contract)

    @dg.asset(
        group_name=GROUP,
        deps=["registered_model", "golden_set"],
        kinds={"mlflow"},
        check_specs=[dg.AssetCheckSpec("champion_serves_verified_artifact", asset="champion_model", blocking=True,
                                       description="P6/P8: the 'champion' alias resolves to a version whose artifact "
                                                   "hash verifies")],
        description="Alias 'champion', moved to the challenger only when every gate passes on the golden set "
        "(absolute, champion/challenger with bootstrap CI, latency, integrity); the old champion becomes 'previous'.",
    )
    def champion_model(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                       alerts: AlertSinkResource):
        store = lake.get_store()
        golden, golden_manifest = load_golden(store, contract)
        registry = mlflow.registry()
        try:
            result = promote_if_passing(registry, golden, golden_manifest.version, contract,
                                        training_data=lambda digest: load_training_by_hash(store, digest),
                                        log=context.log.error,
                                        golden_source=store.uri(golden_keys(golden_manifest.version)[0]))
        except LookupError as e:
            raise dg.Failure(str(e)) from e
        decision = result.decision
        if decision is not None:
            _alert_incidents(decision, alerts, context, "champion_model")
        current = registry.alias(CHAMPION)
        if current is None:
            raise dg.Failure(f"no champion: the first challenger v{result.challenger.version} was refused: "
                             + " | ".join(decision.reasons if decision else []))
        if decision is not None and not decision.passed:
            context.log.error("challenger v%s refused; champion stays v%s: %s", result.challenger.version,
                              current.version, " | ".join(decision.reasons))
        try:
            registry.verify(current.version, Path(context.instance.storage_directory()) / "tmp" / "champion")
            verified_error = ""
        except IntegrityError as e:
            verified_error = str(e)
        meta = {
            "outcome": result.outcome,
            "champion_version": current.version,
            "champion_link": dg.MetadataValue.url(links.mlflow_model_version_url(current.name, current.version)),
            "challenger_version": result.challenger.version,
            "previous_champion": result.previous_champion.version if result.previous_champion else "none",
            "golden_version": golden_manifest.version,
            **{f"alias_{k}": v for k, v in registry.aliases().items()},
            **{f"champion_{k}": float(v) for k, v in current.tags.items()
               if k.startswith(f"golden_{golden_manifest.version}_")},
        }
        if result.rebaselined:
            meta["rebaselined"] = "; ".join(f"v{v} on golden {golden_manifest.version}: roc_auc "
                                            f"{m.get('roc_auc') or float('nan'):.4f}" for v, m in result.rebaselined.items())
        if decision is not None:
            meta.update(_decision_metadata(decision))
            meta["reasons"] = " | ".join(decision.reasons) or "all gates passed"
        yield dg.MaterializeResult(metadata=meta)
        yield dg.AssetCheckResult(check_name="champion_serves_verified_artifact", asset_key="champion_model",
                                  passed=not verified_error,
                                  metadata={"champion_version": current.version, "error": verified_error})

    return [registered_model, champion_model]


@dg.op(description="P7: move 'champion' back to 'previous' and record it on champion_model.")
def rollback_champion(context, mlflow: MLflowResource):
    registry = mlflow.registry()
    previous = registry.alias(PREVIOUS)
    if previous is None:
        raise dg.Failure(f"model {registry.model_name} has no '{PREVIOUS}' alias: there is nothing to roll back to; "
                         f"aliases are {registry.aliases()}")
    with tempfile.TemporaryDirectory() as tmp:
        try:  # P8: never roll back onto an artifact that no longer matches its registration hash
            registry.verify(previous.version, Path(tmp) / "model")
        except IntegrityError as e:
            raise dg.Failure(f"refusing to roll back to v{previous.version}: {e}") from e
    moved = registry.rollback()
    context.log.warning("rolled back: champion is now v%s (demoted v%s)", moved["champion"], moved["demoted"])
    yield dg.AssetMaterialization(asset_key="champion_model", metadata={
        "champion_version": moved["champion"], "demoted_version": moved["demoted"], "promoted": False,
        "reasons": "rollback", **{f"alias_{k}": v for k, v in registry.aliases().items()}})
    yield dg.Output(moved)


@dg.job(description="P7: champion <- previous, in one step.")
def rollback():
    rollback_champion()
