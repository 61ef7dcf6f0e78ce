"""Dagster wiring for the registry group: registered_model, champion_model, and the
rollback job's op."""


import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets.assets import TRAINING_MANIFEST, load_golden
from ml_assets.metadata import md_table
from ml_assets.registry.gates import absolute_gates
from ml_assets.registry.mlflow_registry import CHALLENGER, CHAMPION, IntegrityError, code_version, pip_requirements
from ml_assets.registry.promotion import Decision, assess, evaluate
from ml_assets.registry.pyfunc import PipelineModel
from ml_assets.resources import MLflowResource, StorageResource
from ml_assets.training.assets import LATEST

GROUP = "registry"
GOLDEN_METRICS = ("roc_auc", "average_precision", "precision", "recall", "f1")


def _decision_metadata(decision: Decision) -> dict:
    return {
        "decision": "promote" if decision.passed else "reject",
        "gates": md_table(decision.table()),
        "failed_gates": ", ".join(g.name for g in decision.gates if not g.passed) or "none",
    }


def build(contract: Contract) -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name=GROUP,
        deps=["model_checkpoint", "golden_set", "training_set"],
        kinds={"mlflow"},
        check_specs=[
            dg.AssetCheckSpec("golden_set_gates", asset="registered_model", blocking=True,
                              description="P2: precision, recall and ROC AUC on the golden set meet the contract"),
            dg.AssetCheckSpec("artifact_integrity", asset="registered_model", blocking=True,
                              description="P8: the registered artifact's sha256 matches the recorded one"),
        ],
        description="The trained pipeline (preprocessing + network) as an MLflow model version with lineage tags; "
        "alias 'challenger'.",
    )
    def registered_model(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource):
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
        ref = registry.register(
            python_model=PipelineModel(),
            artifacts={"weights": str(out_dir / "model.pt"), "preprocessor": str(out_dir / "preprocessor.json"),
                       "result": str(out_dir / "result.json")},
            input_example=example,
            output_example=pd.DataFrame({"score": [0.5] * len(example), "prediction": [0] * len(example)}),
            pip_requirements=pip_requirements(),
            params={k: v for k, v in r.items() if k in ("epochs", "world_size", "backend", "hidden", "threshold")}
            | {"learning_rate": contract.training.learning_rate, "batch_size": contract.training.batch_size,
               "seed": contract.training.seed},
            metrics={k: r[k] for k in ("val_auc", "val_ap", "val_precision", "val_recall") if r.get(k) is not None},
            epoch_metrics=[json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()
                           if line.strip()] if (out_dir / "metrics.jsonl").exists() else [],
            tags=tags,
            run_name=f"train-{latest['run_key']}",
        )
        shutil.rmtree(out_dir, ignore_errors=True)  # MLflow holds its own copy now
        integrity_error = None
        try:
            model, digest = registry.load_verified(ref.version)
        except IntegrityError as e:
            integrity_error = str(e)
        if integrity_error is None:
            ev = evaluate(model, ref.version, golden, contract)
            registry.tag_version(ref.version, {f"golden_{k}": ev.metrics[k] for k in GOLDEN_METRICS
                                               if ev.metrics.get(k) is not None})
            decision = Decision(ref.version, None)
            g = contract.thresholds.gates
            decision.gates = absolute_gates(ev.metrics, g.precision_min, g.recall_min, g.roc_auc_min)
        yield dg.MaterializeResult(metadata={
            "model_name": ref.name,
            "version": ref.version,
            "alias": CHALLENGER,
            "model_uri": ref.uri,
            "mlflow_run": dg.MetadataValue.url(registry.run_url(ref.run_id)) if ref.run_id else "",
            "artifact_sha256": ref.tags.get("artifact_sha256", ""),
            **{k: str(v) for k, v in tags.items()},
            **({f"golden_{k}": ev.metrics[k] for k in GOLDEN_METRICS if ev.metrics.get(k) is not None}
               if integrity_error is None else {}),
        })
        yield dg.AssetCheckResult(check_name="artifact_integrity", asset_key="registered_model",
                                  passed=integrity_error is None,
                                  metadata={"sha256": ref.tags.get("artifact_sha256", ""),
                                            "error": integrity_error or ""})
        yield dg.AssetCheckResult(
            check_name="golden_set_gates", asset_key="registered_model",
            passed=integrity_error is None and decision.passed,
            metadata=_decision_metadata(decision) if integrity_error is None else {"error": integrity_error},
        )

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
    def champion_model(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource):
        golden, golden_manifest = load_golden(lake.get_store(), contract)
        registry = mlflow.registry()
        challenger_ref, champion_ref = registry.alias(CHALLENGER), registry.alias(CHAMPION)
        if challenger_ref is None:
            raise dg.Failure("no model version carries the 'challenger' alias: materialize registered_model first")
        decision = None
        if champion_ref is not None and champion_ref.version == challenger_ref.version:
            outcome = "already champion"
        else:
            decision = assess(registry, challenger_ref, champion_ref, golden, contract, log=context.log.error)
            if decision.passed:
                registry.promote(challenger_ref.version)
            outcome = "promoted" if decision.passed else "rejected"
            registry.tag_version(challenger_ref.version, {
                "promotion_decision": outcome,
                "promotion_decided_at": dt.datetime.now(dt.UTC).isoformat(),
                "promotion_golden_version": golden_manifest.version,
                "promotion_reasons": " | ".join(decision.reasons)[:4000] or "all gates passed",
            })
        current = registry.alias(CHAMPION)
        if current is None:
            raise dg.Failure(f"no champion: the first challenger v{challenger_ref.version} was refused: "
                             + " | ".join(decision.reasons if decision else []))
        try:
            registry.verify(current.version, Path(context.instance.storage_directory()) / "tmp" / "champion")
            verified_error = ""
        except IntegrityError as e:
            verified_error = str(e)
        meta = {
            "outcome": outcome,
            "champion_version": current.version,
            "challenger_version": challenger_ref.version,
            "previous_champion": champion_ref.version if champion_ref else "none",
            "golden_version": golden_manifest.version,
            **{f"alias_{k}": v for k, v in registry.aliases().items()},
        }
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
    moved = registry.rollback()
    context.log.warning("rolled back: champion is now v%s (demoted v%s)", moved["champion"], moved["demoted"])
    yield dg.AssetMaterialization(asset_key="champion_model", metadata={
        "champion_version": moved["champion"], "demoted_version": moved["demoted"], "promoted": False,
        "reasons": "rollback", **{f"alias_{k}": v for k, v in registry.aliases().items()}})
    yield dg.Output(moved)


@dg.job(description="P7: champion <- previous, in one step.")
def rollback():
    rollback_champion()
