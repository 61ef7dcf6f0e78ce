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
                    location: str, versions: list[str]) -> dict[str, Any]:
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
    }


def class_minimum(manifest: GoldenManifest, contract: Contract) -> Outcome:
    """P1: at least min_per_class examples of each class."""
    floor = contract.datasets.golden.min_per_class
    return Outcome(min(manifest.positives, manifest.negatives) >= floor, "",
                   {"positives": manifest.positives, "negatives": manifest.negatives, "threshold_min_per_class": floor})


def baseline_metadata(location: str, rows: int, training_manifest: dict) -> dict[str, Any]:
    """The new baseline: where it lies, on how many rows of which days, from which training set."""
    partitions = training_manifest["partitions"]
    return {"path": path(location), "rows": rows, "partitions": f"{partitions[0]} .. {partitions[-1]} "
            f"({len(partitions)})", "training_set_hash": training_manifest["content_hash"],
            "training_set_checks": ", ".join(f"{k}: {'passed' if v else 'FAILED'}"
                                             for k, v in training_manifest.get("checks", {}).items())}


def baseline_matches(baseline: dict | None, training_manifest: dict, contract: Contract) -> Outcome:
    """D2: the stored baseline is the profile of this training set: its days, every contract column, some rows."""
    if baseline is None:
        return Outcome(False, "no baseline was written", {})
    days, expected = list(baseline.get("partitions", [])), list(training_manifest["partitions"])
    missing = sorted(set(contract.columns) - set(baseline.get("columns", {})))
    problems = ([f"days differ: baseline {len(days)}, training set {len(expected)}"] if days != expected else []) + (
        [f"columns not profiled: {', '.join(missing)}"] if missing else []) + (
        ["no rows"] if not baseline.get("rows") else [])
    return Outcome(not problems, "; ".join(problems) or f"{baseline['rows']} rows over {len(days)} day(s), "
                   f"{len(contract.columns)} columns", {"rows": int(baseline.get("rows") or 0), "days": len(days),
                                                        "training_days": len(expected),
                                                        "columns_missing": ", ".join(missing) or "none"})


def training_metadata(training: pd.DataFrame, manifest: dict, usable: Usable, contract: Contract,
                      location: str) -> dict[str, Any]:
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
