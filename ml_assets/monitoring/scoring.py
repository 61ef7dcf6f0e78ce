"""Load the serving model through the registry (never by path) and score features."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.registry.mlflow_registry import CHAMPION, Registry


def load_champion(registry: Registry) -> tuple[Any, str, str]:
    ref = registry.alias(CHAMPION)
    if ref is None:
        raise LookupError(f"model {registry.model_name} has no '{CHAMPION}' alias: nothing is promoted yet")
    model, digest = registry.load_verified(ref.version)  # refuses a tampered artifact (P8)
    return model, ref.version, digest


def score(model: Any, features: pd.DataFrame, contract: Contract, version: str) -> pd.DataFrame:
    out = model.predict(features[contract.feature_names])
    return pd.DataFrame({
        contract.record_id: features[contract.record_id].to_numpy(),
        contract.entity: features[contract.entity].to_numpy(),
        contract.timestamp: features[contract.timestamp].to_numpy(),
        "score": out["score"].to_numpy(),
        "prediction": out["prediction"].to_numpy(),
        "model_version": version,
    })
