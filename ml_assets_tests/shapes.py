"""Small, deterministic generators of real-data *shapes* that the demo simulator never produces.

Each generator writes, into a directory, what a user onboarding a dataset writes: a contract
YAML file and landing files (one CSV per day per source, labels delivered `delay_days` later,
header-only before the first labels), exactly as README.md "Onboarding your own data" says.
Point ML_ASSETS_HOME at the directory and ML_ASSETS_CONTRACT at `Shape.contract_path`.

- `elec2_like`: the Elec2 electricity-market shape. 48 half-hour rows a day, a single entity
  (one market), a day-of-week column and a normalised date column that are constant within
  each daily partition by design (the date also grows forever: always past what training
  saw), three columns that hold one constant value for the first weeks and then vary (as
  vicprice/vicdemand/transfer do for the first ~17,000 Elec2 rows), and gradual concept drift:
  P(up | features) moves from the price to the transfer over `drift_days` while the feature
  distributions stay put.
- `tiny_and_huge_days`: a handful of sensors with 5-50 rows a day and one catch-up day of
  `huge_rows` rows; stationary, so any drift or bug verdict on it is a false alarm.
- `many_entities_daily_category`: hundreds of stores, a calendar category (`promo`) that is
  the same for every row of a day by design, a weekday derived from the timestamp;
  stationary as well.

`Shape.expect` says what a correct pipeline should conclude about the data (which columns
are constant by design, where the drift starts), so tests can assert on it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# The values Elec2 holds for vicprice, vicdemand and transfer over its first ~17,000 rows.
ELEC2_CONSTANTS = {"vicprice": 0.003467, "vicdemand": 0.422915, "transfer": 0.414912}


@dataclass(frozen=True)
class Shape:
    name: str
    home: Path
    contract_path: Path
    days: list[dt.date]
    rows_per_day: list[int]
    labels_delivered: int
    positives: int
    expect: dict = field(default_factory=dict)

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def env(self) -> dict[str, str]:
        """The variables a user sets to run `ml-assets demo --no-simulate` on this shape."""
        return {"ML_ASSETS_HOME": str(self.home), "ML_ASSETS_CONTRACT": str(self.contract_path),
                "DAGSTER_HOME": str(self.home / "dagster_home")}


def _iso(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(home: Path, name: str, contract: str, frames: dict[dt.date, pd.DataFrame], records_dir: str,
           labels_dir: str, record_id: str, timestamp: str, label: str, delay: int, expect: dict) -> Shape:
    """Landing files for each day (records of the day; labels of the records `delay` days earlier)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "landing" / records_dir).mkdir(parents=True, exist_ok=True)
    (home / "landing" / labels_dir).mkdir(parents=True, exist_ok=True)
    days = sorted(frames)
    delivered = positives = 0
    for d in days:
        f = frames[d]
        f.drop(columns=[label]).assign(**{timestamp: _iso(f[timestamp])}).to_csv(
            home / "landing" / records_dir / f"{d}.csv", index=False)
        earlier = frames.get(d - dt.timedelta(days=delay))
        labels = (earlier[[record_id, label]] if earlier is not None
                  else pd.DataFrame(columns=[record_id, label]))
        labels.to_csv(home / "landing" / labels_dir / f"{d}.csv", index=False)
        delivered += len(labels)
        positives += int(labels[label].sum()) if len(labels) else 0
    path = home / f"{name}.yaml"
    path.write_text(contract)
    return Shape(name, home, path, days, [len(frames[d]) for d in days], delivered, positives, expect)


def _partitions(start: dt.date, days: int) -> str:
    return f'partitions:\n  start_date: "{start}"\n  end_date: "{start + dt.timedelta(days=days)}"\n'


# ---- (a) Elec2-like ----------------------------------------------------------------------


def _training_and_limits(batch_size: int = 128) -> str:
    """The contract's training block and the limits every shape shares, up to its own gates."""
    return f"""training:
  epochs: 6
  batch_size: {batch_size}
  learning_rate: 0.003
  hidden: [32, 16]
  seed: 42
  nproc_per_node: 2
  checkpoint_every: 2
  expected_minutes: 3
thresholds:
  null_rate_max: 0.01
  quarantine_rate_max: 0.05
  completeness_min: 0.999
  freshness_hours: 26
  gates:
"""


def elec2_like(home: Path, *, days: int = 60, start: dt.date = dt.date(2026, 1, 5), constant_days: int = 20,
               drift_start: int = 35, drift_days: int = 15, drift_weight: float = 0.6, delay: int = 1,
               seed: int = 2) -> Shape:
    """One market, 48 rows a day; see the module docstring. The concept drift moves `drift_weight`
    of the label's dependence from the NSW price (before `drift_start`) to the transfer (from
    `drift_start + drift_days` on), linearly in between; the features themselves are stationary
    (`drift_start` must be after `constant_days`, when the transfer varies).
    With the default 0.6 a model fitted before the drift falls from ROC AUC ~0.95 to ~0.6-0.7
    (Elec2's own champion fell from 0.96 to ~0.60)."""
    if drift_start < constant_days:
        raise ValueError(f"drift_start ({drift_start}) must not be before constant_days ({constant_days})")
    rng = np.random.default_rng(seed)
    frames: dict[dt.date, pd.DataFrame] = {}
    n = 48
    for i in range(days):
        d = start + dt.timedelta(days=i)
        period = np.arange(n) / (n - 1)
        daily = np.sin(2 * np.pi * (period - 0.3))
        nswdemand = np.clip(0.45 + 0.15 * daily + rng.normal(0, 0.06, n), 0, 1)
        nswprice = np.clip(0.06 + 0.02 * daily + rng.normal(0, 0.012, n), 0, 1)
        if i < constant_days:
            vic = {k: np.full(n, v) for k, v in ELEC2_CONSTANTS.items()}
        else:
            vic = {"vicprice": np.clip(nswprice + rng.normal(0, 0.01, n), 0, 1),
                   "vicdemand": np.clip(0.42 + 0.12 * daily + rng.normal(0, 0.05, n), 0, 1),
                   "transfer": np.clip(0.5 + rng.normal(0, 0.15, n), 0, 1)}
        # Concept drift: the weight moves from price to demand; P(x) does not change.
        w = drift_weight * float(np.clip((i - drift_start) / drift_days, 0, 1))
        # The new driver is the interconnector transfer (independent of the price), so the old
        # relationship fades rather than inverts, and a model refitted on recent days recovers.
        z = (1 - w) * (nswprice - 0.06) / 0.02 + w * (vic["transfer"] - 0.5) / 0.15 * 1.4
        up = (z + rng.normal(0, 0.35, n) > 0).astype(int)
        frames[d] = pd.DataFrame({
            "reading_id": [f"elec-{d:%Y%m%d}-{k:02d}" for k in range(n)],
            "market": "NSW",
            "settled_at": pd.Timestamp(d, tz="UTC") + pd.to_timedelta(np.arange(n) * 30, unit="min"),
            "date": np.round(np.full(n, i / 1000.0), 6),
            "day": np.full(n, d.isoweekday()),
            "period": np.round(period, 6),
            "nswprice": np.round(nswprice, 6),
            "nswdemand": np.round(nswdemand, 6),
            **{k: np.round(v, 6) for k, v in vic.items()},
            "up": up,
        })
    contract = f"""\
# Elec2-like shape (ml_assets_tests/shapes.py): one electricity market, a row per half hour.
name: elec2_like
description: NSW electricity market, half-hourly; label = price went up versus the last 24 h.
records:
  dir: market
  record_id: reading_id
  entity: market
  event_timestamp: settled_at
columns:
  reading_id: {{dtype: string, nullable: false, unique: true}}
  market: {{dtype: string, nullable: false}}
  settled_at: {{dtype: datetime, nullable: false}}
  date: {{dtype: float, nullable: false, min: 0.0, max: 1.0}}
  day: {{dtype: int, nullable: false, min: 1, max: 7}}
  period: {{dtype: float, nullable: false, min: 0.0, max: 1.0}}
  nswprice: {{dtype: float, nullable: false, min: 0.0, max: 1.0}}
  nswdemand: {{dtype: float, nullable: false, min: 0.0, max: 1.0}}
  vicprice: {{dtype: float, nullable: false, min: 0.0, max: 1.0}}
  vicdemand: {{dtype: float, nullable: false, min: 0.0, max: 1.0}}
  transfer: {{dtype: float, nullable: false, min: 0.0, max: 1.0}}
labels:
  dir: direction
  column: up
  positive: 1
  delay_days: {delay}
{_partitions(start, days)}features:
  passthrough: [day, period, nswprice, nswdemand, vicprice, vicdemand, transfer]
  aggregates:
    - {{column: nswprice, functions: [mean, max], windows: [1d]}}
    - {{column: nswdemand, functions: [mean], windows: [1d]}}
  ttl_days: 2
datasets:
  golden:
    version: v1
    entity_fraction: 0.25
    window_days: 5
    min_per_class: 40
    negatives_per_positive: 1
    seed: 7
  validation_fraction: 0.2
{_training_and_limits()}    precision_min: 0.70
    recall_min: 0.70
    roc_auc_min: 0.80
    bootstrap_resamples: 100
    latency_p99_ms: 250
"""
    expect = {
        "entities": 1,
        "constant_within_day_by_design": ["date", "day"],
        "monotonic_by_design": ["date"],
        "constant_until": {k: (start + dt.timedelta(days=constant_days)).isoformat() for k in ELEC2_CONSTANTS},
        "concept_drift_from": (start + dt.timedelta(days=drift_start)).isoformat(),
        "concept_drift_full_at": (start + dt.timedelta(days=drift_start + drift_days)).isoformat(),
        "covariate_drift": False,
    }
    return _write(home, "elec2_like", contract, frames, "market", "direction", "reading_id", "settled_at", "up",
                  delay, expect)


# ---- (b) tiny days and one huge day ------------------------------------------------------


def tiny_and_huge_days(home: Path, *, days: int = 30, start: dt.date = dt.date(2026, 2, 2), huge_day: int = 20,
                       huge_rows: int = 20_000, sensors: int = 12, delay: int = 1, seed: int = 3) -> Shape:
    """Readings of a few sensors: 5-50 rows a day, except day `huge_day` (a catch-up delivery of
    `huge_rows` rows). Stationary: the same distributions and the same P(y|x) every day."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["thermal", "pressure", "flow"])
    frames: dict[dt.date, pd.DataFrame] = {}
    for i in range(days):
        d = start + dt.timedelta(days=i)
        n = huge_rows if i == huge_day else int(rng.integers(5, 51))
        sensor = rng.integers(0, sensors, n)
        seconds = np.sort(rng.choice(86_400, size=n, replace=n > 86_400))
        value = rng.normal(50, 10, n)
        vibration = rng.gamma(2.0, 1.5, n)
        fault = ((value - 50) / 10 + vibration / 3 + rng.normal(0, 0.8, n) > 1.6).astype(int)
        frames[d] = pd.DataFrame({
            "reading_id": [f"r-{d:%Y%m%d}-{k:05d}" for k in range(n)],
            "sensor_id": [f"s{s:02d}" for s in sensor],
            "read_at": pd.Timestamp(d, tz="UTC") + pd.to_timedelta(seconds, unit="s"),
            "sensor_kind": kinds[sensor % 3],
            "value": np.round(value, 4),
            "vibration": np.round(vibration, 4),
            "fault": fault,
        })
    contract = f"""\
# Tiny days and one huge day (ml_assets_tests/shapes.py): stationary sensor readings.
name: sensor_faults
description: Readings of a few sensors, 5-50 a day, one catch-up day; faults confirmed a day later.
records:
  dir: readings
  record_id: reading_id
  entity: sensor_id
  event_timestamp: read_at
columns:
  reading_id: {{dtype: string, nullable: false, unique: true}}
  sensor_id: {{dtype: string, nullable: false}}
  read_at: {{dtype: datetime, nullable: false}}
  sensor_kind: {{dtype: category, nullable: false, allowed: [thermal, pressure, flow]}}
  value: {{dtype: float, nullable: false, min: -100.0, max: 200.0}}
  vibration: {{dtype: float, nullable: false, min: 0.0, max: 100.0}}
labels:
  dir: faults
  column: fault
  positive: 1
  delay_days: {delay}
{_partitions(start, days)}features:
  passthrough: [sensor_kind, value, vibration]
  aggregates:
    - {{column: value, functions: [count, mean], windows: [1d]}}
  ttl_days: 2
datasets:
  golden:
    version: v1
    entity_fraction: 0.25
    window_days: 8               # tiny days: a week of them for ~60 golden rows
    min_per_class: 10
    negatives_per_positive: 3
    seed: 7
  validation_fraction: 0.2
{_training_and_limits()}    precision_min: 0.50
    recall_min: 0.50
    roc_auc_min: 0.75
    bootstrap_resamples: 100
    latency_p99_ms: 250
"""
    expect = {"entities": sensors, "huge_day": (start + dt.timedelta(days=huge_day)).isoformat(),
              "tiny_days_rows": [5, 50], "covariate_drift": False, "concept_drift_from": None}
    return _write(home, "sensor_faults", contract, frames, "readings", "faults", "reading_id", "read_at", "fault",
                  delay, expect)


# ---- (c) many entities, a category constant within each day -------------------------------


PROMOS = ("none", "weekend_sale", "clearance")


def many_entities_daily_category(home: Path, *, days: int = 30, start: dt.date = dt.date(2026, 3, 2),
                                 stores: int = 400, delay: int = 2, seed: int = 5) -> Shape:
    """Sales of `stores` stores, 1-4 rows per store a day. `promo` is a calendar fact, the same for
    every row of a day (weekends: weekend_sale; every 10th day: clearance); `region` is fixed per
    store. Stationary: the label depends on the same features the same way every day."""
    rng = np.random.default_rng(seed)
    regions = np.array(["north", "south", "east", "west"])
    frames: dict[dt.date, pd.DataFrame] = {}
    for i in range(days):
        d = start + dt.timedelta(days=i)
        promo = "clearance" if i % 10 == 9 else "weekend_sale" if d.weekday() >= 5 else "none"
        per_store = rng.integers(1, 5, stores)
        store = np.repeat(np.arange(stores), per_store)
        n = len(store)
        seconds = rng.integers(8 * 3600, 21 * 3600, n)
        basket = rng.lognormal(3.0, 0.5, n) * (1.3 if promo != "none" else 1.0)
        discount = np.round(rng.uniform(0, 0.1, n) + (0.2 if promo != "none" else 0.0), 4)
        returned = ((np.log(basket) - 3.0) / 0.5 + 4 * discount + rng.normal(0, 1, n) > 1.8).astype(int)
        frame = pd.DataFrame({
            "sale_id": [f"sale-{d:%Y%m%d}-{k:05d}" for k in range(n)],
            "store_id": [f"store-{s:04d}" for s in store],
            "sold_at": pd.Timestamp(d, tz="UTC") + pd.to_timedelta(seconds, unit="s"),
            "region": regions[store % 4],
            "promo": promo,
            "basket_value": np.round(basket, 2),
            "discount": discount,
            "returned": returned,
        })
        frames[d] = frame.sort_values(["sold_at", "sale_id"], kind="stable").reset_index(drop=True)
    contract = f"""\
# Many entities with a category constant within each day (ml_assets_tests/shapes.py).
name: store_returns
description: Store sales; whether the sale was returned is known two days later.
records:
  dir: sales
  record_id: sale_id
  entity: store_id
  event_timestamp: sold_at
columns:
  sale_id: {{dtype: string, nullable: false, unique: true}}
  store_id: {{dtype: string, nullable: false}}
  sold_at: {{dtype: datetime, nullable: false}}
  region: {{dtype: category, nullable: false, allowed: [north, south, east, west]}}
  promo: {{dtype: category, nullable: false, allowed: [{", ".join(PROMOS)}]}}
  basket_value: {{dtype: float, nullable: false, min: 0.0, max: 10000.0}}
  discount: {{dtype: float, nullable: false, min: 0.0, max: 1.0}}
labels:
  dir: returns
  column: returned
  positive: 1
  delay_days: {delay}
{_partitions(start, days)}features:
  passthrough: [region, promo, basket_value, discount]
  derived:
    - {{name: weekday, op: day_of_week, args: [sold_at]}}
  aggregates:
    - {{column: basket_value, functions: [count, mean], windows: [1d]}}
  ttl_days: 2
slices:
  declared: [region, promo]
datasets:
  golden:
    version: v1
    entity_fraction: 0.25
    window_days: 4
    min_per_class: 50
    negatives_per_positive: 3
    seed: 7
  validation_fraction: 0.2
{_training_and_limits(256)}    precision_min: 0.50
    recall_min: 0.50
    roc_auc_min: 0.75
    bootstrap_resamples: 100
    latency_p99_ms: 250
"""
    expect = {"entities": stores, "constant_within_day_by_design": ["promo", "weekday"],
              "covariate_drift": False, "concept_drift_from": None}
    return _write(home, "store_returns", contract, frames, "sales", "returns", "sale_id", "sold_at", "returned",
                  delay, expect)


GENERATORS = {"elec2_like": elec2_like, "tiny_and_huge_days": tiny_and_huge_days,
              "many_entities_daily_category": many_entities_daily_category}
