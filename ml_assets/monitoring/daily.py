"""One day of each monitoring asset, as plain functions over the lake (an ObjectStore), the model
registry and the contract: what `monitoring/assets.py` does for each partition of a run, with no
Dagster context, so each step is testable on its own.

The statistics and decisions themselves stay where they were: drift.py / verdict.py (a day's drift
verdict), performance.py (the AUC window and the decline state), report.py (the Evidently page).
This module reads a day's inputs, calls them, keeps what the day produced in the lake, and shapes
the result into check outcomes and the metadata a person reads in the UI.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.alerts import Alert
from ml_assets.contract import Contract
from ml_assets.contract.model import Drift, Performance
from ml_assets.datasets.build import GoldenManifest
from ml_assets.ingestion.ingest import lake_key
from ml_assets.metadata import Outcome, table
from ml_assets.metrics import roc_auc
from ml_assets.monitoring import lake as mlake
from ml_assets.monitoring.drift import Reference
from ml_assets.monitoring.performance import LabelledDay, decline_state, evaluate_window, pool_window
from ml_assets.monitoring.report import verdict_html, worth_rendering, write_evidently_reports
from ml_assets.monitoring.scoring import load_champion, score, threshold_of
from ml_assets.monitoring.verdict import DayVerdict, judge_day
from ml_assets.registry.importance import from_tags as importance_from_tags
from ml_assets.registry.mlflow_registry import Registry
from ml_assets.registry.promotion import baseline, golden_tag
from ml_assets.storage import ObjectStore

Golden = tuple[pd.DataFrame, GoldenManifest]


def day_before(day: str) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


# --- batch_predictions -------------------------------------------------------------------------


def score_day(store: ObjectStore, model: Any, contract: Contract, version: str, day: str) -> tuple[pd.DataFrame, Outcome]:
    """The champion's scores for the day's features, kept in the lake, and the `predictions_complete` outcome."""
    features = store.read_parquet(lake_key("transaction_features", day))
    preds = score(model, features, contract, version)
    store.write_parquet(lake_key("batch_predictions", day), preds)
    return preds, predictions_outcome(preds, len(features))


def predictions_outcome(preds: pd.DataFrame, feature_rows: int) -> Outcome:
    """Passed when every feature row has exactly one score, each in [0, 1]."""
    bad = int((~preds["score"].between(0, 1)).sum() + preds["score"].isna().sum())
    return Outcome(len(preds) == feature_rows and not bad, f"{len(preds)} scores for {feature_rows} rows, {bad} invalid")


def predictions_metadata(preds: pd.DataFrame, version: str) -> dict[str, Any]:
    return {"rows": len(preds), "mean_score": float(preds["score"].mean()),
            "flagged_rate": float(preds["prediction"].mean()), "model_version": version}


# --- drift_report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftInputs:
    """What every day of a drift_report run is judged against: the serving model and its references."""

    contract: Contract
    version: str
    training_hash: str
    golden_version: str
    importance: dict[str, float] | None
    threshold: float
    reference_frame: pd.DataFrame
    reference: Reference
    reference_days: pd.Series
    reference_scores: np.ndarray
    golden_reference: Reference
    calendar_cache: dict

    @property
    def lineage(self) -> dict[str, str]:
        """What the day's verdict was judged against, stored with it."""
        return {"champion_version": self.version, "training_set_hash": self.training_hash,
                "golden_version": self.golden_version}


def drift_inputs(store: ObjectStore, contract: Contract, registry: Registry,
                 load_golden: Callable[[], Golden]) -> DriftInputs:
    """The champion (verified), a sample of the data it was trained on and its scores on it, and the golden
    set in force. `load_golden` is called after the champion and its training data are found, so a missing
    champion or reference is the error reported first."""
    model, version, _ = load_champion(registry)
    tags = registry.version(version).tags
    training_hash = tags["training_set_hash"]
    reference_frame, reference = mlake.reference_sample(store, contract, training_hash)
    importance = importance_from_tags(tags)
    threshold = threshold_of(model)
    ref_scores = mlake.reference_scores((version, training_hash), lambda: score(
        model, reference_frame, contract, version)["score"].to_numpy())
    golden, manifest = load_golden()
    golden_ref = mlake.golden_reference(golden, manifest.content_hash, contract)
    reference_days = pd.to_datetime(reference_frame[contract.timestamp], utc=True).dt.date
    return DriftInputs(contract, version, training_hash, manifest.version, importance, threshold, reference_frame,
                       reference, reference_days, ref_scores, golden_ref, mlake.calendar_cache(training_hash))


def judge_drift_day(store: ObjectStore, inputs: DriftInputs, day: str) -> tuple[DayVerdict, dict | None]:
    """The day's verdict (on the day and, when it is small, the days before it), and the day before's
    stored verdict (None when there is none)."""
    contract = inputs.contract
    d = contract.thresholds.drift
    frames = mlake.window_frames(store, day, d.max_window_days)
    previous = mlake.read_verdict(store, day_before(day))
    verdict = judge_day(day, frames, inputs.reference, d, d.max_window_days, contract.first_complete_day,
                        inputs.importance, inputs.golden_reference, d.golden_stale_psi, inputs.reference_scores,
                        mlake.window_scores(store, list(frames)), inputs.threshold, inputs.reference_frame,
                        inputs.reference_days, inputs.calendar_cache, previous, d.step_accept_days)
    return verdict, previous


def bug_alert(day: str, verdict: DayVerdict, previous: dict | None, run_id: str, job: str) -> Alert | None:
    """M5: a broken pipeline alerts once per episode (the day it starts), whatever the trigger."""
    if verdict.status != "bug" or (previous or {}).get("status") == "bug":
        return None
    return Alert(kind="pipeline_bug", summary=f"drift_report {day}: signs of a broken pipeline, not drift: "
                 f"{'; '.join(verdict.reasons)}"[:400], run_id=run_id, job=job, steps=["drift_report"],
                 details={"day": day, "bug_features": verdict.bug_features})


def keep_verdict(store: ObjectStore, day: str, verdict: DayVerdict, lineage: dict[str, str]) -> None:
    """Writes the day's verdict record (which the next day, the report and the sensor read) and its
    per-feature table; first notes in its reasons the history days its features were computed without."""
    history = mlake.feature_history(store, day)
    if history:
        verdict.reasons.append("windowed features computed without history that failed ingestion: "
                               + "; ".join(history.values()))
    record = {**verdict.record(), **lineage}
    store.write_bytes(mlake.VERDICT.format(day=day), json.dumps(record, indent=2, default=str).encode())
    store.write_parquet(mlake.FEATURE_TABLE.format(day=day), verdict.table())


def verdict_reasons(verdict: DayVerdict) -> str:
    return "; ".join(verdict.reasons) or "every judged feature within the watch band"


def drift_outcomes(verdict: DayVerdict) -> tuple[Outcome, Outcome]:
    """The day's `feature_drift` (fails on act) and `pipeline_bug_signals` (fails on bug) outcomes."""
    why = verdict_reasons(verdict)
    return (Outcome(verdict.status != "act", f"{verdict.status}: {why}"),
            Outcome(verdict.status != "bug", f"{verdict.status}: {why}"))


def drift_day_metadata(verdict: DayVerdict) -> dict[str, Any]:
    """The day's own drift_report metadata: what the sensor reads (status, reasons, golden_stale) and a person."""
    meta = {"status": verdict.status, "rows_judged": verdict.rows, "window_days": verdict.window_days,
            "window": f"{verdict.window_first} .. {verdict.window_last}", "max_psi": verdict.max_psi,
            "weighted_drift_score": verdict.weighted_drift_score,
            "drifted_features": ", ".join(verdict.drifted_features) or "none",
            "watched_features": ", ".join(verdict.watched_features) or "none",
            "bug_features": ", ".join(verdict.bug_features) or "none",
            "golden_stale": verdict.golden_stale, "golden_max_psi": verdict.golden_max_psi,
            "score_psi": verdict.prediction.get("psi"), "flagged_share": verdict.prediction.get(
                "current_positive_share"), "reasons": verdict_reasons(verdict)}
    if verdict.summary is not None:
        meta["features"] = table(verdict.table().drop(columns=["reasons"]))
    return meta


def drift_partition_row(day: str, verdict: DayVerdict) -> dict[str, Any]:
    """The day's row in the run's `partitions` table."""
    return {"partition": day, "status": verdict.status, "rows": verdict.rows, "max_psi": verdict.max_psi,
            "drifted": ", ".join(verdict.drifted_features) or None, "bug": ", ".join(verdict.bug_features) or None,
            "golden_stale": verdict.golden_stale}


def drift_thresholds(d: Drift) -> dict[str, Any]:
    """The contract's drift thresholds, shown on the run and on both drift checks."""
    return {"threshold_psi_watch": d.psi_watch, "threshold_psi_act": d.psi_act, "threshold_psi_bug": d.psi_bug,
            "threshold_min_rows": d.min_rows, "threshold_min_importance": d.min_importance}


def drift_run_metadata(inputs: DriftInputs, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {**drift_thresholds(inputs.contract.thresholds.drift), "reference_rows": inputs.reference.rows,
            "reference_days": inputs.reference.days, "champion_version": inputs.version,
            "reference_training_set": inputs.training_hash[:12],
            "importance": "recorded on the champion" if inputs.importance else "equal weights (none recorded)",
            "golden_version": inputs.golden_version,
            "warm_up_until": inputs.contract.first_complete_day.isoformat(), "partitions": table(pd.DataFrame(rows))}


# --- evidently_report --------------------------------------------------------------------------


@dataclass(frozen=True)
class DueReport:
    """A day due a report: the rows its verdict judged and the verdict shown on top of the page."""

    current: pd.DataFrame
    header: str


def plan_reports(store: ObjectStore, contract: Contract, days: list[str],
                 always: bool) -> tuple[dict[str, DueReport], dict[str, str]]:
    """The days worth rendering (see `report.worth_rendering`), and for every other day why it is not."""
    due, skipped = {}, {}
    for day in days:
        verdict = mlake.read_verdict(store, day) or {"day": day, "status": "unknown"}
        before = mlake.read_verdict(store, day_before(day))
        if not worth_rendering(day, verdict["status"], before["status"] if before else None, always):
            skipped[day] = (f"not rendered: {verdict['status']} day (rendered when the status changes to "
                            f"watch/act, on every bug day, and on Mondays; config `always` renders every day)")
            continue
        frames = mlake.window_frames(store, day, contract.thresholds.drift.max_window_days)
        window = [f for d, f in frames.items() if verdict.get("window_first", day) <= d <= day]
        due[day] = DueReport(pd.concat(window or [frames.get(day, pd.DataFrame())])[contract.feature_names],
                             verdict_html(verdict))
    return due, skipped


def render_reports(store: ObjectStore, reference: pd.DataFrame, due: dict[str, DueReport], psi_threshold: float) -> None:
    """Renders the due days' Evidently pages and writes each whole page to the lake."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {Path(tmp) / f"{day}.html": report for day, report in due.items()}
        write_evidently_reports(reference, {p: r.current for p, r in paths.items()},
                                {p: f"Feature drift {p.stem}" for p in paths}, psi_threshold=psi_threshold,
                                headers={p: r.header for p, r in paths.items()})
        for path in paths:
            store.write_bytes(mlake.REPORT.format(day=path.stem), path.read_bytes())


def report_outcome(store: ObjectStore, day: str, skipped: str | None) -> Outcome:
    """Passed for a day not due a report, or when the lake holds its whole HTML page."""
    if skipped is not None:
        return Outcome(True, skipped)
    key = mlake.REPORT.format(day=day)
    size = len(store.read_bytes(key)) if store.exists(key) else 0
    return Outcome(size > 1000 and store.read_bytes(key).rstrip().endswith(b"</html>"),
                   f"{store.uri(key)}: {size} bytes")


# --- model_performance -------------------------------------------------------------------------

PERFORMANCE_METADATA = (
    "scored_day", "labels", "day_roc_auc", "roc_auc", "auc_ci_low", "auc_ci_high", "window_days", "window_rows",
    "window_positives", "precision", "recall", "model_version", "reference_auc", "reference_ci_low", "below",
    "declining", "episode_start", "golden_window_days", "reason")
"""The fields of a day's model_performance row shown as its metadata (the sensor reads several)."""


def golden_references(registry: Registry, golden: Golden,
                      contract: Contract) -> Callable[[str], tuple[float | None, float | None]]:
    """A model version -> its AUC and the low end of its CI on the golden version in force (P1), computed and
    recorded on the version first when it has none yet; each version is looked up once per run."""
    frame, manifest = golden
    references: dict[str, tuple[float | None, float | None]] = {}

    def reference(version: str) -> tuple[float | None, float | None]:
        if version not in references:
            tags = registry.version(version).tags
            if golden_tag(manifest.version, "roc_auc_ci_low") not in tags:
                baseline(registry, version, frame, manifest.version, contract)
                tags = registry.version(version).tags
            get = lambda m: float(tags[golden_tag(manifest.version, m)]) if golden_tag(  # noqa: E731
                manifest.version, m) in tags else None
            references[version] = (get("roc_auc"), get("roc_auc_ci_low"))
        return references[version]

    return reference


def golden_window_days(manifest: GoldenManifest) -> int:
    return (dt.date.fromisoformat(manifest.window_end) - dt.date.fromisoformat(manifest.window_start)).days + 1


def label_day(store: ObjectStore, contract: Contract, day: str, event_day: str,
              threshold_of_version: Callable[[str], float]) -> tuple[int, float | None]:
    """Joins the labels delivered on `day` with the scores of `event_day`, keeps the labelled day in the lake;
    the number of labelled rows and that day's own AUC (None with one class or none)."""
    labels = store.read_parquet(lake_key("raw_labels", day))
    preds_key = lake_key("batch_predictions", event_day)
    if not (len(labels) and store.exists(preds_key)):
        return 0, None
    joined = store.read_parquet(preds_key).merge(labels, on=contract.record_id, how="inner")
    if not len(joined):
        return 0, None
    version = str(joined["model_version"].iloc[0])
    y = (joined[contract.label] == contract.labels.positive).astype(int).to_numpy()
    labelled = LabelledDay(event_day, version, threshold_of_version(version), y, joined["score"].to_numpy(dtype=float))
    mlake.write_labelled_day(store, labelled, joined[contract.record_id].to_numpy())
    return len(joined), roc_auc(y, labelled.scores) if np.unique(y).size == 2 else None


def performance_day(store: ObjectStore, contract: Contract, registry: Registry, day: str,
                    reference: Callable[[str], tuple[float | None, float | None]], golden: GoldenManifest) -> dict:
    """M3 for one partition: the scores of day D-delay joined with the labels delivered on D, the AUC on a window
    pooled until it holds enough of each class, and the decline state against the golden reference; the row
    is kept in the lake (the next days read it) and returned."""
    perf = contract.thresholds.performance
    event_day = (dt.date.fromisoformat(day) - dt.timedelta(days=contract.labels.delay_days)).isoformat()
    labels, day_auc = label_day(store, contract, day, event_day,
                                lambda v: float(registry.version(v).tags["threshold"]))
    row = {"partition": day, "scored_day": event_day, "labels": labels, "day_roc_auc": day_auc,
           "golden_version": golden.version}
    result = evaluate_window(pool_window(mlake.labelled_days(store, event_day, perf.max_window_days),
                                         perf.min_per_class, perf.max_window_days),
                             perf.min_per_class, perf.bootstrap_resamples)
    ref_auc, ref_low = reference(result.model_version) if result.model_version else (None, None)
    previous = mlake.previous_states(store, day, perf.max_window_days * (perf.consecutive_windows + 1))
    state = decline_state(result, ref_low, previous, perf.auc_decline, perf.consecutive_windows)
    row.update({
        "first_day": result.first_day, "last_day": result.last_day, "window_days": result.days,
        "window_rows": result.rows, "window_positives": result.positives, "enough": result.enough,
        "model_version": result.model_version, "roc_auc": result.roc_auc,
        "auc_ci_low": result.auc_ci_low, "auc_ci_high": result.auc_ci_high, "precision": result.precision,
        "recall": result.recall, "reference_auc": ref_auc, "reference_ci_low": ref_low, "below": state.below,
        "below_streak": state.below_streak, "declining": state.declining, "episode_start": state.episode_start,
        "episode_reference": state.episode_reference, "reason": state.reason,
        "golden_window_days": golden_window_days(golden)})
    store.write_parquet(mlake.PERFORMANCE.format(day=day), pd.DataFrame([row]))
    return row


def performance_outcome(row: dict) -> Outcome:
    return Outcome(not row["declining"], row["reason"])


def performance_metadata(row: dict) -> dict[str, Any]:
    return {k: row[k] for k in PERFORMANCE_METADATA if row.get(k) is not None}


def performance_thresholds(perf: Performance) -> dict[str, Any]:
    return {"threshold_auc_decline": perf.auc_decline, "threshold_consecutive_windows": perf.consecutive_windows,
            "threshold_min_per_class": perf.min_per_class, "threshold_max_window_days": perf.max_window_days}
