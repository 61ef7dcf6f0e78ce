"""Registering a trained checkpoint as an MLflow model version: its lineage tags, parameters,
data inputs and artifacts, read from the records that training and the datasets left in the
lake. Plain functions over plain data; registry/assets.py wires them."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets.build import GoldenManifest
from ml_assets.datasets.lake import golden_keys, load_training_by_hash, training_version_key
from ml_assets.metadata import Outcome, table
from ml_assets.registry.describe import model_description, version_description
from ml_assets.registry.importance import IMPORTANCE_TAG, permutation_importance
from ml_assets.registry.importance import shares as importance_shares
from ml_assets.registry.importance import to_tag as importance_tag
from ml_assets.registry.mlflow_registry import (
    CHAMPION,
    DatasetRef,
    IntegrityError,
    ModelRef,
    Registry,
    code_version,
    pip_requirements,
)
from ml_assets.registry.promotion import GOLDEN_METRICS, TrainingLookup, baseline, golden_dataset, golden_tag
from ml_assets.registry.pyfunc import PipelineModel
from ml_assets.storage import ObjectStore
from ml_assets.training.checkpoint import LATEST

ARTIFACTS = ("model.pt", "preprocessor.json", "result.json", "metrics.jsonl")
PARAMS = ("epochs", "world_size", "backend", "hidden", "threshold")
VALIDATION_METRICS = ("val_auc", "val_ap", "val_precision", "val_recall")


def stale_checkpoint(latest: dict[str, Any], training: dict[str, Any]) -> str | None:
    """Why the latest checkpoint cannot be registered against the current training set; None when it can."""
    if latest["training_hash"] != training["content_hash"]:
        return ("model_checkpoint was trained on a different training_set than the current one "
                f"({latest['training_hash'][:12]} vs {training['content_hash'][:12]}); re-run training")
    if "artifacts_prefix" not in latest:
        return (f"{LATEST} was written before checkpoints were kept in the lake and names no "
                "artifacts_prefix; re-materialize model_checkpoint (it resumes, nothing is retrained twice)")
    return None


def fetch_artifacts(store: ObjectStore, artifacts_prefix: str) -> Path:
    """The checkpoint's files, copied from the lake to a new temporary directory (the caller removes it).

    They come from the lake, not from the training step's disk: on Kubernetes every step is a pod."""
    out_dir = Path(tempfile.mkdtemp(prefix="registered_model-"))
    for name in ARTIFACTS:
        (out_dir / name).write_bytes(store.read_bytes(f"{artifacts_prefix}/{name}"))
    return out_dir


def lineage_tags(latest: dict[str, Any], training: dict[str, Any], golden: GoldenManifest, contract: Contract,
                 run_id: str) -> dict[str, Any]:
    """The version's lineage: the data it was trained on and judged by, the code, the runs and the checkpoint."""
    return {
        "training_set_hash": training["content_hash"],
        "training_partitions": f"{training['partitions'][0]}..{training['partitions'][-1]}",
        "training_date_range": f"{training['date_from']}..{training['date_to']}",
        "training_rows": training["rows"],
        "golden_version": golden.version,
        "golden_hash": golden.content_hash,
        "code_version": code_version(),
        "dagster_run_id": run_id,
        "checkpoint_run_key": latest["run_key"],
        # The run that trained may be an earlier one than the run that registers (resumed or re-registered).
        "training_dagster_run_id": latest["dagster_run_id"],
        "checkpoint_uri": latest["checkpoint_uri"],
        "contract": contract.name,
        "threshold": latest["result"]["threshold"],
    }


def training_params(result: dict[str, Any], contract: Contract) -> dict[str, Any]:
    t = contract.training
    return {k: v for k, v in result.items() if k in PARAMS} | {
        "learning_rate": t.learning_rate, "batch_size": t.batch_size, "accumulation_steps": t.accumulation_steps,
        "seed": t.seed}


def epoch_metrics(out_dir: Path) -> list[dict[str, Any]]:
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dataset_inputs(store: ObjectStore, training: dict[str, Any], training_data: pd.DataFrame | None,
                   golden: pd.DataFrame, golden_manifest: GoldenManifest, contract: Contract) -> list[DatasetRef]:
    """The version's MLflow inputs: the training set (when still in the lake), then the golden set (always last)."""
    golden_source = store.uri(golden_keys(golden_manifest.version)[0])
    inputs = [golden_dataset(golden, golden_manifest.version, contract, golden_source)]
    if training_data is not None:
        inputs.insert(0, DatasetRef(name="training_set", source=store.uri(training_version_key(
            training["content_hash"])), digest=training["content_hash"], context="training",
            frame=training_data, targets=contract.label))
    return inputs


def training_lookup(store: ObjectStore, training_hash: str, training_data: pd.DataFrame | None) -> TrainingLookup:
    """Training data by content hash, answering the current training set from memory."""
    return lambda digest: training_data if digest == training_hash else load_training_by_hash(store, digest)


def register_checkpoint(registry: Registry, store: ObjectStore, latest: dict[str, Any], training: dict[str, Any],
                        tags: dict[str, Any], inputs: list[DatasetRef], golden: pd.DataFrame,
                        golden_manifest: GoldenManifest, contract: Contract) -> ModelRef:
    """The checkpoint (preprocessing + network) as a new MLflow model version with its lineage."""
    out_dir = fetch_artifacts(store, latest["artifacts_prefix"])
    r = latest["result"]
    example = golden[contract.feature_names].head(5)
    ref = registry.register(
        python_model=PipelineModel(),
        artifacts={"weights": str(out_dir / "model.pt"), "preprocessor": str(out_dir / "preprocessor.json"),
                   "result": str(out_dir / "result.json")},
        input_example=example,
        output_example=pd.DataFrame({"score": [0.5] * len(example), "prediction": [0] * len(example)}),
        pip_requirements=pip_requirements(),
        params=training_params(r, contract),
        metrics={k: r[k] for k in VALIDATION_METRICS if r.get(k) is not None},
        epoch_metrics=epoch_metrics(out_dir),
        tags=tags,
        run_name=f"train-{latest['run_key']}",
        inputs=inputs,
        description=version_description(r, training, golden_manifest.version, golden_manifest.content_hash,
                                        tags["code_version"]),
        model_description=model_description(contract),
    )
    shutil.rmtree(out_dir, ignore_errors=True)  # MLflow holds its own copy now
    return ref


def record_importance(registry: Registry, version: str, golden: pd.DataFrame, contract: Contract) -> dict[str, Any]:
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


def champion_baseline(registry: Registry, golden: pd.DataFrame, golden_version: str, contract: Contract,
                      golden_source: str | None = None) -> Outcome:
    """P1: the champion's metrics on the golden version in force, scored (hash-verified) the first time that
    version is seen and read from its tags after; the metadata says who, on which version, how, and the numbers.
    An integrity problem of the champion fails the outcome instead of raising: the golden set stands, and
    champion_model's own check refuses to serve that artifact."""
    champion = registry.alias(CHAMPION)
    if champion is None:
        return Outcome(True, "no champion yet", {"golden_version": golden_version, "champion_version": "none"})
    seen = {"golden_version": golden_version, "champion_version": champion.version}
    tags = registry.version(champion.version).tags
    known = {m: float(tags[golden_tag(golden_version, m)]) for m in GOLDEN_METRICS
             if golden_tag(golden_version, m) in tags}
    action = "read from its tags (scored earlier)"
    if "roc_auc" not in known:
        try:
            metrics = baseline(registry, champion.version, golden, golden_version, contract, golden_source)
        except IntegrityError as e:
            return Outcome(False, f"refused: {e}", seen)
        known = {m: float(metrics[m]) for m in GOLDEN_METRICS if metrics.get(m) is not None}
        action = f"scored now on {len(golden)} golden rows"
    return Outcome(True, action, {**seen, "golden_rows": len(golden), **{m: round(v, 4) for m, v in known.items()}})
