"""Declared feature logic (F1): the one code path that turns validated records into features.

Training reads these values through Feast's offline store, serving through its online
store; both were written by this function, so there is no second implementation to skew.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ml_assets.contract import Contract, window_to_timedelta


def derive(df: pd.DataFrame, contract: Contract) -> dict[str, pd.Series]:
    out: dict[str, pd.Series] = {}
    for d in contract.features.derived:
        a = df[d.args[0]]
        if d.op == "not_equal":
            out[d.name] = (a != df[d.args[1]]).astype("int64")
        elif d.op == "equal":
            out[d.name] = (a == df[d.args[1]]).astype("int64")
        elif d.op == "hour":
            out[d.name] = pd.to_datetime(a, utc=True).dt.hour.astype("int64")
        elif d.op == "day_of_week":
            out[d.name] = pd.to_datetime(a, utc=True).dt.dayofweek.astype("int64")
    return out


def aggregate(df: pd.DataFrame, contract: Contract) -> dict[str, np.ndarray]:
    """Per-entity aggregates over the window (t - w, t], including the record itself."""
    entity, ts = contract.entity, contract.timestamp
    ordered = df.sort_values([entity, ts], kind="stable")
    out: dict[str, np.ndarray] = {}
    for spec in contract.features.aggregates:
        series = ordered.set_index(ts).groupby(ordered[entity].to_numpy(), sort=False)[spec.column]
        for w in spec.windows:
            rolling = series.rolling(window_to_timedelta(w), closed="right")
            for fn in spec.functions:
                values = getattr(rolling, fn)().to_numpy()
                # groupby(sort=False).rolling keeps group order, which is our sorted order.
                col = np.empty(len(df), dtype="float64")
                col[df.index.get_indexer(ordered.index)] = values
                out[f"{spec.column}_{fn}_{w}"] = col
    return out


def max_window(contract: Contract) -> dt.timedelta:
    windows = [window_to_timedelta(w) for a in contract.features.aggregates for w in a.windows]
    return max(windows, default=dt.timedelta(0))


def compute_features(records: pd.DataFrame, contract: Contract, day: dt.date | None = None) -> pd.DataFrame:
    """Features for the records of `day` (all records when None).

    `records` must also hold the entity's history for the longest window before `day`, or
    the aggregates of the first hours would be computed on a truncated history.
    """
    records = records.reset_index(drop=True)
    ts = pd.to_datetime(records[contract.timestamp], utc=True).astype("datetime64[us, UTC]")
    records = records.assign(**{contract.timestamp: ts})
    frame = {
        contract.record_id: records[contract.record_id].astype(str),
        contract.entity: records[contract.entity].astype(str),
        contract.timestamp: ts,
    }
    for name in contract.features.passthrough:
        col = records[name]
        frame[name] = col.astype(str) if name in contract.categorical_features else col.astype("float64")
    frame.update(derive(records, contract))
    frame.update(aggregate(records, contract))
    features = pd.DataFrame(frame)
    if day is not None:
        features = features[features[contract.timestamp].dt.date == day]
    return features.sort_values([contract.timestamp, contract.record_id], kind="stable").reset_index(drop=True)
