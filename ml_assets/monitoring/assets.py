"""Dagster wiring for the monitoring group: batch_predictions, drift_report, evidently_report,
model_performance. What each does for a day is in daily.py; the decisions are made in drift.py /
verdict.py / performance.py; the checks are declared in checks.py."""


import dagster as dg

from ml_assets.contract import Contract
from ml_assets.datasets.assets import load_golden
from ml_assets.links import report_url
from ml_assets.metadata import partition_metadata
from ml_assets.monitoring import daily
from ml_assets.monitoring import lake as mlake
from ml_assets.monitoring.checks import (
    AUC_VS_GOLDEN,
    FEATURE_DRIFT,
    PIPELINE_BUG_SIGNALS,
    PREDICTIONS_COMPLETE,
    REPORT_WRITTEN,
)
from ml_assets.monitoring.scoring import load_champion
from ml_assets.resources import AlertSinkResource, LakeInput, MLflowResource, StorageResource, session
from ml_assets.storage import ReadCache

GROUP = "monitoring"


def _link(store, key: str) -> dict:
    """Where the report is (the lake object) and the http link a browser opens from the UI."""
    return {"report": dg.MetadataValue.path(store.uri(key)), "report_url": dg.MetadataValue.url(report_url(key))}


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    delay = contract.labels.delay_days
    d, perf = contract.thresholds.drift, contract.thresholds.performance
    daily_asset = {"group_name": GROUP, "partitions_def": partitions, "backfill_policy": dg.BackfillPolicy.single_run(),
                   "automation_condition": dg.AutomationCondition.eager()}

    @dg.asset(
        **daily_asset, ins={"transaction_features": dg.AssetIn()}, deps=["champion_model"],
        kinds={"mlflow", "parquet"},
        check_specs=[PREDICTIONS_COMPLETE.spec(partitions)],
        description="The champion's scores for each day's features; the champion is loaded by alias and its "
        "artifact hash verified first (P6, P8).",
    )
    def batch_predictions(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                          transaction_features: LakeInput):
        own = session(context, lake, transaction_features)
        store = ReadCache(own)  # a run over many days reads each day's window once
        model, version, digest = load_champion(mlflow.registry())
        outcomes, rows = {}, 0
        for pk in context.partition_keys:
            preds, outcomes[pk] = daily.score_day(store, model, contract, version, pk)
            rows += len(preds)
            partition_metadata(context, pk, daily.predictions_metadata(preds, version))
        yield dg.MaterializeResult(value=own, metadata={"rows": rows, "model_version": version,
                                                        "artifact_sha256": digest})
        yield from PREDICTIONS_COMPLETE.results(context, outcomes)

    @dg.asset(
        **daily_asset, ins={name: dg.AssetIn() for name in ("transaction_features", "batch_predictions", "training_set",
                                                            "golden_set")},
        deps=["champion_model"], kinds={"pandas", "parquet"},
        check_specs=[FEATURE_DRIFT.spec(partitions), PIPELINE_BUG_SIGNALS.spec(partitions)],
        description="Each day's drift verdict against the serving model's training data: PSI, KS / chi-square per "
        "feature weighted by the model's importance (M1), prediction drift (M2), bug-vs-drift signals (M5), distance "
        "from the golden set (M6); small days are judged together with the days before them. The sensor reads it.",
    )
    def drift_report(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                     alerts: AlertSinkResource, transaction_features: LakeInput, batch_predictions: LakeInput,
                     training_set: LakeInput, golden_set: LakeInput):
        own = session(context, lake, transaction_features, batch_predictions, training_set, golden_set)
        store = ReadCache(own)  # a run over many days reads each day's window once
        inputs = daily.drift_inputs(store, contract, mlflow.registry(), lambda: load_golden(store, contract))
        drift_outcomes, bug_outcomes, rows = {}, {}, []
        for pk in context.partition_keys:
            verdict, previous = daily.judge_drift_day(store, inputs, pk)
            alert = daily.bug_alert(pk, verdict, previous, context.run.run_id, context.job_name)
            if alert is not None:
                alerts.send(alert)
            daily.keep_verdict(store, pk, verdict, inputs.lineage)
            drift_outcomes[pk], bug_outcomes[pk] = daily.drift_outcomes(verdict)
            partition_metadata(context, pk, daily.drift_day_metadata(verdict))
            rows.append(daily.drift_partition_row(pk, verdict))
        yield dg.MaterializeResult(value=own, metadata=daily.drift_run_metadata(inputs, rows))
        yield from FEATURE_DRIFT.results(context, drift_outcomes, daily.drift_thresholds(d))
        yield from PIPELINE_BUG_SIGNALS.results(context, bug_outcomes, daily.drift_thresholds(d))

    @dg.asset(
        **daily_asset, ins={name: dg.AssetIn() for name in ("drift_report", "transaction_features", "training_set")},
        deps=["champion_model"], kinds={"evidently", "html"},
        check_specs=[REPORT_WRITTEN.spec(partitions)],
        config_schema={"always": dg.Field(bool, default_value=False,
                                          description="render every day, not only the days a person will open")},
        description="M7: the Evidently HTML drift report a person opens from the UI, with the day's verdict on top "
        "and Evidently told to use the same method (PSI) and threshold. Rendered off the critical path, for the days "
        "worth opening: drifted or suspicious days, and Mondays (a weekly look); other days say so.",
    )
    def evidently_report(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                         drift_report: LakeInput, transaction_features: LakeInput, training_set: LakeInput):
        own = session(context, lake, drift_report, transaction_features, training_set)
        store = ReadCache(own)  # a run over many days reads each day's window once
        champion = mlflow.registry().alias("champion")
        reference_frame, _ = mlake.reference_sample(store, contract, champion.tags["training_set_hash"])
        due, skipped = daily.plan_reports(store, contract, context.partition_keys,
                                          context.op_execution_context.op_config["always"])
        daily.render_reports(store, reference_frame[contract.feature_names], due, psi_threshold=d.psi_act)
        for pk in context.partition_keys:
            partition_metadata(context, pk, {"rendered": False, "why": skipped[pk]} if pk in skipped
                               else {"rendered": True, **_link(store, mlake.REPORT.format(day=pk))})
        yield dg.MaterializeResult(value=own, metadata={"rendered": len(due), "skipped": len(skipped),
                                             "method": f"PSI, threshold psi_act {d.psi_act} (as drift_report)"})
        yield from REPORT_WRITTEN.results(context, {pk: daily.report_outcome(store, pk, skipped.get(pk))
                                                    for pk in context.partition_keys})

    @dg.asset(
        **daily_asset, kinds={"pandas"}, check_specs=[AUC_VS_GOLDEN.spec(partitions)],
        ins={"raw_labels": dg.AssetIn(), "golden_set": dg.AssetIn(),
             "batch_predictions": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(
                 start_offset=-delay, end_offset=-delay, allow_nonexistent_upstream_partitions=True))},
        deps=["champion_model"],
        description=f"M3: the scores of day D-{delay} joined with the labels delivered on day D; AUC with a bootstrap "
        "CI on a window pooled until it holds enough of each class, judged against the lower end of the serving "
        "model's golden-set AUC CI; a decline is confirmed on consecutive disjoint windows and stays open until a new "
        "model serves or the AUC is back.",
    )
    def model_performance(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                          raw_labels: LakeInput, golden_set: LakeInput, batch_predictions: LakeInput):
        own = session(context, lake, raw_labels, golden_set, batch_predictions)
        store = ReadCache(own)  # a run over many days reads each day's window once
        registry = mlflow.registry()
        golden = load_golden(store, contract)
        reference = daily.golden_references(registry, golden, contract)
        outcomes = {}
        for pk in context.partition_keys:
            row = daily.performance_day(store, contract, registry, pk, reference, golden[1])
            outcomes[pk] = daily.performance_outcome(row)
            partition_metadata(context, pk, daily.performance_metadata(row))
        yield dg.MaterializeResult(value=own, metadata={"golden_version": golden[1].version,
                                             **daily.performance_thresholds(perf)})
        yield from AUC_VS_GOLDEN.results(context, outcomes)

    return [batch_predictions, drift_report, evidently_report, model_performance]
