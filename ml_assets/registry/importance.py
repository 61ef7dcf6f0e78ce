"""Which features the model relies on (M1): permutation importance on the golden set.

Computed once per model version at registration and recorded on the version, so drift in a
feature the model hardly uses is reported but does not drive a retrain, and drift in one it
relies on does. Importance is the drop of ROC AUC when the feature's values are shuffled
(averaged over a few seeded shuffles); a feature whose shuffling does not hurt gets 0.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.metrics import roc_auc

IMPORTANCE_TAG = "feature_importance"


def permutation_importance(model: Any, frame: pd.DataFrame, features: list[str], y: np.ndarray, repeats: int = 3,
                           seed: int = 0) -> dict[str, float]:
    """AUC drop per feature when its column is shuffled (>= 0), on `frame` (the golden set)."""
    y = np.asarray(y).astype(int)
    if np.unique(y).size < 2:
        return {f: 0.0 for f in features}
    base_frame = frame[features].reset_index(drop=True)
    base = roc_auc(y, model.predict(base_frame)["score"].to_numpy(dtype=float))
    rng = np.random.default_rng(seed)
    out = {}
    for name in features:
        drops = []
        for _ in range(repeats):
            shuffled = base_frame.copy()
            shuffled[name] = shuffled[name].to_numpy()[rng.permutation(len(shuffled))]
            drops.append(base - roc_auc(y, model.predict(shuffled)["score"].to_numpy(dtype=float)))
        out[name] = max(float(np.mean(drops)), 0.0)
    return out


def shares(importance: dict[str, float]) -> dict[str, float]:
    total = sum(importance.values())
    return {k: (v / total if total > 0 else 1.0 / len(importance)) for k, v in importance.items()}


def to_tag(importance: dict[str, float]) -> str:
    return json.dumps({k: round(v, 6) for k, v in importance.items()}, sort_keys=True)


def from_tags(tags: dict[str, str]) -> dict[str, float] | None:
    """A version's recorded importance, or None for versions registered before it was recorded."""
    raw = tags.get(IMPORTANCE_TAG)
    return {k: float(v) for k, v in json.loads(raw).items()} if raw else None
