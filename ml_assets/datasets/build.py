"""Training and golden sets (F2, P1).

The golden set is frozen: built once per version from a reserved share of entities over
the last labelled days, and never rebuilt until its version is bumped. The training set
excludes the golden entities and the golden window, so the two are disjoint in entity
and in time, and a check proves it on every build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ml_assets.contract import Contract


class GoldenSetError(ValueError):
    """The data cannot supply a golden set that meets the contract."""


@dataclass(frozen=True)
class GoldenManifest:
    version: str
    window_start: str
    window_end: str
    entity_fraction: float
    seed: int
    rows: int
    positives: int
    negatives: int
    content_hash: str
    created_at: str

    def to_dict(self) -> dict:
        return asdict(self)


def content_hash(df: pd.DataFrame) -> str:
    """Order-sensitive hash of values and column names, independent of the file format."""
    h = hashlib.sha256(",".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def golden_entities(entities: pd.Series, fraction: float, seed: int) -> pd.Series:
    """Deterministic share of entities reserved for evaluation (by hash, not by sampling)."""
    def bucket(e: str) -> float:
        return int.from_bytes(hashlib.sha256(f"{seed}:{e}".encode()).digest()[:8], "little") / 2**64

    uniq = pd.Series(entities.unique())
    reserved = set(uniq[uniq.map(bucket) < fraction])
    return entities.isin(reserved)


def labeled_records(transactions: pd.DataFrame, labels: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Entity rows for training: id, entity, event time and label of every labelled record.

    Records from the warm-up days are left out: their windowed aggregates saw less history
    than a full window, so they describe a distribution the model never meets in service.
    """
    keys = transactions[[contract.record_id, contract.entity, contract.timestamp]]
    out = keys.merge(labels[[contract.record_id, contract.label]], on=contract.record_id, how="inner", validate="1:1")
    out[contract.timestamp] = pd.to_datetime(out[contract.timestamp], utc=True).astype("datetime64[us, UTC]")
    out = out[out[contract.timestamp].dt.date >= contract.first_complete_day]
    return out.sort_values([contract.timestamp, contract.record_id], kind="stable").reset_index(drop=True)


def golden_window(labeled: pd.DataFrame, contract: Contract) -> tuple[dt.date, dt.date]:
    days = sorted(labeled[contract.timestamp].dt.date.unique())
    n = contract.datasets.golden.window_days
    if len(days) < n + 1:
        raise GoldenSetError(
            f"golden window needs {n} labelled days plus at least one day for training; "
            f"found {len(days)} labelled days ({days[0] if days else '-'} .. {days[-1] if days else '-'})"
        )
    return days[-n], days[-1]


def golden_pool(labeled: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, dt.date, dt.date]:
    g = contract.datasets.golden
    start, end = golden_window(labeled, contract)
    day = labeled[contract.timestamp].dt.date
    mask = golden_entities(labeled[contract.entity], g.entity_fraction, g.seed) & (day >= start) & (day <= end)
    return labeled[mask].reset_index(drop=True), start, end


def stratified_golden(pool: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Every positive of the pool and `negatives_per_positive` negatives for each, sampled."""
    g = contract.datasets.golden
    pos = pool[pool[contract.label] == contract.labels.positive]
    neg = pool[pool[contract.label] != contract.labels.positive]
    if len(pos) < g.min_per_class or len(neg) < g.min_per_class:
        raise GoldenSetError(
            f"golden set version {g.version} needs at least {g.min_per_class} examples per class; the golden pool "
            f"({g.entity_fraction:.0%} of entities over the last {g.window_days} labelled days) holds {len(pos)} "
            f"positives and {len(neg)} negatives. Simulate/deliver more days or entities, or lower "
            f"datasets.golden.min_per_class in the contract."
        )
    n_neg = min(len(neg), max(g.min_per_class, len(pos) * g.negatives_per_positive))
    neg = neg.sample(n=n_neg, random_state=np.random.RandomState(g.seed))
    out = pd.concat([pos, neg]).sort_values([contract.timestamp, contract.record_id], kind="stable")
    return out.reset_index(drop=True)


def training_pool(labeled: pd.DataFrame, manifest: GoldenManifest, contract: Contract) -> pd.DataFrame:
    """Labelled rows outside the golden entities and outside the golden window."""
    day = labeled[contract.timestamp].dt.date
    in_window = (day >= dt.date.fromisoformat(manifest.window_start)) & (day <= dt.date.fromisoformat(manifest.window_end))
    reserved = golden_entities(labeled[contract.entity], manifest.entity_fraction, manifest.seed)
    return labeled[~in_window & ~reserved].reset_index(drop=True)


def disjointness(training: pd.DataFrame, golden: pd.DataFrame, contract: Contract) -> dict:
    """Overlap between training and golden data, by entity, by record and by time."""
    shared_entities = set(training[contract.entity]) & set(golden[contract.entity])
    shared_records = set(training[contract.record_id]) & set(golden[contract.record_id])
    g_start, g_end = golden[contract.timestamp].min(), golden[contract.timestamp].max()
    t = training[contract.timestamp]
    in_golden_time = int(((t >= g_start.normalize()) & (t < g_end.normalize() + pd.Timedelta(days=1))).sum())
    return {
        "shared_entities": len(shared_entities),
        "shared_records": len(shared_records),
        "training_rows_in_golden_window": in_golden_time,
        "examples": sorted(shared_entities)[:5],
    }
