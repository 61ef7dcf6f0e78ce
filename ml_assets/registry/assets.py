"""Dagster wiring for the registry group: registered_model, champion_model, and the
rollback job's op."""


import json
import tempfile
from pathlib import Path

import dagster as dg

from ml_assets.alerts import Alert
from ml_assets.contract import Contract
from ml_assets.datasets.assets import TRAINING_MANIFEST, golden_keys, load_golden, load_training_by_hash
from ml_assets.lake_layout import feedback_text
from ml_assets.metadata import Outcome
from ml_assets.registry import register, report
from ml_assets.registry.checks import CHAMPION_SCORED_ON_GOLDEN, CHAMPION_SERVES_VERIFIED_ARTIFACT, REGISTERED_CHECKS
from ml_assets.registry.mlflow_registry import CHAMPION, PREVIOUS, IntegrityError
from ml_assets.registry.promotion import Decision, assess, baseline_tags, promote_if_passing, verification_error
from ml_assets.resources import AlertSinkResource, LakeInput, MLflowResource, StorageResource, session
from ml_assets.training.checkpoint import LATEST

GROUP = "registry"


def _alert_incidents(decision: Decision, alerts: AlertSinkResource, context: dg.AssetExecutionContext,
                     step: str) -> None:
    """A champion that fails its integrity check is a security incident: one alert per decision that found it."""
    for incident in decision.incidents:
        alerts.send(Alert(kind="model_integrity", summary=incident[:300], run_id=context.run.run_id,
                          job=context.job_name, steps=[step], error=incident, details=report.incident_details(decision)))


def _check_results(decision: Decision, contract: Contract) -> list[dg.AssetCheckResult]:
    checks = {c.name: c for c in REGISTERED_CHECKS}
    return [checks[name].result(Outcome(passed, "", meta))
            for name, passed, meta in report.check_verdicts(decision, contract, checks)]


def build(contract: Contract) -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name=GROUP,
        ins={"golden_set": dg.AssetIn()},
        kinds={"mlflow"},
        check_specs=[CHAMPION_SCORED_ON_GOLDEN.spec()],
        description="P1: the serving champion's metrics on the golden version in force (precision, recall, ROC AUC "
        "with its bootstrap CI), recorded on its MLflow version as golden_<version>_* tags: the bar each challenger "
        "is judged against. Scored (hash-verified) the first time a golden version is seen, read back after. "
        f"Feedback input (not an edge: it would be a cycle): {feedback_text('champion_golden_metrics')}.",
    )
    def champion_golden_metrics(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                                golden_set: LakeInput):
        store = session(context, lake, golden_set)
        golden, manifest = load_golden(store, contract)
        scored = register.champion_baseline(mlflow.registry(), golden, manifest.version, contract,
                                            store.uri(golden_keys(manifest.version)[0]))
        if not scored.passed:
            context.log.error("cannot score the champion on golden %s: %s", manifest.version, scored.description)
        yield dg.MaterializeResult(value=store, metadata={"action": scored.description, **scored.metadata})
        yield CHAMPION_SCORED_ON_GOLDEN.result(scored)

    @dg.asset(
        group_name=GROUP,
        ins={name: dg.AssetIn() for name in ("model_checkpoint", "golden_set", "training_set")},
        deps=["champion_golden_metrics"],
        kinds={"mlflow"},
        check_specs=[c.spec() for c in REGISTERED_CHECKS],
        description="The trained pipeline (preprocessing + network) as an MLflow model version with lineage tags; "
        "alias 'challenger'. Every promotion gate is evaluated here as a blocking check (and again by "
        "champion_model before any alias moves).",
    )
    def registered_model(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                         alerts: AlertSinkResource, model_checkpoint: LakeInput, golden_set: LakeInput,
                         training_set: LakeInput):
        store = session(context, lake, model_checkpoint, golden_set, training_set)
        latest = json.loads(store.read_bytes(LATEST))
        training = json.loads(store.read_bytes(TRAINING_MANIFEST))
        golden, golden_manifest = load_golden(store, contract)
        if problem := register.stale_checkpoint(latest, training):
            raise dg.Failure(problem)
        registry = mlflow.registry()
        tags = register.lineage_tags(latest, training, golden_manifest, contract, context.run.run_id)
        training_data = load_training_by_hash(store, training["content_hash"])
        inputs = register.dataset_inputs(store, training, training_data, golden, golden_manifest, contract)
        ref = register.register_checkpoint(registry, store, latest, training, tags, inputs, golden, golden_manifest,
                                           contract)
        decision = assess(registry, ref, registry.alias(CHAMPION), golden, golden_manifest.version, contract,
                          training_data=register.training_lookup(store, training["content_hash"], training_data),
                          log=context.log.error)
        _alert_incidents(decision, alerts, context, "registered_model")
        golden_metrics = baseline_tags(golden_manifest.version, decision.challenger_metrics)
        registry.record_golden_metrics(ref.version, golden_metrics, inputs[-1])
        importance = register.record_importance(registry, ref.version, golden, contract)
        experiment_id = registry.experiment_id() if ref.run_id else None
        yield dg.MaterializeResult(value=store, metadata=report.registered_metadata(
            ref, experiment_id, tags, golden_metrics, decision, importance))
        yield from _check_results(decision, contract)

    @dg.asset(
        group_name=GROUP,
        ins={name: dg.AssetIn() for name in ("golden_set", "training_set")},
        deps=["registered_model"],
        kinds={"mlflow"},
        check_specs=[CHAMPION_SERVES_VERIFIED_ARTIFACT.spec()],
        description="Alias 'champion', moved to the challenger only when every gate passes on the golden set "
        "(absolute, champion/challenger with bootstrap CI, latency, integrity); the old champion becomes 'previous'.",
    )
    def champion_model(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                       alerts: AlertSinkResource, golden_set: LakeInput, training_set: LakeInput):
        store = session(context, lake, golden_set, training_set)
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
            raise dg.Failure(report.no_champion(result))
        if decision is not None and not decision.passed:
            context.log.error("challenger v%s refused; champion stays v%s: %s", result.challenger.version,
                              current.version, " | ".join(decision.reasons))
        error = verification_error(registry, current.version,
                                   Path(context.instance.storage_directory()) / "tmp" / "champion")
        yield dg.MaterializeResult(value=store, metadata=report.champion_metadata(
            result, current, registry.aliases(), golden_manifest.version))
        yield CHAMPION_SERVES_VERIFIED_ARTIFACT.result(Outcome(not error, error, {"champion_version": current.version,
                                                                                  "error": error}))

    return [champion_golden_metrics, registered_model, champion_model]


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
