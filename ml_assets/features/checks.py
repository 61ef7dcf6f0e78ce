"""The features group's asset checks, declared once (`metadata.Check`); outcomes from `daily.py` and `online.py`."""

import dagster as dg

from ml_assets.features.daily import ASSET
from ml_assets.metadata import Check

ERROR = dg.AssetCheckSeverity.ERROR

COMPLETENESS = Check("completeness", ASSET, "D4: active entities of the day that have features", ERROR, True)
FEATURE_NULLS = Check("feature_nulls", ASSET,
                      "no declared feature is null above the contract's null-rate limit", ERROR, True)
ONLINE_MATCHES_OFFLINE = Check("online_matches_offline", "online_features",
                               "F1: sampled entities serve the same values online as offline", ERROR, True)
