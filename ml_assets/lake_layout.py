"""Which asset owns which part of the lake, and the few places data flows back against the graph.

Every object in the lake belongs to exactly the assets named here (by key prefix). An asset may write
only its own area and read its own area plus the areas of its declared inputs (the IO manager hands
those over as function parameters) — `storage.ScopedStore` enforces it, so an asset that reads data
it did not declare fails at once with the key it tried, and the lineage in the UI is the lineage of the data.

Feedback is the one exception, declared here and nowhere else: a closed loop reads, on day D, what a
*later* stage of the loop wrote for an earlier day or model generation (ingestion's D2 checks use the
profile of the last training set; the datasets leave out days whose drift verdict was a pipeline bug).
Drawn as edges these would be cycles, which Dagster (rightly) refuses; they are shown on the reading
asset instead (description and metadata) and tested like every other read.
"""

from __future__ import annotations

# Prefixes ending in "/" are directories; an asset may own several (its quarantine, its records). A prefix
# shared by two assets (ingestion's staging area) belongs to both.
AREAS: dict[str, tuple[str, ...]] = {
    "raw_transactions": ("raw_transactions/", "quarantine/raw_transactions/", "ingestion_status/raw_transactions/",
                         "ingestion_index/raw_transactions/", "staging/"),
    "raw_labels": ("raw_labels/", "quarantine/raw_labels/", "ingestion_status/raw_labels/",
                   "ingestion_index/raw_labels/", "staging/"),
    "transaction_features": ("transaction_features/", "feature_history/"),
    "online_features": (),
    "golden_set": ("golden_set/",),
    "training_set": ("training_set/",),
    "training_baseline": ("baseline/",),
    "model_checkpoint": ("model_checkpoint/",),
    "champion_golden_metrics": (),
    "registered_model": (),
    "champion_model": (),
    "batch_predictions": ("batch_predictions/",),
    "drift_report": ("drift_report/",),
    "evidently_report": ("reports/drift_report/",),
    "model_performance": ("model_performance/", "delayed_labels/", "reports/replay/"),
}

# reader -> {area it reads against the graph's direction: why}
FEEDBACK: dict[str, dict[str, str]] = {
    "raw_transactions": {
        "training_baseline": "D2 compares each day with the profile of the last training set (written by a later "
                             "stage, for earlier days)",
    },
    "golden_set": {
        "drift_report": "days whose drift verdict was a pipeline bug are left out (verdicts of earlier days)",
    },
    "training_set": {
        "drift_report": "days whose drift verdict was a pipeline bug are left out (verdicts of earlier days)",
    },
    "champion_golden_metrics": {
        "champion_model": "the champion being scored is the one an earlier retrain promoted (read from MLflow, "
                          "not the lake)",
    },
}


class UndeclaredAccess(PermissionError):
    """An asset touched a part of the lake it neither owns nor declared as an input."""


def owners_of(key: str) -> set[str]:
    """The assets whose area holds `key` (the longest matching prefix wins; a shared prefix has several)."""
    best, owners = -1, set()
    for asset, prefixes in AREAS.items():
        for prefix in prefixes:
            if key.startswith(prefix) or key + "/" == prefix:
                if len(prefix) > best:
                    best, owners = len(prefix), {asset}
                elif len(prefix) == best:
                    owners.add(asset)
    return owners


def feedback_of(asset: str) -> dict[str, str]:
    return dict(FEEDBACK.get(asset, {}))


def feedback_text(asset: str) -> str:
    """The reader's feedback inputs, for its description in the UI."""
    return "; ".join(f"{area}: {why}" for area, why in FEEDBACK.get(asset, {}).items()) or "none"
