"""Load the serving model through the registry (never by path) and score features."""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.registry.mlflow_registry import CHAMPION, Registry

# Loaded models by (registry, version, verified sha256). The artifact is downloaded and hashed on every
# load (P8: verified before scoring); only the slow part, unpickling the pipeline and importing torch,
# is skipped when the verified bytes are the ones already in memory.
_LOADED: OrderedDict[tuple[str, str, str, str], Any] = OrderedDict()
_KEEP = 4


def load_verified(registry: Registry, version: str) -> tuple[Any, str]:
    import mlflow

    with tempfile.TemporaryDirectory(prefix="ml_assets_model_") as tmp:
        local, digest = registry.verify(version, Path(tmp) / "model")  # raises IntegrityError when tampered
        key = (registry.tracking_uri, registry.model_name, str(version), digest)
        if key not in _LOADED:
            _LOADED[key] = mlflow.pyfunc.load_model(str(local))  # the pipeline loads its files into memory here
            while len(_LOADED) > _KEEP:
                _LOADED.popitem(last=False)
        _LOADED.move_to_end(key)
        return _LOADED[key], digest


def load_champion(registry: Registry) -> tuple[Any, str, str]:
    ref = registry.alias(CHAMPION)
    if ref is None:
        raise LookupError(f"model {registry.model_name} has no '{CHAMPION}' alias: nothing is promoted yet")
    model, digest = load_verified(registry, ref.version)
    return model, ref.version, digest


def threshold_of(model: Any) -> float:
    return float(model.unwrap_python_model().threshold)


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
