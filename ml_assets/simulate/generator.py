"""Deterministic card-transaction fraud data for the demo domain.

The simulator writes what a real upstream would deliver to the landing zone: one file of
transactions per day, and one file of fraud labels per day holding the labels of the
transactions `delay_days` earlier (ground truth arrives late). Fraud comes in bursts on
compromised cards (several foreign, online, high-value transactions within hours), so
both the per-record fields and the per-card windowed aggregates carry signal, and a few
percent of fraud looks ordinary, so no model is perfect.

Scenarios inject the failures the pipeline must catch; each is named in RELIABILITY.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml_assets.storage import atomic_write_bytes

MERCHANTS = ["grocery", "fuel", "restaurants", "retail", "electronics", "travel", "gift_cards", "online_services"]
LEGIT_MERCHANT_P = [0.25, 0.15, 0.20, 0.20, 0.05, 0.04, 0.03, 0.08]
FRAUD_MERCHANT_P = [0.02, 0.02, 0.02, 0.09, 0.35, 0.15, 0.25, 0.10]
MERCHANT_MEDIAN_AMOUNT = np.array([40, 50, 35, 80, 250, 400, 60, 20], dtype=float)
CHANNELS = ["in_store", "online", "atm"]
HOME_COUNTRIES = ["US", "CA", "GB", "DE", "FR"]
HOME_P = [0.6, 0.1, 0.1, 0.1, 0.1]
FOREIGN_RISKY = ["NG", "RU", "CN", "BR", "IN"]
AGE_BANDS = ["18-29", "30-44", "45-64", "65+"]
AGE_P = [0.25, 0.3, 0.3, 0.15]

# Each scenario affects the days from `scenario_start_day` on (for `scenario_days` days, or to the end),
# deterministically:
#   drift              the world changes, gradually over `ramp_days`: customers spend more and more online
#                      (covariate drift, M1) and fraudsters switch to a new pattern the old model was never shown
#                      (concept drift, M3): small domestic ATM and in-store withdrawals at night
#   covariate_drift    only the spending shift: the inputs move, the fraud pattern (and the model's quality) holds
#   concept_drift      only the new fraud pattern: P(fraud | inputs) changes while the inputs barely move
#   schema_break       the `amount` column is renamed `amount_usd` (D1: file-level failure)
#   null_spike         a fifth of `merchant_category` values are empty (D1 quarantine, D2 null rates)
#   out_of_range       amounts delivered in cents instead of units (D2: far outside the baseline)
#   stale_source       the upstream stops delivering: no transaction or label files (D3, D7)
#   duplicate_delivery the last good day's file is re-delivered under each new day's name (D5)
#   corrupt_file       the file is cut off mid-row, as by an interrupted upload (D1)
SCENARIOS = ("none", "drift", "covariate_drift", "concept_drift", "schema_break", "null_spike", "out_of_range",
             "stale_source", "duplicate_delivery", "corrupt_file")
DRIFT_SCENARIOS = ("drift", "covariate_drift", "concept_drift")
NULL_SPIKE_SHARE = 0.2
NEW_FRAUD_SHARE = 0.7  # concept drift at full size: share of compromised cards emptied the new way


@dataclass(frozen=True)
class SimulationConfig:
    start_date: dt.date = dt.date(2026, 1, 1)
    days: int = 30
    n_cards: int = 4000
    tx_per_card_per_day: float = 1.5
    compromise_rate: float = 0.008  # share of card-days on which a card is compromised
    label_delay_days: int = 3
    seed: int = 2026
    scenario: str = "none"
    scenario_start_day: int = 20  # first simulated day (0-based) the scenario affects
    scenario_days: int | None = None  # how many days it lasts (None: to the end)
    ramp_days: int = 7  # drift scenarios: days from the first sign of change to its full size (0: abrupt)
    file_format: str = "csv"
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SimulationResult:
    landing_dir: Path
    transaction_files: list[Path]
    label_files: list[Path]
    rows: int  # transactions written to the landing zone; a re-delivered copy is not counted again
    fraud_rows: int

    @property
    def fraud_rate(self) -> float:
        return self.fraud_rows / max(self.rows, 1)


def _cards(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "card_id": [f"card_{i:06d}" for i in range(n)],
            "home_country": rng.choice(HOME_COUNTRIES, size=n, p=HOME_P),
            "customer_age_band": rng.choice(AGE_BANDS, size=n, p=AGE_P),
            "rate": rng.gamma(shape=2.0, scale=0.5, size=n),
        }
    )


def affects(cfg: SimulationConfig, day_index: int) -> bool:
    """Whether the scenario is active on this day."""
    if cfg.scenario == "none" or day_index < cfg.scenario_start_day:
        return False
    return cfg.scenario_days is None or day_index < cfg.scenario_start_day + cfg.scenario_days


def drift_level(cfg: SimulationConfig, day_index: int) -> tuple[float, float]:
    """(covariate, concept) size of the change on this day, each in [0, 1]: 0 before the scenario, growing
    linearly over `ramp_days`, 1 after (a step when ramp_days is 0)."""
    if cfg.scenario not in DRIFT_SCENARIOS or not affects(cfg, day_index):
        return 0.0, 0.0
    level = min(1.0, (day_index - cfg.scenario_start_day + 1) / max(cfg.ramp_days, 1))
    return (level if cfg.scenario in ("drift", "covariate_drift") else 0.0,
            level if cfg.scenario in ("drift", "concept_drift") else 0.0)


def _day(rng: np.random.Generator, cards: pd.DataFrame, day: dt.date, cfg: SimulationConfig, day_index: int) -> pd.DataFrame:
    covariate, concept = drift_level(cfg, day_index)
    n_cards = len(cards)
    rate = cards["rate"].to_numpy() * cfg.tx_per_card_per_day
    counts = rng.poisson(rate)
    idx = np.repeat(np.arange(n_cards), counts)
    n = len(idx)
    merchant = rng.choice(len(MERCHANTS), size=n, p=LEGIT_MERCHANT_P)
    amount = MERCHANT_MEDIAN_AMOUNT[merchant] * (1.0 + 0.8 * covariate) * rng.lognormal(0.0, 0.6, size=n)
    moved = 0.25 * covariate  # customers move their spending online
    channel = rng.choice(3, size=n, p=[0.7 - moved, 0.25 + moved, 0.05])
    home = cards["home_country"].to_numpy()[idx]
    travels = rng.random(n) < 0.02
    country = np.where(travels, rng.choice(HOME_COUNTRIES + FOREIGN_RISKY, size=n), home)
    # Daytime-heavy activity: hours drawn from a bimodal profile.
    hour = np.clip(rng.normal(14, 4.5, size=n), 0, 23.99)
    seconds = (hour * 3600).astype(int)
    legit = pd.DataFrame(
        {
            "card_idx": idx,
            "seconds": seconds,
            "amount": amount,
            "merchant": merchant,
            "channel": channel,
            "country": country,
            "is_fraud": 0,
        }
    )

    # Compromised cards: a burst of fraudulent transactions within a few hours.
    compromised = np.flatnonzero(rng.random(n_cards) < cfg.compromise_rate)
    bursts = 2 + rng.poisson(2.0, size=len(compromised))
    f_idx = np.repeat(compromised, bursts)
    m = len(f_idx)
    start = np.repeat(rng.integers(0, 86400 - 4 * 3600, size=len(compromised)), bursts)
    f_seconds = start + rng.integers(0, 3 * 3600, size=m)
    stealthy = rng.random(m) < 0.12  # fraud that looks like ordinary spending
    f_merchant = np.where(stealthy, rng.choice(len(MERCHANTS), size=m, p=LEGIT_MERCHANT_P),
                          rng.choice(len(MERCHANTS), size=m, p=FRAUD_MERCHANT_P))
    f_amount = np.where(
        stealthy,
        MERCHANT_MEDIAN_AMOUNT[f_merchant] * rng.lognormal(0.0, 0.6, size=m),
        np.maximum(MERCHANT_MEDIAN_AMOUNT[f_merchant], 300) * rng.lognormal(0.6, 0.5, size=m),
    )
    f_channel = np.where(stealthy, 0, rng.choice(3, size=m, p=[0.1, 0.75, 0.15]))
    f_home = cards["home_country"].to_numpy()[f_idx]
    f_country = np.where(stealthy | (rng.random(m) < 0.25), f_home, rng.choice(FOREIGN_RISKY, size=m))
    # Concept drift: a growing share of compromised cards is emptied the new way — small domestic cash
    # withdrawals and in-store purchases in the small hours. Nothing the old model keyed on (high amounts,
    # online, foreign, electronics) is there; hour of day, channel and the burst counts still give it away.
    new_way = np.repeat(rng.random(len(compromised)) < NEW_FRAUD_SHARE * concept, bursts)
    if new_way.any():
        k = int(new_way.sum())
        night = np.repeat(rng.integers(0, 4 * 3600, size=len(compromised)), bursts)[new_way]
        # Mostly at night, but a quarter of these bursts happen in the daytime, as ordinary spending does.
        night = np.where(rng.random(k) < 0.75, night, night + 10 * 3600)
        f_seconds[new_way] = night + rng.integers(0, 3600, size=k)
        f_merchant[new_way] = rng.choice([0, 1, 3], size=k, p=[0.5, 0.3, 0.2])  # grocery, fuel, retail
        f_amount[new_way] = 20 * rng.lognormal(0.0, 0.5, size=k)
        f_channel[new_way] = rng.choice([0, 2], size=k, p=[0.4, 0.6])  # in store, ATM
        f_country[new_way] = f_home[new_way]
    fraud = pd.DataFrame(
        {
            "card_idx": f_idx,
            "seconds": np.clip(f_seconds, 0, 86399),
            "amount": f_amount,
            "merchant": f_merchant,
            "channel": f_channel,
            "country": f_country,
            "is_fraud": 1,
        }
    )
    tx = pd.concat([legit, fraud], ignore_index=True)
    # One record per card per second keeps point-in-time joins unambiguous.
    tx = tx.drop_duplicates(subset=["card_idx", "seconds"]).sort_values(["seconds", "card_idx"], kind="stable")
    midnight = pd.Timestamp(day, tz="UTC")
    out = pd.DataFrame(
        {
            "transaction_id": [
                f"tx_{day:%Y%m%d}_{i:07d}" for i in range(len(tx))
            ],
            "card_id": cards["card_id"].to_numpy()[tx["card_idx"].to_numpy()],
            "event_timestamp": midnight + pd.to_timedelta(tx["seconds"].to_numpy(), unit="s"),
            "amount": np.round(tx["amount"].to_numpy(), 2),
            "merchant_category": np.array(MERCHANTS)[tx["merchant"].to_numpy()],
            "channel": np.array(CHANNELS)[tx["channel"].to_numpy()],
            "country": tx["country"].to_numpy(),
            "home_country": cards["home_country"].to_numpy()[tx["card_idx"].to_numpy()],
            "customer_age_band": cards["customer_age_band"].to_numpy()[tx["card_idx"].to_numpy()],
            "is_fraud": tx["is_fraud"].to_numpy(),
        }
    )
    return out.reset_index(drop=True)


def _inject(df: pd.DataFrame, scenario: str, rng: np.random.Generator) -> pd.DataFrame:
    """Apply a record-level scenario to one day's delivery (file-level ones are applied when writing)."""
    df = df.copy()
    if scenario == "schema_break":
        df = df.rename(columns={"amount": "amount_usd"})
    elif scenario == "null_spike":
        hit = rng.random(len(df)) < NULL_SPIKE_SHARE
        df["merchant_category"] = df["merchant_category"].where(~hit, None)
    elif scenario == "out_of_range":
        df["amount"] = np.round(df["amount"] * 100, 2)
    return df


def _write(df: pd.DataFrame, path: Path, file_format: str) -> Path:
    path = path.with_suffix(f".{file_format}")
    if file_format == "csv":
        data = df.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ").encode()
    elif file_format == "parquet":
        data = df.to_parquet(index=False)
    else:
        raise ValueError(f"unsupported landing file format {file_format!r}; expected csv or parquet")
    atomic_write_bytes(path, data)
    return path


def simulate(landing_dir: str | Path, cfg: SimulationConfig = SimulationConfig()) -> SimulationResult:
    """Write `cfg.days` days of transactions and the label deliveries that fall inside them."""
    if cfg.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {cfg.scenario!r}; expected one of {', '.join(SCENARIOS)}")
    landing = Path(landing_dir)
    # One generator per day, seeded from (seed, day): a day's data does not depend on how
    # many days were simulated before it.
    cards = _cards(np.random.default_rng(cfg.seed), cfg.n_cards)
    days = [cfg.start_date + dt.timedelta(days=i) for i in range(cfg.days)]
    tx_files, label_files, frames = [], [], {}
    rows = fraud_rows = 0
    last_good: Path | None = None
    for i, day in enumerate(days):
        day_seed = int.from_bytes(hashlib.sha256(f"{cfg.seed}:{day.isoformat()}".encode()).digest()[:8], "little")
        df = _day(np.random.default_rng(day_seed), cards, day, cfg, i)
        frames[day] = df[["transaction_id", "is_fraud"]]
        affected = affects(cfg, i) and cfg.scenario not in DRIFT_SCENARIOS
        if affected and cfg.scenario == "stale_source":
            continue
        target = landing / "transactions" / day.isoformat()
        if affected and cfg.scenario == "duplicate_delivery" and last_good is not None:
            # The upstream export is stuck: it re-sends the last good file under the new day's name.
            path = target.with_suffix(last_good.suffix)
            atomic_write_bytes(path, last_good.read_bytes())
            tx_files.append(path)
            continue
        out = df.drop(columns=["is_fraud"])
        if affected:
            out = _inject(out, cfg.scenario, np.random.default_rng(day_seed + 1))
        rows += len(df)
        fraud_rows += int(df["is_fraud"].sum())
        path = _write(out, target, cfg.file_format)
        if affected and cfg.scenario == "corrupt_file":
            data = path.read_bytes()
            atomic_write_bytes(path, data[: len(data) * 2 // 3])  # an upload cut off mid-row
        else:
            last_good = path
        tx_files.append(path)
    for i, day in enumerate(days):
        if cfg.scenario == "stale_source" and affects(cfg, i):
            continue
        event_day = day - dt.timedelta(days=cfg.label_delay_days)
        labels = frames.get(event_day, pd.DataFrame({"transaction_id": pd.Series(dtype=str), "is_fraud": pd.Series(dtype=int)}))
        label_files.append(_write(labels, landing / "labels" / day.isoformat(), "csv"))
    return SimulationResult(landing, tx_files, label_files, rows, fraud_rows)
