"""Dagster wiring for the monitoring group: batch_predictions, drift_report, model_performance."""


import datetime as dt
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets.assets import TRAINING_KEY, load_golden
from ml_assets.ingestion.ingest import lake_key
from ml_assets.metadata import clean, md_table
from ml_assets.monitoring.drift import DriftThresholds, feature_drift, prediction_drift, summarize
from ml_assets.monitoring.performance import bootstrap_metric, classification_metrics, roc_auc
from ml_assets.monitoring.report import write_evidently_reports
from ml_assets.monitoring.scoring import load_champion, score
from ml_assets.registry.promotion import reference_auc
from ml_assets.resources import MLflowResource, StorageResource

GROUP = "monitoring"
REFERENCE_SAMPLE = 20_000


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    delay = contract.labels.delay_days

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["transaction_features", "champion_model"],
        kinds={"mlflow", "parquet"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[dg.AssetCheckSpec("predictions_complete", asset="batch_predictions", blocking=True,
                                       description="one score in [0, 1] for every feature row")],
        description="The champion's scores for each day's features; the champion is loaded by alias and its "
        "artifact hash verified first.",
    )
    def batch_predictions(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource):
        store = lake.get_store()
        model, version, digest = load_champion(mlflow.registry())
        rows, problems, per = 0, [], []
        for pk in context.partition_keys:
            features = store.read_parquet(lake_key("transaction_features", pk))
            preds = score(model, features, contract, version)
            store.write_parquet(lake_key("batch_predictions", pk), preds)
            bad = int((~preds["score"].between(0, 1)).sum() + preds["score"].isna().sum())
            if len(preds) != len(features) or bad:
                problems.append(f"{pk}: {len(preds)} scores for {len(features)} rows, {bad} invalid")
            rows += len(preds)
            per.append({"partition": pk, "rows": len(preds), "mean_score": preds["score"].mean(),
                        "flagged_rate": preds["prediction"].mean()})
        yield dg.MaterializeResult(metadata={"rows": rows, "model_version": version, "artifact_sha256": digest,
                                             "per_partition": md_table(pd.DataFrame(per))})
        yield dg.AssetCheckResult(check_name="predictions_complete", asset_key="batch_predictions",
                                  passed=not problems, metadata={"problems": "; ".join(problems) or "none"})

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["transaction_features", "batch_predictions", "training_set"],
        kinds={"evidently", "html"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec("feature_drift", asset="drift_report",
                              description="M1: no feature the model receives has PSI at or above the 'act' band"),
            dg.AssetCheckSpec("pipeline_bug_signals", asset="drift_report",
                              description="M5: no sudden PSI > bug band, constant column or null jump"),
        ],
        description="Per-day drift of the features the model receives vs the training reference: PSI, KS / chi2 "
        "computed here, prediction drift, and an Evidently HTML report for people.",
    )
    def drift_report(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource):
        store = lake.get_store()
        d = contract.thresholds.drift
        thresholds = DriftThresholds(d.psi_watch, d.psi_act, d.psi_bug, d.ks_pvalue, d.chi2_pvalue)
        reference = store.read_parquet(TRAINING_KEY)
        if len(reference) > REFERENCE_SAMPLE:
            reference = reference.sample(n=REFERENCE_SAMPLE, random_state=0)
        # M2: the champion's scores on the training reference are the baseline for today's scores.
        model, version, _ = load_champion(mlflow.registry())
        reference_scores = score(model, reference, contract, version)["score"].to_numpy()
        threshold = float(model.unwrap_python_model().threshold)
        summaries, per, reports = {}, [], {}
        warmup = []
        for pk in context.partition_keys:
            if dt.date.fromisoformat(pk) < contract.first_complete_day:
                warmup.append(pk)  # aggregates saw less than a full window: not comparable, not judged
            current = store.read_parquet(lake_key("transaction_features", pk))
            drifts = feature_drift(reference, current, contract.numeric_features, contract.categorical_features,
                                   thresholds)
            summary = summarize(drifts)
            summaries[pk] = summary
            preds_key = lake_key("batch_predictions", pk)
            pdrift = {}
            if store.exists(preds_key):
                preds = store.read_parquet(preds_key)
                pdrift = prediction_drift(reference_scores, preds["score"].to_numpy(), threshold)
            store.write_parquet(f"drift_report/{pk}.parquet", summary.to_table())
            per.append({"partition": pk, "status": "warm-up" if pk in warmup else summary.status, "max_psi": summary.max_psi,
                        "drifted": ", ".join(summary.drifted_features) or "–",
                        "score_psi": pdrift.get("psi"), "score_mean": pdrift.get("current_mean"),
                        "flagged_share": pdrift.get("current_positive_share")})
        with tempfile.TemporaryDirectory() as tmp:
            currents = {Path(tmp) / f"{pk}.html": store.read_parquet(lake_key("transaction_features", pk))[
                contract.feature_names] for pk in context.partition_keys}
            write_evidently_reports(reference[contract.feature_names], currents,
                                    {p: f"Feature drift {p.stem}" for p in currents})
            for path in currents:
                store.write_bytes(f"reports/drift_report/{path.stem}.html", path.read_bytes())
                reports[path.stem] = store.uri(f"reports/drift_report/{path.stem}.html")
        last = summaries[context.partition_keys[-1]]
        meta = {
            "status": "warm-up" if context.partition_keys[-1] in warmup else last.status,
            "warm_up_until": contract.first_complete_day.isoformat(),
            "max_psi": clean(last.max_psi),
            "drifted_features": ", ".join(last.drifted_features) or "none",
            "weighted_drift_score": clean(last.weighted_drift_score),
            "thresholds": f"PSI watch {d.psi_watch} / act {d.psi_act} / bug {d.psi_bug}; KS p < {d.ks_pvalue}",
            "reference_rows": len(reference),
            "champion_version": version,
            "per_partition": md_table(pd.DataFrame(per)),
            "features": md_table(last.to_table()),
            "report": dg.MetadataValue.path(reports[context.partition_keys[-1]]),
        }
        if not reports[context.partition_keys[-1]].startswith("s3://"):
            meta["report_url"] = dg.MetadataValue.url(Path(reports[context.partition_keys[-1]]).as_uri())
        yield dg.MaterializeResult(metadata=meta)
        judged = {pk: s for pk, s in summaries.items() if pk not in warmup}
        acting = {pk: s.drifted_features for pk, s in judged.items() if s.status in ("act", "bug")}
        yield dg.AssetCheckResult(
            check_name="feature_drift", asset_key="drift_report", passed=not acting,
            severity=dg.AssetCheckSeverity.WARN,
            description="no feature in the act band" if not acting else f"drift to act on: {acting}",
            metadata={"drifted": str(acting), "max_psi": clean(max((s.max_psi for s in judged.values()), default=0.0)),
                      "threshold_psi_act": d.psi_act, "warm_up_partitions_not_judged": ", ".join(warmup) or "none"},
        )
        bugs = {pk: s.bug_features for pk, s in judged.items() if s.bug_features}
        yield dg.AssetCheckResult(
            check_name="pipeline_bug_signals", asset_key="drift_report", passed=not bugs,
            severity=dg.AssetCheckSeverity.ERROR,
            description="no bug signals" if not bugs else f"looks like a pipeline bug, not drift: {bugs}",
            metadata={"bug_features": str(bugs), "threshold_psi_bug": d.psi_bug},
        )

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["raw_labels", dg.AssetDep("batch_predictions", partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-delay, end_offset=-delay, allow_nonexistent_upstream_partitions=True))],
        kinds={"pandas"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[dg.AssetCheckSpec("auc_vs_golden", asset="model_performance",
                                       description="M3: no sustained decline: the AUC bootstrap CI on delayed labels "
                                                   "is not below golden AUC - tolerance for N consecutive windows")],
        description=f"Metrics of the scores of day D-{delay} on the labels delivered on day D, with a bootstrap CI.",
    )
    def model_performance(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource):
        store = lake.get_store()
        registry = mlflow.registry()
        perf = contract.thresholds.performance
        golden_version = contract.datasets.golden.version
        references: dict[str, float | None] = {}

        def reference(version: str) -> float | None:
            # P1: the scoring version's AUC on the *current* golden version (re-baselined if it has none yet);
            # a value from another golden version is never the reference.
            if version not in references:
                golden, _ = load_golden(store, contract)
                references[version] = reference_auc(registry, version, golden, golden_version, contract)
            return references[version]

        per, declines = [], {}
        for pk in context.partition_keys:
            labels = store.read_parquet(lake_key("raw_labels", pk))
            event_day = (dt.date.fromisoformat(pk) - dt.timedelta(days=delay)).isoformat()
            preds_key = lake_key("batch_predictions", event_day)
            row = {"partition": pk, "scored_day": event_day, "labels": len(labels), "model_version": None,
                   "roc_auc": None, "auc_ci_low": None, "auc_ci_high": None, "precision": None, "recall": None,
                   "reference_auc": None, "reference_golden_version": golden_version, "below_reference": False,
                   "declining": False}
            if not labels.empty and store.exists(preds_key):
                preds = store.read_parquet(preds_key)
                joined = preds.merge(labels, on=contract.record_id, how="inner")
                y = (joined[contract.label] == contract.labels.positive).astype(int).to_numpy()
                version = str(joined["model_version"].iloc[0])
                tags = registry.version(version).tags
                m = classification_metrics(y, joined["score"].to_numpy(), float(tags["threshold"]))
                row.update(labels=len(joined), model_version=version, precision=m["precision"], recall=m["recall"],
                           reference_auc=reference(version), roc_auc=m["roc_auc"])
                if m["roc_auc"] is not None and row["reference_auc"] is not None:
                    ci = bootstrap_metric(y, joined["score"].to_numpy(), roc_auc, n_resamples=200, seed=0)
                    # M3: a window is below only when its whole CI is under the reference - tolerance.
                    row.update(auc_ci_low=ci.low, auc_ci_high=ci.high,
                               below_reference=bool(ci.high < row["reference_auc"] - perf.auc_decline))
            # Windows judged against another golden version's reference do not count towards this decline.
            history = [h for h in _previous_windows(store, pk, perf.consecutive_windows - 1)
                       if h.get("reference_golden_version") == golden_version] + [row]
            row["declining"] = len(history) >= perf.consecutive_windows and all(h["below_reference"] for h in history)
            if row["declining"]:
                declines[pk] = (row["roc_auc"], row["reference_auc"])
            # Metrics stay float (NaN before labels arrive), so every window stores the same schema.
            store.write_parquet(lake_key("model_performance", pk), pd.DataFrame([row]).astype(
                {c: "float64" for c in ("roc_auc", "auc_ci_low", "auc_ci_high", "precision", "recall",
                                        "reference_auc")}))
            per.append(row)
        last = per[-1]
        yield dg.MaterializeResult(metadata={
            "roc_auc": clean(last["roc_auc"]),
            "auc_ci": f"[{last['auc_ci_low']:.4f}, {last['auc_ci_high']:.4f}]" if last["auc_ci_low"] else "–",
            "labels": int(last["labels"]),
            "reference_auc": clean(last["reference_auc"]),
            "reference_golden_version": golden_version,
            "declining": bool(last["declining"]),
            "threshold_auc_decline": perf.auc_decline,
            "threshold_consecutive_windows": perf.consecutive_windows,
            "per_partition": md_table(pd.DataFrame(per)),
        })
        yield dg.AssetCheckResult(
            check_name="auc_vs_golden", asset_key="model_performance", passed=not declines,
            severity=dg.AssetCheckSeverity.WARN,
            description="no sustained decline" if not declines else
            f"AUC CI below the golden reference for {perf.consecutive_windows} consecutive windows: {declines}",
            metadata={"declining_partitions": ", ".join(sorted(declines)) or "none"},
        )

    return [batch_predictions, drift_report, model_performance]



def _previous_windows(store, partition: str, n: int) -> list[dict]:
    """The n windows before `partition` as stored by earlier runs (or earlier in this run)."""
    rows = []
    for i in range(n, 0, -1):
        key = lake_key("model_performance", (dt.date.fromisoformat(partition) - dt.timedelta(days=i)).isoformat())
        if store.exists(key):
            rows.append(store.read_parquet(key).iloc[0].to_dict())
    return rows
