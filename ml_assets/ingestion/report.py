"""What the ingestion assets tell a person and record per partition: each check's outcome per
partition, the run's and each partition's metadata, and the metadata shared by a check's
partitions. Plain functions over the `IngestReport`s of a run; ingestion/assets.py wires them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.ingestion.ingest import IngestReport
from ml_assets.metadata import Outcome, table
from ml_assets.storage import ObjectStore

# Checks that stop downstream steps when they fail; baseline_drift only warns (drift is for monitoring).
BLOCKING = {"schema_contract": True, "null_rates": True, "baseline_stats": True, "baseline_drift": False,
            "row_volume": True, "labels_match_records": True}

Outcomes = dict[str, dict[str, Outcome]]  # check name -> partition -> outcome


def own_quarantine_rate(r: IngestReport) -> float:
    """The share of rows quarantined for what is wrong with this delivery itself. Labels whose record was
    quarantined days earlier follow that record into quarantine, but they are that day's incident (already
    failed and alerted then), not a fault of the label file: counting them would fail the labels day too."""
    own = r.quarantined - r.labels_of_quarantined
    return own / r.delivered if r.delivered else 0.0


def schema_outcomes(reports: list[IngestReport], contract: Contract) -> dict[str, Outcome]:
    limit = contract.thresholds.quarantine_rate_max
    return {r.partition: Outcome(
        own_quarantine_rate(r) <= limit,
        f"quarantine rate {own_quarantine_rate(r):.4%} ({r.quarantined - r.labels_of_quarantined} of {r.delivered} "
        f"rows{f'; plus {r.labels_of_quarantined} labels of records quarantined earlier' if r.labels_of_quarantined else ''}) "
        f"{'within' if own_quarantine_rate(r) <= limit else 'above'} thresholds.quarantine_rate_max {limit:.2%}"
        + (f"; top reason: {r.reasons.most_common(1)[0][0]}" if r.reasons else ""),
        {"quarantine_rate": r.quarantine_rate, "rows_quarantined": r.quarantined,
         "threshold_quarantine_rate_max": limit}) for r in reports}


def null_outcomes(reports: list[IngestReport], contract: Contract) -> dict[str, Outcome]:
    limit = contract.thresholds.null_rate_max
    nullable = {c for c, spec in contract.columns.items() if spec.nullable}
    out = {}
    for r in reports:
        over = {c: rate for c, rate in r.null_rates.items() if c not in nullable and rate > limit}
        out[r.partition] = Outcome(
            not over,
            "null rates above thresholds.null_rate_max {:.2%}: {}".format(
                limit, ", ".join(f"{c} {v:.2%}" for c, v in over.items())) if over
            else f"every non-nullable column within thresholds.null_rate_max {limit:.2%}",
            {"max_null_rate": max(r.null_rates.values(), default=0.0), "threshold_null_rate_max": limit})
    return out


def baseline_outcomes(reports: list[IngestReport], drift: bool) -> dict[str, Outcome]:
    out = {}
    for r in reports:
        dev = r.deviation
        if dev is None or not dev.has_baseline:
            out[r.partition] = Outcome(True, "no baseline yet (it is written when training_set materializes)")
        elif drift:
            out[r.partition] = Outcome(dev.drift_free, "; ".join(dev.drift) if dev.drift else
                                       "values within the training ranges and categories",
                                       {"drift_signals": len(dev.drift)})
        else:
            text = "; ".join(dev.offenders) if dev.offenders else (
                dev.undecided or "null rates within the baseline partitions' (thresholds.baseline.null_rate_*)")
            out[r.partition] = Outcome(dev.passed, text, {"null_rate_jumps": len(dev.offenders)})
    return out


def volume_outcomes(reports: list[IngestReport]) -> dict[str, Outcome]:
    return {r.partition: Outcome(r.volume.passed, r.volume.description, {
        "rows_delivered": r.delivered, "expected_rows": r.volume.expected, "minimum_rows": r.volume.floor,
        "history_days": len(r.volume.history)}) for r in reports if r.volume is not None}


def label_match_outcomes(reports: list[IngestReport]) -> dict[str, Outcome]:
    return {r.partition: Outcome(
        r.orphan_labels == 0,
        (f"{r.orphan_labels} labels without a delivered record" if r.orphan_labels else
         "every label matches a delivered record")
        + (f"; {r.labels_of_quarantined} labels of quarantined records were quarantined with them"
           if r.labels_of_quarantined else ""),
        {"orphan_labels": r.orphan_labels, "labels_of_quarantined_records": r.labels_of_quarantined})
        for r in reports}


def records_outcomes(reports: list[IngestReport], contract: Contract) -> Outcomes:
    """raw_transactions' checks, judged on the staged partitions before any is published."""
    return {"schema_contract": schema_outcomes(reports, contract), "null_rates": null_outcomes(reports, contract),
            "baseline_stats": baseline_outcomes(reports, drift=False),
            "baseline_drift": baseline_outcomes(reports, drift=True),
            "row_volume": volume_outcomes(reports)}


def labels_outcomes(reports: list[IngestReport], contract: Contract) -> Outcomes:
    """raw_labels' checks, judged on the staged partitions before any is published."""
    return {"schema_contract": schema_outcomes(reports, contract), "labels_match_records": label_match_outcomes(reports)}


def run_metadata(reports: list[IngestReport], contract: Contract) -> dict[str, Any]:
    delivered = sum(r.delivered for r in reports)
    quarantined = sum(r.quarantined for r in reports)
    rows = pd.DataFrame([
        {"partition": r.partition, "delivered": r.delivered, "valid": r.valid, "quarantined": r.quarantined,
         "source_sha256": r.source_sha256[:12], "output_sha256": r.output_sha256[:12]} for r in reports])
    reasons = sum((r.reasons for r in reports), start=Counter())
    # Run totals carry a run_ prefix: each partition's own rows_* (partition_metadata) sit next to them.
    meta = {
        "run_partitions": f"{reports[0].partition} .. {reports[-1].partition} ({len(reports)})" if reports else "none",
        "run_rows_delivered": delivered,
        "run_rows_valid": delivered - quarantined,
        "run_rows_quarantined": quarantined,
        "run_quarantine_rate": quarantined / delivered if delivered else 0.0,
        "threshold_quarantine_rate_max": contract.thresholds.quarantine_rate_max,
        "per_partition": table(rows),
        "sources": "\n".join(r.source for r in reports),
        "redelivered_partitions": ", ".join(r.partition for r in reports if r.redelivery) or "none",
        "published_via": "staging: every partition's counts verified before any was published (D6); "
                         "a failure while publishing restores the lake",
    }
    if reasons:
        meta["run_quarantine_reasons"] = table(pd.DataFrame(reasons.most_common(20), columns=["reason", "rows"]))
    return meta


def partition_metadata(r: IngestReport) -> dict[str, Any]:
    """One partition's counts, hashes and files, recorded against that partition."""
    meta = {
        "rows_delivered": r.delivered, "rows_valid": r.valid, "rows_quarantined": r.quarantined,
        "quarantine_rate": r.quarantine_rate, "source": r.source, "source_sha256": r.source_sha256,
        "output_sha256": r.output_sha256, "quarantine_file": r.quarantine_key, "redelivery": r.redelivery,
        "extra_columns": ", ".join(r.extra_columns) or "none",
        "manifest": f"{r.manifest['key']} ({r.manifest['rows']} rows, sha256 matches)" if r.manifest else "none",
    }
    if r.reused_from:
        meta["ids_already_ingested"] = ", ".join(f"{p}: {n}" for p, n in r.reused_from.items())
    if r.reasons:
        meta["quarantine_reasons"] = table(pd.DataFrame(r.reasons.most_common(10), columns=["reason", "rows"]))
    return meta


def records_check_metadata(reports: list[IngestReport], contract: Contract, baseline: dict | None,
                           baseline_uri: str) -> dict[str, dict[str, Any]]:
    """The thresholds (and the baseline) raw_transactions' checks applied, shared by all their partitions."""
    b = contract.thresholds.baseline
    base_meta = {
        "baseline": baseline_uri if baseline else "none yet",
        "baseline_partitions": f"{baseline['partitions'][0]} .. {baseline['partitions'][-1]}"
        if baseline and baseline["partitions"] else "-"}
    rows = [{"partition": r.partition, **row} for r in reports if r.deviation for row in r.deviation.rows]
    return {
        "baseline_stats": {**base_meta, "threshold_null_rate_jump_max": b.null_rate_jump_max,
                           "threshold_null_rate_confidence": b.null_rate_confidence,
                           "threshold_min_rows": b.min_rows,
                           **({"per_column": table(pd.DataFrame(rows))} if rows else {})},
        "baseline_drift": {**base_meta, "threshold_out_of_range_share_max": b.out_of_range_share_max,
                           "threshold_range_margin": b.range_margin},
        "row_volume": {"threshold_volume_drop_max": contract.ingestion.volume_drop_max,
                       "volume_window_days": contract.ingestion.volume_window_days,
                       "volume_min_history_days": contract.ingestion.volume_min_history_days},
    }


def labels_check_metadata(reports: list[IngestReport]) -> dict[str, dict[str, Any]]:
    return {"labels_match_records": {"orphan_labels": sum(r.orphan_labels for r in reports)}}


def count_positives(lake: ObjectStore, reports: list[IngestReport], contract: Contract) -> int:
    """Positive labels among the published valid label rows of the run."""
    positives = 0
    for r in reports:
        if r.valid:
            labels = lake.read_parquet(r.output_key, columns=[contract.label])
            positives += int((labels[contract.label] == contract.labels.positive).sum())
    return positives
