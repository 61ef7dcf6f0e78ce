"""Feature preprocessing fitted on the training split only (T5).

The fitted state is plain data (`to_dict`/`from_dict`, JSON-serialisable) so it travels
with the network in checkpoints, in `preprocessor.json` and in the registered model:
the statistics a model was trained with are the statistics it is served with.

Numeric columns: signed log1p (heavy-tailed amounts become roughly symmetric, negative
values keep their sign), standardised with the fitted mean/std, missing -> 0 (the
fitted mean), clipped to [-10, 10] so one absurd value cannot dominate a logit.
Non-finite values (±inf) are treated as missing.

Categorical columns: values compared as strings; the vocabulary is the sorted set seen
during fit; one-hot. Unseen values and nulls encode as all zeros instead of failing,
because a new merchant category in production must not take scoring down (drift
monitoring is where new values get noticed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

FORMAT_VERSION = 1
CLIP = 10.0


def _signed_log1p(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


def _numeric_values(df: pd.DataFrame, col: str) -> np.ndarray:
    series = df[col]
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        # Already numeric: skip pd.to_numeric, whose fixed cost dominates single-row scoring (P4).
        values = series.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        values[~np.isfinite(values)] = np.nan
        return values
    try:
        values = pd.to_numeric(df[col], errors="raise").to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"numeric feature column {col!r} has non-numeric values (dtype {df[col].dtype}); "
            "declare it as categorical or fix the data upstream"
        ) from exc
    values = values.copy()
    values[~np.isfinite(values)] = np.nan
    return values


def _categorical_values(df: pd.DataFrame, col: str) -> pd.Series:
    series = df[col]
    # Null check first: astype(str) would turn NaN/None into the strings "nan"/"None".
    return series.astype(object).where(series.notna(), None).map(lambda v: None if v is None else str(v))


def _category_positions(df: pd.DataFrame, col: str, index: dict[str, int]) -> np.ndarray:
    """Vocabulary position of each value (compared as a string), -1 for null or unseen values.

    Same mapping as ``_categorical_values(...).map(index)``, without the per-call overhead of
    pandas' where/map, which dominates single-row scoring (P4).
    """
    raw = df[col].to_numpy(dtype=object)
    missing = pd.isna(raw)
    return np.fromiter((-1 if m else index.get(str(v), -1) for v, m in zip(raw, missing, strict=True)),
                       dtype=np.int64, count=len(raw))


def _require_columns(df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"preprocessor input is missing columns {missing}; got columns {list(df.columns)}")


@dataclass(frozen=True)
class Preprocessor:
    numeric: list[str]
    categorical: list[str]
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Preprocessor:
        overlap = set(numeric) & set(categorical)
        if overlap:
            raise ValueError(f"columns declared both numeric and categorical: {sorted(overlap)}")
        _require_columns(df, [*numeric, *categorical])
        means: dict[str, float] = {}
        stds: dict[str, float] = {}
        for col in numeric:
            logged = _signed_log1p(_numeric_values(df, col))
            present = logged[~np.isnan(logged)]
            mean = float(present.mean()) if present.size else 0.0
            std = float(present.std()) if present.size else 1.0
            # A constant (or empty) column carries no information; std 1 keeps it at 0 instead of dividing by 0.
            means[col] = mean
            stds[col] = std if np.isfinite(std) and std > 0 else 1.0
        vocabularies = {col: sorted({v for v in _categorical_values(df, col) if v is not None}) for col in categorical}
        return cls(
            numeric=list(numeric), categorical=list(categorical), means=means, stds=stds, vocabularies=vocabularies
        )

    @property
    def output_names(self) -> list[str]:
        return [*self.numeric, *(f"{col}={value}" for col in self.categorical for value in self.vocabularies[col])]

    @property
    def feature_dim(self) -> int:
        return len(self.numeric) + sum(len(self.vocabularies[col]) for col in self.categorical)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        _require_columns(df, [*self.numeric, *self.categorical])
        n = len(df)
        blocks: list[np.ndarray] = []
        for col in self.numeric:
            z = (_signed_log1p(_numeric_values(df, col)) - self.means[col]) / self.stds[col]
            z = np.nan_to_num(z, nan=0.0)
            blocks.append(np.clip(z, -CLIP, CLIP).reshape(n, 1))
        for col in self.categorical:
            vocab = self.vocabularies[col]
            index = {value: i for i, value in enumerate(vocab)}
            positions = _category_positions(df, col, index)
            onehot = np.zeros((n, len(vocab)), dtype="float64")
            known = positions >= 0
            onehot[np.flatnonzero(known), positions[known]] = 1.0
            blocks.append(onehot)
        if not blocks:
            return np.zeros((n, 0), dtype=np.float32)
        return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "means": {c: float(self.means[c]) for c in self.numeric},
            "stds": {c: float(self.stds[c]) for c in self.numeric},
            "vocabularies": {c: list(self.vocabularies[c]) for c in self.categorical},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported preprocessor format_version {version!r}; expected {FORMAT_VERSION}")
        numeric = list(d["numeric"])
        categorical = list(d["categorical"])
        missing = [c for c in numeric if c not in d["means"] or c not in d["stds"]]
        missing += [c for c in categorical if c not in d["vocabularies"]]
        if missing:
            raise ValueError(f"preprocessor dict has no fitted state for columns {missing}")
        return cls(
            numeric=numeric,
            categorical=categorical,
            means={c: float(d["means"][c]) for c in numeric},
            stds={c: float(d["stds"][c]) for c in numeric},
            vocabularies={c: [str(v) for v in d["vocabularies"][c]] for c in categorical},
        )
