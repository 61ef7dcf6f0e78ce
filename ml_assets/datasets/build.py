"""Training and golden sets (F2, P1).

The golden set is frozen: built once per version from the last labelled days, and never
changed afterwards. Two holdouts (contract `datasets.golden.holdout`):

* `entity` — a reserved, hash-chosen share of entities over the golden window; training never
  sees those entities, nor any day of the golden window (disjoint in entity and in time);
* `time` — every entity over the golden window; training never sees a day of it (for datasets
  with one or a handful of entities: a single market, a single sensor).

The window is the last `window_days` labelled days, grown backwards a day at a time (up to
`max_window_days`) until each class has `min_per_class` examples: tiny days need more of them.
A check proves the disjointness on every build, and promotion re-verifies it from lineage.
Training uses the last `training_window_days` labelled days outside the golden window (all of
them when unset), so a model retrained after drift learns the world as it is now.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.metadata import num


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
    holdout: str = "entity"
    base_version: str = ""  # the contract's datasets.golden.version it was frozen under
    reason: str = ""  # why it was frozen (first version, contract bump, refresh after decline / staleness)

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
    # dict.fromkeys: the entity may be the record id itself (one entity per record, e.g. one row per loan).
    keys = transactions[list(dict.fromkeys([contract.record_id, contract.entity, contract.timestamp]))]
    out = keys.merge(labels[[contract.record_id, contract.label]], on=contract.record_id, how="inner", validate="1:1")
    out[contract.timestamp] = pd.to_datetime(out[contract.timestamp], utc=True).astype("datetime64[us, UTC]")
    out = out[out[contract.timestamp].dt.date >= contract.first_complete_day]
    return out.sort_values([contract.timestamp, contract.record_id], kind="stable").reset_index(drop=True)


def golden_window(labeled: pd.DataFrame, contract: Contract) -> tuple[dt.date, dt.date]:
    """The last `window_days` labelled days, grown backwards (up to `max_window_days`) until the pool
    holds `min_per_class` examples of each class; grown, it never takes more than half of the labelled days."""
    g = contract.datasets.golden
    days = sorted(labeled[contract.timestamp].dt.date.unique())
    if len(days) < g.window_days + 1:
        raise GoldenSetError(
            f"golden window needs {g.window_days} labelled days plus at least one day for training; "
            f"found {len(days)} labelled days ({days[0] if days else '-'} .. {days[-1] if days else '-'})"
        )
    # Grown for tiny days, but never past half of the labelled days: training needs at least as many.
    limit = min(g.max_window_days or g.window_days, max(g.window_days, len(days) // 2))
    n = g.window_days
    while True:
        start, end = days[-n], days[-1]
        pool = _golden_rows(labeled, contract, start, end)
        pos = int((pool[contract.label] == contract.labels.positive).sum())
        if (pos >= g.min_per_class and len(pool) - pos >= g.min_per_class) or n >= limit:
            return start, end
        n += 1


def _golden_rows(labeled: pd.DataFrame, contract: Contract, start: dt.date, end: dt.date) -> pd.DataFrame:
    g = contract.datasets.golden
    day = labeled[contract.timestamp].dt.date
    mask = (day >= start) & (day <= end)
    if g.holdout == "entity":
        mask &= golden_entities(labeled[contract.entity], g.entity_fraction, g.seed)
    return labeled[mask]


def golden_pool(labeled: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, dt.date, dt.date]:
    start, end = golden_window(labeled, contract)
    return _golden_rows(labeled, contract, start, end).reset_index(drop=True), start, end


def stratified_golden(pool: pd.DataFrame, contract: Contract, version: str | None = None) -> pd.DataFrame:
    """Every positive of the pool and `negatives_per_positive` negatives for each, sampled."""
    g = contract.datasets.golden
    pos = pool[pool[contract.label] == contract.labels.positive]
    neg = pool[pool[contract.label] != contract.labels.positive]
    if len(pos) < g.min_per_class or len(neg) < g.min_per_class:
        where = (f"{g.entity_fraction:.0%} of entities" if g.holdout == "entity" else "every entity")
        hint = (" With one or a handful of entities, set datasets.golden.holdout: time." if g.holdout == "entity"
                and pool[contract.entity].nunique() < 20 else "")
        raise GoldenSetError(
            f"golden set version {version or g.version} needs at least {g.min_per_class} examples per class; the "
            f"golden pool ({where} over the last {pool[contract.timestamp].dt.date.nunique()} labelled days, "
            f"max_window_days {g.max_window_days or g.window_days}) holds {len(pos)} positives and {len(neg)} "
            f"negatives. Deliver more days or entities, raise datasets.golden.max_window_days or lower "
            f"datasets.golden.min_per_class in the contract.{hint}"
        )
    n_neg = min(len(neg), max(g.min_per_class, len(pos) * g.negatives_per_positive))
    neg = neg.sample(n=n_neg, random_state=np.random.RandomState(g.seed))
    out = pd.concat([pos, neg]).sort_values([contract.timestamp, contract.record_id], kind="stable")
    return out.reset_index(drop=True)


def training_pool(labeled: pd.DataFrame, manifest: GoldenManifest, contract: Contract) -> pd.DataFrame:
    """Labelled rows outside the golden window (and, for an entity holdout, outside the golden entities),
    from the last `training_window_days` such days."""
    day = labeled[contract.timestamp].dt.date
    in_window = (day >= dt.date.fromisoformat(manifest.window_start)) & (day <= dt.date.fromisoformat(manifest.window_end))
    keep = ~in_window
    if manifest.holdout == "entity":
        keep &= ~golden_entities(labeled[contract.entity], manifest.entity_fraction, manifest.seed)
    pool = labeled[keep]
    n = contract.datasets.training_window_days
    if n is not None:
        days = sorted(pool[contract.timestamp].dt.date.unique())[-n:]
        pool = pool[pool[contract.timestamp].dt.date.isin(days)]
    return pool.reset_index(drop=True)


def disjointness(training: pd.DataFrame, golden: pd.DataFrame, contract: Contract, holdout: str = "entity",
                 window: tuple[str, str] | None = None) -> dict:
    """Overlap between training and golden data, by entity, by record and by time.

    `violations` counts what the holdout forbids: shared records and training rows inside the golden
    window always; shared entities too for an entity holdout (a time holdout shares them by design).
    `window` is the golden window (first, last day); by default the golden set's own time span.
    """
    shared_entities = set(training[contract.entity]) & set(golden[contract.entity])
    shared_records = set(training[contract.record_id]) & set(golden[contract.record_id])
    if window is not None:
        g_start = pd.Timestamp(window[0], tz="UTC")
        g_end = pd.Timestamp(window[1], tz="UTC")
    else:
        g_start, g_end = golden[contract.timestamp].min().normalize(), golden[contract.timestamp].max().normalize()
    t = training[contract.timestamp]
    in_golden_time = int(((t >= g_start) & (t < g_end + pd.Timedelta(days=1))).sum())
    violations = len(shared_records) + in_golden_time + (len(shared_entities) if holdout == "entity" else 0)
    return {
        "holdout": holdout,
        "shared_entities": len(shared_entities),
        "shared_records": len(shared_records),
        "training_rows_in_golden_window": in_golden_time,
        "violations": violations,
        "examples": sorted(shared_entities)[:5] if holdout == "entity" else [],
    }


def dataset_stats(df: pd.DataFrame, contract: Contract) -> dict:
    """Rows, classes, entities and date range of a labelled set (its manifest and its metadata)."""
    pos = int((df[contract.label] == contract.labels.positive).sum())
    return {"rows": len(df), "positives": pos, "negatives": len(df) - pos,
            "positive_rate": num(pos / max(len(df), 1)),
            "entities": int(df[contract.entity].nunique()),
            "date_from": str(df[contract.timestamp].min().date()), "date_to": str(df[contract.timestamp].max().date())}


def latest_day(rows: pd.DataFrame, contract: Contract) -> str | None:
    """The newest labelled day (ISO), None when there are no rows."""
    return rows[contract.timestamp].max().date().isoformat() if len(rows) else None


def golden_manifest(golden: pd.DataFrame, contract: Contract, version: str, start: dt.date, end: dt.date,
                    reason: str) -> GoldenManifest:
    """The manifest of a golden set frozen now over `start` .. `end`."""
    g = contract.datasets.golden
    stats = dataset_stats(golden, contract)
    return GoldenManifest(
        version=version, window_start=start.isoformat(), window_end=end.isoformat(), entity_fraction=g.entity_fraction,
        seed=g.seed, rows=stats["rows"], positives=stats["positives"], negatives=stats["negatives"],
        content_hash=content_hash(golden), created_at=dt.datetime.now(dt.UTC).isoformat(), holdout=g.holdout,
        base_version=g.version, reason=reason)


def no_training_rows(golden: GoldenManifest) -> str:
    return (f"no labelled rows outside golden set {golden.version} ({golden.window_start} .. "
            f"{golden.window_end}); deliver more days")


def partitions_of(df: pd.DataFrame, contract: Contract) -> list[str]:
    """The days (ISO) a set's rows fall on, sorted."""
    return sorted({str(d) for d in df[contract.timestamp].dt.date.unique()})


def training_manifest(training: pd.DataFrame, golden: GoldenManifest, excluded: dict[str, str],
                      contract: Contract, checks: dict[str, bool] | None = None) -> dict:
    """What training_set writes next to its data: its content hash, golden version, days and stats, and the
    outcome of its blocking checks (read back by every consumer that must not use a refused set)."""
    return {"content_hash": content_hash(training), "golden_version": golden.version,
            "partitions": partitions_of(training, contract), **dataset_stats(training, contract),
            "excluded_days": excluded, "training_window_days": contract.datasets.training_window_days,
            "checks": dict(checks or {}), "created_at": dt.datetime.now(dt.UTC).isoformat()}


def rows_missing_features(training: pd.DataFrame, contract: Contract) -> int:
    """F2: labelled rows that found no point-in-time feature row (any feature null)."""
    return int(training[contract.feature_names].isna().any(axis=1).sum())
