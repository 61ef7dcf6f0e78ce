"""Dagster wiring for the monitoring group: batch_predictions, drift_report, evidently_report,
model_performance. The decisions are made in drift.py / verdict.py / performance.py."""


import datetime as dt
import json
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.alerts import Alert
from ml_assets.contract import Contract
from ml_assets.datasets.assets import load_golden
from ml_assets.ingestion.ingest import lake_key
from ml_assets.links import report_url
from ml_assets.metadata import Outcome, partition_metadata, partitioned_check, table
from ml_assets.metrics import roc_auc
from ml_assets.monitoring import lake as mlake
from ml_assets.monitoring.performance import LabelledDay, decline_state, evaluate_window, pool_window
from ml_assets.monitoring.report import verdict_html, write_evidently_reports
from ml_assets.monitoring.scoring import load_champion, score, threshold_of
from ml_assets.monitoring.verdict import judge_day
from ml_assets.registry.importance import from_tags as importance_from_tags
from ml_assets.registry.promotion import baseline, golden_tag
from ml_assets.resources import AlertSinkResource, MLflowResource, StorageResource
from ml_assets.storage import ReadCache

GROUP = "monitoring"
REPORT_STATUSES = ("act", "bug", "watch")


def _link(store, key: str) -> dict:
    """Where the report is (the lake object) and the http link a browser opens from the UI."""
    return {"report": dg.MetadataValue.path(store.uri(key)), "report_url": dg.MetadataValue.url(report_url(key))}


def worth_rendering(day: str, status: str, previous_status: str | None, always: bool) -> bool:
    """The days a person opens a drift report for: a new watch/act episode (the first day of it), every
    day with bug signals, and a weekly look (Mondays); a drift that persists is not re-rendered daily."""
    if always or status == "bug" or dt.date.fromisoformat(day).weekday() == 0:
        return True
    return status in REPORT_STATUSES and status != previous_status


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    delay = contract.labels.delay_days
    d, perf = contract.thresholds.drift, contract.thresholds.performance

    def spec(name: str, asset: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description,
                                 partitions_def=partitions)

    @dg.asset(
        group_name=GROUP, partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["transaction_features", "champion_model"], kinds={"mlflow", "parquet"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[spec("predictions_complete", "batch_predictions", "one score in [0, 1] for every feature row",
                          blocking=True)],
        description="The champion's scores for each day's features; the champion is loaded by alias and its "
        "artifact hash verified first (P6, P8).",
    )
    def batch_predictions(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource):
        store = ReadCache(lake.get_store())  # a run over many days reads each day's window once
        model, version, digest = load_champion(mlflow.registry())
        outcomes, rows = {}, 0
        for pk in context.partition_keys:
            features = store.read_parquet(lake_key("transaction_features", pk))
            preds = score(model, features, contract, version)
            store.write_parquet(lake_key("batch_predictions", pk), preds)
            bad = int((~preds["score"].between(0, 1)).sum() + preds["score"].isna().sum())
            rows += len(preds)
            outcomes[pk] = Outcome(len(preds) == len(features) and not bad,
                                   f"{len(preds)} scores for {len(features)} rows, {bad} invalid")
            partition_metadata(context, pk, {"rows": len(preds), "mean_score": float(preds["score"].mean()),
                                             "flagged_rate": float(preds["prediction"].mean()),
                                             "model_version": version})
        yield dg.MaterializeResult(metadata={"rows": rows, "model_version": version, "artifact_sha256": digest})
        yield from partitioned_check(context, "batch_predictions", "predictions_complete", outcomes)

    @dg.asset(
        group_name=GROUP, partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["transaction_features", "batch_predictions", "training_set", "champion_model", "golden_set"],
        kinds={"pandas", "parquet"}, automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            spec("feature_drift", "drift_report", "M1: no feature the model relies on drifted into the act band"),
            spec("pipeline_bug_signals", "drift_report", "M5: no sign of a broken pipeline (null-rate jump, constant "
                 "column, feature missing at serving, sudden step after a stable day)"),
        ],
        description="Each day's drift verdict against the serving model's training data: PSI, KS / chi-square per "
        "feature weighted by the model's importance (M1), prediction drift (M2), bug-vs-drift signals (M5), distance "
        "from the golden set (M6); small days are judged together with the days before them. The sensor reads it.",
    )
    def drift_report(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource,
                     alerts: AlertSinkResource):
        store = ReadCache(lake.get_store())  # a run over many days reads each day's window once
        registry = mlflow.registry()
        model, version, _ = load_champion(registry)
        tags = registry.version(version).tags
        training_hash = tags["training_set_hash"]
        reference_frame, reference = mlake.reference_sample(store, contract, training_hash)
        importance = importance_from_tags(tags)
        threshold = threshold_of(model)
        ref_scores = mlake.reference_scores((version, training_hash), lambda: score(
            model, reference_frame, contract, version)["score"].to_numpy())
        golden, manifest = load_golden(store, contract)
        golden_ref = mlake.golden_reference(golden, manifest.content_hash, contract)
        reference_days = pd.to_datetime(reference_frame[contract.timestamp], utc=True).dt.date
        calendar_cache = mlake.calendar_cache(training_hash)
        drift_outcomes, bug_outcomes, per = {}, {}, []
        for pk in context.partition_keys:
            frames = mlake.window_frames(store, pk, d.max_window_days)
            before = (dt.date.fromisoformat(pk) - dt.timedelta(days=1)).isoformat()
            previous = mlake.read_verdict(store, before)
            verdict = judge_day(pk, frames, reference, d, d.max_window_days, contract.first_complete_day,
                                importance, golden_ref, d.golden_stale_psi, ref_scores,
                                mlake.window_scores(store, list(frames)), threshold, reference_frame,
                                reference_days, calendar_cache, previous, d.step_accept_days)
            if verdict.status == "bug" and (previous or {}).get("status") != "bug":
                # M5: a broken pipeline alerts once per episode (the day it starts), whatever the trigger.
                alerts.send(Alert(kind="pipeline_bug", summary=f"drift_report {pk}: signs of a broken pipeline, "
                                  f"not drift: {'; '.join(verdict.reasons)}"[:400], run_id=context.run.run_id,
                                  job=context.job_name, steps=["drift_report"],
                                  details={"day": pk, "bug_features": verdict.bug_features}))
            history = mlake.feature_history(store, pk)
            if history:
                verdict.reasons.append("windowed features computed without history that failed ingestion: "
                                       + "; ".join(history.values()))
            record = {**verdict.record(), "champion_version": version, "training_set_hash": training_hash,
                      "golden_version": manifest.version}
            store.write_bytes(mlake.VERDICT.format(day=pk), json.dumps(record, indent=2, default=str).encode())
            store.write_parquet(mlake.FEATURE_TABLE.format(day=pk), verdict.table())
            why = "; ".join(verdict.reasons) or "every judged feature within the watch band"
            drift_outcomes[pk] = Outcome(verdict.status != "act", f"{verdict.status}: {why}")
            bug_outcomes[pk] = Outcome(verdict.status != "bug", f"{verdict.status}: {why}")
            meta = {"status": verdict.status, "rows_judged": verdict.rows, "window_days": verdict.window_days,
                    "window": f"{verdict.window_first} .. {verdict.window_last}", "max_psi": verdict.max_psi,
                    "weighted_drift_score": verdict.weighted_drift_score,
                    "drifted_features": ", ".join(verdict.drifted_features) or "none",
                    "watched_features": ", ".join(verdict.watched_features) or "none",
                    "bug_features": ", ".join(verdict.bug_features) or "none",
                    "golden_stale": verdict.golden_stale, "golden_max_psi": verdict.golden_max_psi,
                    "score_psi": verdict.prediction.get("psi"), "flagged_share": verdict.prediction.get(
                        "current_positive_share"), "reasons": why}
            if verdict.summary is not None:
                meta["features"] = table(verdict.table().drop(columns=["reasons"]))
            partition_metadata(context, pk, meta)
            per.append({"partition": pk, "status": verdict.status, "rows": verdict.rows,
                        "max_psi": verdict.max_psi, "drifted": ", ".join(verdict.drifted_features) or None,
                        "bug": ", ".join(verdict.bug_features) or None, "golden_stale": verdict.golden_stale})
        shared = {"threshold_psi_watch": d.psi_watch, "threshold_psi_act": d.psi_act, "threshold_psi_bug": d.psi_bug,
                  "threshold_min_rows": d.min_rows, "threshold_min_importance": d.min_importance}
        yield dg.MaterializeResult(metadata={
            **shared, "reference_rows": reference.rows, "reference_days": reference.days,
            "champion_version": version, "reference_training_set": training_hash[:12],
            "importance": "recorded on the champion" if importance else "equal weights (none recorded)",
            "golden_version": manifest.version, "warm_up_until": contract.first_complete_day.isoformat(),
            "partitions": table(pd.DataFrame(per))})
        yield from partitioned_check(context, "drift_report", "feature_drift", drift_outcomes,
                                     dg.AssetCheckSeverity.WARN, shared)
        yield from partitioned_check(context, "drift_report", "pipeline_bug_signals", bug_outcomes,
                                     dg.AssetCheckSeverity.ERROR, shared)

    @dg.asset(
        group_name=GROUP, partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["drift_report"], kinds={"evidently", "html"}, automation_condition=dg.AutomationCondition.eager(),
        check_specs=[spec("report_written", "evidently_report", "M7: every day due a report has a whole HTML page in "
                          "the lake (a crash mid-write leaves none, never a truncated one)")],
        config_schema={"always": dg.Field(bool, default_value=False,
                                          description="render every day, not only the days a person will open")},
        description="M7: the Evidently HTML drift report a person opens from the UI, with the day's verdict on top "
        "and Evidently told to use the same method (PSI) and threshold. Rendered off the critical path, for the days "
        "worth opening: drifted or suspicious days, and Mondays (a weekly look); other days say so.",
    )
    def evidently_report(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource):
        store = ReadCache(lake.get_store())  # a run over many days reads each day's window once
        registry = mlflow.registry()
        champion = registry.alias("champion")
        reference_frame, _ = mlake.reference_sample(store, contract, champion.tags["training_set_hash"])
        chosen, headers, currents, skipped = [], {}, {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            for pk in context.partition_keys:
                verdict = mlake.read_verdict(store, pk) or {"day": pk, "status": "unknown"}
                before = mlake.read_verdict(store, (dt.date.fromisoformat(pk) - dt.timedelta(days=1)).isoformat())
                if not worth_rendering(pk, verdict["status"], before["status"] if before else None,
                                       context.op_execution_context.op_config["always"]):
                    skipped[pk] = (f"not rendered: {verdict['status']} day (rendered when the status changes to "
                                   f"watch/act, on every bug day, and on Mondays; config `always` renders every day)")
                    continue
                frames = mlake.window_frames(store, pk, contract.thresholds.drift.max_window_days)
                window = [f for day, f in frames.items() if verdict.get("window_first", pk) <= day <= pk]
                path = Path(tmp) / f"{pk}.html"
                currents[path] = pd.concat(window or [frames.get(pk, pd.DataFrame())])[contract.feature_names]
                headers[path] = verdict_html(verdict)
                chosen.append(pk)
            write_evidently_reports(reference_frame[contract.feature_names], currents,
                                    {p: f"Feature drift {p.stem}" for p in currents}, psi_threshold=d.psi_act,
                                    headers=headers)
            for path in currents:
                store.write_bytes(mlake.REPORT.format(day=path.stem), path.read_bytes())
        for pk in context.partition_keys:
            if pk in skipped:
                partition_metadata(context, pk, {"rendered": False, "why": skipped[pk]})
            else:
                partition_metadata(context, pk, {"rendered": True, **_link(store, mlake.REPORT.format(day=pk))})
        yield dg.MaterializeResult(metadata={"rendered": len(chosen), "skipped": len(skipped),
                                             "method": f"PSI, threshold psi_act {d.psi_act} (as drift_report)"})
        outcomes = {}
        for pk in context.partition_keys:
            key = mlake.REPORT.format(day=pk)
            if pk in skipped:
                outcomes[pk] = Outcome(True, skipped[pk])
            else:
                size = len(store.read_bytes(key)) if store.exists(key) else 0
                outcomes[pk] = Outcome(size > 1000 and store.read_bytes(key).rstrip().endswith(b"</html>"),
                                       f"{store.uri(key)}: {size} bytes")
        yield from partitioned_check(context, "evidently_report", "report_written", outcomes,
                                     dg.AssetCheckSeverity.WARN)

    @dg.asset(
        group_name=GROUP, partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["raw_labels", "champion_model", "golden_set",
              dg.AssetDep("batch_predictions", partition_mapping=dg.TimeWindowPartitionMapping(
                  start_offset=-delay, end_offset=-delay, allow_nonexistent_upstream_partitions=True))],
        kinds={"pandas"}, automation_condition=dg.AutomationCondition.eager(),
        check_specs=[spec("auc_vs_golden", "model_performance", "M3: no confirmed decline: the live AUC's CI is not "
                          "below the golden reference on consecutive disjoint windows")],
        description=f"M3: the scores of day D-{delay} joined with the labels delivered on day D; AUC with a bootstrap "
        "CI on a window pooled until it holds enough of each class, judged against the lower end of the serving "
        "model's golden-set AUC CI; a decline is confirmed on consecutive disjoint windows and stays open until a new "
        "model serves or the AUC is back.",
    )
    def model_performance(context: dg.AssetExecutionContext, lake: StorageResource, mlflow: MLflowResource):
        store = ReadCache(lake.get_store())  # a run over many days reads each day's window once
        registry = mlflow.registry()
        golden, manifest = load_golden(store, contract)
        references: dict[str, tuple[float | None, float | None]] = {}

        def reference(version: str) -> tuple[float | None, float | None]:
            # P1: the scoring version's AUC on the *current* golden version (re-baselined if it has none yet).
            if version not in references:
                tags = registry.version(version).tags
                if golden_tag(manifest.version, "roc_auc_ci_low") not in tags:
                    baseline(registry, version, golden, manifest.version, contract)
                    tags = registry.version(version).tags
                get = lambda m: float(tags[golden_tag(manifest.version, m)]) if golden_tag(  # noqa: E731
                    manifest.version, m) in tags else None
                references[version] = (get("roc_auc"), get("roc_auc_ci_low"))
            return references[version]

        golden_days = (dt.date.fromisoformat(manifest.window_end) - dt.date.fromisoformat(manifest.window_start)).days + 1

        def threshold(version: str) -> float:
            return float(registry.version(version).tags["threshold"])

        outcomes = {}
        for pk in context.partition_keys:
            row = _performance_day(store, pk, reference, threshold, manifest.version)
            row["golden_window_days"] = golden_days
            store.write_parquet(mlake.PERFORMANCE.format(day=pk), pd.DataFrame([row]))
            outcomes[pk] = Outcome(not row["declining"], row["reason"])
            partition_metadata(context, pk, {k: row[k] for k in (
                "scored_day", "labels", "day_roc_auc", "roc_auc", "auc_ci_low", "auc_ci_high", "window_days",
                "window_rows", "window_positives", "precision", "recall", "model_version", "reference_auc",
                "reference_ci_low", "below", "declining", "episode_start", "golden_window_days", "reason")
                if row.get(k) is not None})
        yield dg.MaterializeResult(metadata={
            "golden_version": manifest.version, "threshold_auc_decline": perf.auc_decline,
            "threshold_consecutive_windows": perf.consecutive_windows, "threshold_min_per_class": perf.min_per_class,
            "threshold_max_window_days": perf.max_window_days})
        yield from partitioned_check(context, "model_performance", "auc_vs_golden", outcomes,
                                     dg.AssetCheckSeverity.WARN)

    def _performance_day(store, pk: str, reference, threshold_of_version, golden_version: str) -> dict:
        event_day = (dt.date.fromisoformat(pk) - dt.timedelta(days=delay)).isoformat()
        labels = store.read_parquet(lake_key("raw_labels", pk))
        preds_key = lake_key("batch_predictions", event_day)
        row = {"partition": pk, "scored_day": event_day, "labels": 0, "day_roc_auc": None,
               "golden_version": golden_version}
        if len(labels) and store.exists(preds_key):
            joined = store.read_parquet(preds_key).merge(labels, on=contract.record_id, how="inner")
            version = str(joined["model_version"].iloc[0]) if len(joined) else ""
            if len(joined):
                y = (joined[contract.label] == contract.labels.positive).astype(int).to_numpy()
                day = LabelledDay(event_day, version, threshold_of_version(version), y,
                                  joined["score"].to_numpy(dtype=float))
                mlake.write_labelled_day(store, day, joined[contract.record_id].to_numpy())
                row["labels"] = len(joined)
                if np.unique(y).size == 2:
                    row["day_roc_auc"] = roc_auc(y, day.scores)
        days = mlake.labelled_days(store, event_day, perf.max_window_days)
        window = pool_window(days, perf.min_per_class, perf.max_window_days)
        result = evaluate_window(window, perf.min_per_class, perf.bootstrap_resamples)
        ref_auc, ref_low = reference(result.model_version) if result.model_version else (None, None)
        previous = mlake.previous_states(store, pk, perf.max_window_days * (perf.consecutive_windows + 1))
        state = decline_state(result, ref_low, previous, perf.auc_decline, perf.consecutive_windows)
        row.update({
            "first_day": result.first_day, "last_day": result.last_day, "window_days": result.days,
            "window_rows": result.rows, "window_positives": result.positives, "enough": result.enough,
            "model_version": result.model_version, "roc_auc": result.roc_auc,
            "auc_ci_low": result.auc_ci_low, "auc_ci_high": result.auc_ci_high, "precision": result.precision,
            "recall": result.recall, "reference_auc": ref_auc, "reference_ci_low": ref_low, "below": state.below,
            "below_streak": state.below_streak, "declining": state.declining, "episode_start": state.episode_start,
            "episode_reference": state.episode_reference, "reason": state.reason})
        return row

    return [batch_predictions, drift_report, evidently_report, model_performance]
