"""The ingestion group's asset checks, declared once (`metadata.Check`). Whether each one blocks is the
logic's (`report.BLOCKING`: ingestion records it with every partition and consumers refuse on it); the
outcomes are computed in `report.py`."""

import dagster as dg

from ml_assets.ingestion.report import BLOCKING
from ml_assets.metadata import Check


def _check(name: str, asset: str, description: str) -> Check:
    blocking = BLOCKING[name]
    return Check(name, asset, description, dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                 blocking)


RECORDS_CHECKS = (
    _check("schema_contract", "raw_transactions",
           "D1: rows violating the contract are quarantined; too many fail the partition"),
    _check("null_rates", "raw_transactions",
           "D2: per-column null rate of the delivered rows stays under the contract limit"),
    _check("baseline_stats", "raw_transactions",
           "D2: no null-rate jump over the training baseline's partitions (a broken pipeline)"),
    _check("baseline_drift", "raw_transactions",
           "D2: in-domain values outside the training ranges or categories: drift, a warning for monitoring"),
    _check("row_volume", "raw_transactions",
           "D6/D7: the day's row count is not sharply short of the recent days' (an empty or truncated delivery)"),
)
LABELS_CHECKS = (
    _check("schema_contract", "raw_labels", "D1: label rows violating the contract are quarantined"),
    _check("labels_match_records", "raw_labels",
           "every label refers to a delivered record; labels of quarantined records are quarantined with them"),
)
