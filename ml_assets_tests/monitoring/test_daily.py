"""One day of the monitoring assets on plain data and a local lake, without Dagster: the check outcomes,
the once-per-episode bug alert, what a verdict keeps in the lake, which days get an Evidently page,
and the join of delayed labels with the scores they label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion.ingest import lake_key
from ml_assets.monitoring import daily
from ml_assets.monitoring import lake as mlake
from ml_assets.monitoring.verdict import DayVerdict
from ml_assets.storage import LocalStore
from ml_assets_tests.conftest import write_contract


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "lake")


def verdict(status: str, reasons: list[str] | None = None, **kw) -> DayVerdict:
    return DayVerdict("2026-03-03", status, 1200, "2026-03-02", "2026-03-03", 2, reasons=list(reasons or []), **kw)


def test_predictions_outcome_fails_on_a_missing_or_invalid_score() -> None:
    preds = pd.DataFrame({"score": [0.1, 0.9, 0.5], "prediction": [0, 1, 0]})
    assert daily.predictions_outcome(preds, 3) == daily.Outcome(True, "3 scores for 3 rows, 0 invalid")
    assert not daily.predictions_outcome(preds, 4).passed  # a feature row without a score
    assert daily.predictions_outcome(preds.assign(score=[0.1, 1.5, 0.5]), 3) == daily.Outcome(
        False, "3 scores for 3 rows, 1 invalid")
    assert not daily.predictions_outcome(preds.assign(score=[0.1, np.nan, 0.5]), 3).passed
    assert daily.predictions_metadata(preds, "7") == {"rows": 3, "mean_score": pytest.approx(0.5),
                                                      "flagged_rate": pytest.approx(1 / 3), "model_version": "7"}


def test_a_broken_pipeline_alerts_on_the_first_day_of_its_episode_only() -> None:
    bug = verdict("bug", ["amount: constant column"], bug_features=["amount"])
    alert = daily.bug_alert("2026-03-03", bug, {"status": "stable"}, "run-1", "daily")
    assert alert is not None and alert.kind == "pipeline_bug" and alert.run_id == "run-1"
    assert alert.summary == "drift_report 2026-03-03: signs of a broken pipeline, not drift: amount: constant column"
    assert alert.details == {"day": "2026-03-03", "bug_features": ["amount"]}
    assert daily.bug_alert("2026-03-03", bug, None, "run-1", "daily") is not None  # no day before: a new episode
    assert daily.bug_alert("2026-03-03", bug, {"status": "bug"}, "run-1", "daily") is None  # the same episode
    assert daily.bug_alert("2026-03-03", verdict("act"), {"status": "stable"}, "run-1", "daily") is None
    long = daily.bug_alert("2026-03-03", verdict("bug", ["x" * 1000]), None, "r", "j")
    assert long is not None and len(long.summary) == 400


def test_a_kept_verdict_carries_its_lineage_and_the_history_it_lacked(store: LocalStore) -> None:
    store.write_bytes("feature_history/2026-03-03.json", json.dumps(
        {"excluded": {"2026-02-27": "2026-02-27 failed ingestion"}}).encode())
    v = verdict("act", ["amount: PSI 0.4"], drifted_features=["amount"], max_psi=0.4)
    daily.keep_verdict(store, "2026-03-03", v, {"champion_version": "3", "training_set_hash": "abc",
                                                "golden_version": "v1"})
    record = mlake.read_verdict(store, "2026-03-03")
    assert record["status"] == "act" and record["champion_version"] == "3" and record["golden_version"] == "v1"
    assert record["reasons"] == ["amount: PSI 0.4", "windowed features computed without history that failed "
                                 "ingestion: 2026-02-27 failed ingestion"]
    drift, bug = daily.drift_outcomes(v)
    assert not drift.passed and bug.passed and drift.description.startswith("act: amount: PSI 0.4; windowed")
    meta = daily.drift_day_metadata(v)
    assert meta["drifted_features"] == "amount" and meta["bug_features"] == "none" and "features" not in meta
    stable_drift, stable_bug = daily.drift_outcomes(verdict("stable"))
    assert stable_drift.passed and stable_bug.passed
    assert stable_drift.description == "stable: every judged feature within the watch band"
    assert not daily.drift_outcomes(verdict("bug"))[1].passed


def test_reports_are_planned_for_the_days_worth_opening(store: LocalStore, tmp_path: Path) -> None:
    contract = load_contract(write_contract(tmp_path / "c.yaml"))
    features = pd.DataFrame({name: [1.0] for name in contract.feature_names})
    # 2026-03-03 is a Tuesday: a persisting act day is not re-rendered; a new one is, and so is every Monday.
    for day, status in (("2026-03-02", "act"), ("2026-03-03", "act"), ("2026-03-04", "stable"),
                        ("2026-03-05", "watch")):
        store.write_bytes(mlake.VERDICT.format(day=day), json.dumps({"day": day, "status": status}).encode())
        store.write_parquet(lake_key("transaction_features", day), features)
    days = ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06"]
    due, skipped = daily.plan_reports(store, contract, days, always=False)
    assert list(due) == ["2026-03-02", "2026-03-05"]
    assert set(skipped) == {"2026-03-03", "2026-03-04", "2026-03-06"}
    assert skipped["2026-03-06"].startswith("not rendered: unknown day")
    assert list(due["2026-03-05"].current.columns) == contract.feature_names
    assert "ml_assets verdict for 2026-03-05: watch" in due["2026-03-05"].header
    assert list(daily.plan_reports(store, contract, days[:4], always=True)[0]) == days[:4]

    assert daily.report_outcome(store, "2026-03-03", skipped["2026-03-03"]).passed
    assert not daily.report_outcome(store, "2026-03-05", None).passed  # due, never written
    store.write_bytes(mlake.REPORT.format(day="2026-03-05"), b"<html>" + b"x" * 2000)
    assert not daily.report_outcome(store, "2026-03-05", None).passed  # truncated
    store.write_bytes(mlake.REPORT.format(day="2026-03-05"), b"<html>" + b"x" * 2000 + b"</html>\n")
    assert daily.report_outcome(store, "2026-03-05", None).passed


def test_delayed_labels_are_joined_with_the_scores_they_label(store: LocalStore, tmp_path: Path) -> None:
    contract = load_contract(write_contract(tmp_path / "c.yaml"))
    ids = [f"r{i}" for i in range(6)]
    store.write_parquet(lake_key("batch_predictions", "2026-03-01"), pd.DataFrame({
        contract.record_id: ids, "score": [0.9, 0.8, 0.7, 0.2, 0.1, 0.3], "model_version": "4"}))
    negative = 1 - contract.labels.positive  # the demo labels are 0 / 1
    labels = [contract.labels.positive] * 3 + [negative] * 2
    store.write_parquet(lake_key("raw_labels", "2026-03-04"), pd.DataFrame({
        contract.record_id: ids[:5], contract.label: labels}))
    seen: list[str] = []
    n, auc = daily.label_day(store, contract, "2026-03-04", "2026-03-01", lambda v: seen.append(v) or 0.5)
    assert (n, auc, seen) == (5, 1.0, ["4"])  # the unlabelled row is left out; every positive outranks
    kept = mlake.labelled_days(store, "2026-03-01", 1)
    assert [(d.day, d.model_version, d.threshold, d.y.tolist()) for d in kept] == [
        ("2026-03-01", "4", 0.5, [1, 1, 1, 0, 0])]
    store.write_parquet(lake_key("raw_labels", "2026-03-05"), pd.DataFrame({
        contract.record_id: ["r9"], contract.label: [contract.labels.positive]}))
    assert daily.label_day(store, contract, "2026-03-05", "2026-03-02", lambda v: 0.5) == (0, None)  # no scores
    row = {"declining": True, "reason": "AUC below", "labels": 5, "day_roc_auc": None, "roc_auc": 0.7}
    assert daily.performance_outcome(row) == daily.Outcome(False, "AUC below")
    assert daily.performance_metadata(row) == {"labels": 5, "roc_auc": 0.7, "declining": True, "reason": "AUC below"}
