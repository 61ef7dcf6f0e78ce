"""The ingestion assets' verdicts and metadata on plain IngestReports, without Dagster: what each
check decides per partition, what the partition's record keeps, and what a run reports."""

from __future__ import annotations

from collections import Counter

import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion import report
from ml_assets.ingestion.baseline import Deviation
from ml_assets.ingestion.ingest import IngestReport, check_records, status_record

CONTRACT = load_contract()


def ingested(partition: str = "2026-01-05", delivered: int = 100, quarantined: int = 0, **kw) -> IngestReport:
    return IngestReport(partition, f"landing/{partition}.csv", "a" * 64, delivered, delivered - quarantined,
                        quarantined, f"raw/{partition}.parquet", "b" * 64, f"quarantine/{partition}.parquet", **kw)


def test_labels_that_followed_their_quarantined_record_do_not_fail_the_labels_day() -> None:
    limit = CONTRACT.thresholds.quarantine_rate_max
    n = int(limit * 1000) + 10  # above the limit when counted
    followed = ingested(delivered=1000, quarantined=n, labels_of_quarantined=n)
    own = ingested("2026-01-06", delivered=1000, quarantined=n, reasons=Counter({"amount: not a number": n}))
    out = report.schema_outcomes([followed, own], CONTRACT)
    assert report.own_quarantine_rate(followed) == 0.0
    assert out["2026-01-05"].passed
    assert f"plus {n} labels of records quarantined earlier" in out["2026-01-05"].description
    assert not out["2026-01-06"].passed
    assert out["2026-01-06"].description.endswith("; top reason: amount: not a number")
    assert out["2026-01-06"].metadata["threshold_quarantine_rate_max"] == limit


def test_a_failed_warning_check_is_recorded_but_does_not_fail_the_partition_record() -> None:
    drifted = ingested(deviation=Deviation(True, drift=["amount: 12% above the training range"]))
    outcomes = report.records_outcomes([drifted], CONTRACT)
    assert outcomes["baseline_stats"]["2026-01-05"].passed
    assert not outcomes["baseline_drift"]["2026-01-05"].passed
    assert "row_volume" in outcomes and outcomes["row_volume"] == {}  # no volume judged: no outcome recorded
    checks = check_records(outcomes, "2026-01-05", report.BLOCKING)
    assert checks["baseline_drift"] == {"passed": False, "description": "amount: 12% above the training range",
                                        "blocking": False}
    assert status_record(drifted, checks, "run-1")["passed"]
    checks["null_rates"]["passed"] = False  # a blocking one fails the record
    assert not status_record(drifted, checks, "run-1")["passed"]


def test_no_baseline_passes_both_baseline_checks_and_says_why() -> None:
    for drift in (False, True):
        outcome = report.baseline_outcomes([ingested()], drift=drift)["2026-01-05"]
        assert outcome.passed and outcome.description.startswith("no baseline yet")
    meta = report.records_check_metadata([ingested()], CONTRACT, None, "file:///lake/baseline.json")
    assert meta["baseline_stats"]["baseline"] == "none yet" and "per_column" not in meta["baseline_stats"]
    meta = report.records_check_metadata([ingested()], CONTRACT, {"partitions": ["2026-01-01", "2026-01-04"]},
                                         "file:///lake/baseline.json")
    assert meta["baseline_drift"]["baseline"] == "file:///lake/baseline.json"
    assert meta["baseline_drift"]["baseline_partitions"] == "2026-01-01 .. 2026-01-04"


def test_orphan_labels_fail_labels_match_records() -> None:
    out = report.labels_outcomes([ingested(orphan_labels=3), ingested("2026-01-06")], CONTRACT)
    assert not out["labels_match_records"]["2026-01-05"].passed
    assert out["labels_match_records"]["2026-01-05"].description == "3 labels without a delivered record"
    assert out["labels_match_records"]["2026-01-06"].passed
    assert report.labels_check_metadata([ingested(orphan_labels=3), ingested(orphan_labels=2)]) == {
        "labels_match_records": {"orphan_labels": 5}}


def test_run_metadata_totals_the_partitions_and_handles_an_empty_run() -> None:
    reports = [ingested(quarantined=10, reasons=Counter({"bad": 10})), ingested("2026-01-06", redelivery=True)]
    meta = report.run_metadata(reports, CONTRACT)
    assert meta["run_partitions"] == "2026-01-05 .. 2026-01-06 (2)"
    assert (meta["run_rows_delivered"], meta["run_rows_valid"], meta["run_rows_quarantined"]) == (200, 190, 10)
    assert meta["run_quarantine_rate"] == pytest.approx(0.05)
    assert meta["redelivered_partitions"] == "2026-01-06"
    assert "run_quarantine_reasons" in meta
    empty = report.run_metadata([], CONTRACT)
    assert empty["run_partitions"] == "none" and empty["run_quarantine_rate"] == 0.0
    assert "run_quarantine_reasons" not in empty
    one = report.partition_metadata(ingested(reused_from={"2026-01-02": 4}))
    assert one["ids_already_ingested"] == "2026-01-02: 4" and one["manifest"] == "none"
