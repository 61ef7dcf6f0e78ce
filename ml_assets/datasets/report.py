"""What golden_set and training_set tell a person: their metadata and the verdicts of their
checks, from the sets and their manifests. Plain functions over plain data; datasets/assets.py
wires them."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets.build import GoldenManifest, dataset_stats
from ml_assets.datasets.lake import GoldenPlan, Usable
from ml_assets.metadata import Outcome, path, table


def feature_summary(df: pd.DataFrame, contract: Contract) -> Any:
    """Null rate, distinct values and (numeric features) mean, median and max of each feature."""
    rows = []
    for name in contract.feature_names:
        col = df[name]
        numeric = name not in contract.categorical_features
        rows.append({"feature": name, "null_rate": col.isna().mean(), "distinct": col.nunique(),
                     "mean": col.mean() if numeric else None, "p50": col.median() if numeric else None,
                     "max": col.max() if numeric else None})
    return table(pd.DataFrame(rows))


def golden_metadata(golden: pd.DataFrame, manifest: GoldenManifest, plan: GoldenPlan, contract: Contract,
                    location: str, versions: list[str], rebaseline: dict[str, str]) -> dict[str, Any]:
    """`location`: where the set lies in the lake; `versions`: every golden version there."""
    return {
        "version": manifest.version,
        "action": "frozen now" if plan.action == "freeze" else "reused (frozen)",
        "reason": plan.reason,
        "holdout": manifest.holdout,
        "content_hash": manifest.content_hash,
        "window": f"{manifest.window_start} .. {manifest.window_end}",
        "entity_fraction": manifest.entity_fraction if manifest.holdout == "entity" else "every entity (time holdout)",
        "threshold_min_per_class": contract.datasets.golden.min_per_class,
        **dataset_stats(golden, contract),
        "feature_stats": feature_summary(golden, contract),
        "path": path(location),
        "other_versions": ", ".join(v for v in versions if v != manifest.version) or "none",
        **rebaseline,
    }


def class_minimum(manifest: GoldenManifest, contract: Contract) -> Outcome:
    """P1: at least min_per_class examples of each class."""
    floor = contract.datasets.golden.min_per_class
    return Outcome(min(manifest.positives, manifest.negatives) >= floor, "",
                   {"positives": manifest.positives, "negatives": manifest.negatives, "threshold_min_per_class": floor})


def baseline_metadata(updated: tuple[str, int] | None) -> dict[str, Any]:
    """`updated`: where the new baseline was written and its rows; None when a check kept it as it was."""
    if updated is None:
        return {"baseline_stats": "not updated: a training_set check failed"}
    return {"baseline_stats": path(updated[0]), "baseline_rows": updated[1]}


def training_metadata(training: pd.DataFrame, manifest: dict, usable: Usable, contract: Contract, location: str,
                      baseline: dict[str, Any]) -> dict[str, Any]:
    partitions = manifest["partitions"]
    return {
        "content_hash": manifest["content_hash"],
        "golden_version": manifest["golden_version"],
        "partitions": f"{partitions[0]} .. {partitions[-1]} ({len(partitions)})",
        "training_window_days": contract.datasets.training_window_days or "all labelled history",
        "excluded_days": table(pd.DataFrame([{"day": d, "why": w} for d, w in sorted(usable.excluded.items())],
                                            columns=["day", "why"])),
        **dataset_stats(training, contract),
        "feature_stats": feature_summary(training, contract),
        "path": path(location),
        **baseline,
    }


def disjoint_from_golden(overlap: dict[str, Any], holdout: str) -> Outcome:
    """P1: the training set shares no record or day (nor, for an entity holdout, entity) with the golden set."""
    return Outcome(overlap["violations"] == 0, f"{overlap['violations']} violation(s) of the {holdout} holdout",
                   {k: str(v) if isinstance(v, list) else v for k, v in overlap.items()})


def features_complete(null_rows: int) -> Outcome:
    """F2: every labelled row found its point-in-time feature row."""
    return Outcome(null_rows == 0, "every row has all features" if not null_rows else
                   f"{null_rows} rows lack features at their event time (missing feature partitions?)",
                   {"rows_missing_features": null_rows})
