"""The datasets group's asset checks, declared once (`metadata.Check`); outcomes from `report.py`. Every one
guards what a model learns from or is judged on, so every one blocks."""

import dagster as dg

from ml_assets.metadata import Check

ERROR = dg.AssetCheckSeverity.ERROR

CLASS_MINIMUM = Check("class_minimum", "golden_set", "P1: at least min_per_class examples of each class", ERROR,
                      True)
DISJOINT_FROM_GOLDEN_SET = Check(
    "disjoint_from_golden_set", "training_set", "P1: no record or day of the golden set (nor, for an entity "
    "holdout, any of its entities) is in the training set", ERROR, True)
FEATURES_COMPLETE = Check("features_complete", "training_set",
                          "F2: every labelled row found its point-in-time feature row", ERROR, True)
BASELINE_MATCHES_TRAINING_SET = Check(
    "baseline_matches_training_set", "training_baseline", "D2: the baseline profiles every contract column over "
    "exactly the training set's days, on more than zero rows", ERROR, True)
