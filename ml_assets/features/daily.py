"""One day of transaction_features on plain data and the lake, without Dagster: the history window
it reads (only partitions that passed ingestion), the features it writes, and the outcomes and
metadata of its checks. features/assets.py wires them, and refuses a day whose inputs say so."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.features.compute import compute_features
from ml_assets.features.history import refusals
from ml_assets.ingestion.ingest import ingestion_verdicts, lake_key, read_partitions
from ml_assets.metadata import Outcome
from ml_assets.storage import ObjectStore

ASSET = "transaction_features"
RECORDS = "raw_transactions"
HISTORY = "feature_history/{day}.json"  # the history days a partition's windowed features were computed from


@dataclass
class DayInputs:
    """What one partition's features are computed from."""

    partition: str
    window: list[str]  # the history days and the day itself, oldest first
    refused: list[str] = field(default_factory=list)  # why it must not be computed at all
    excluded: dict[str, str] = field(default_factory=dict)  # failed history days left out -> why
    records: pd.DataFrame = field(default_factory=pd.DataFrame)  # the window's records
    todays: pd.DataFrame = field(default_factory=pd.DataFrame)  # the day's own records


@dataclass(frozen=True)
class FeatureDay:
    rows: int
    completeness: Outcome
    nulls: Outcome
    metadata: dict[str, Any]


def history_window(partition: str, history_days: int) -> list[str]:
    day = dt.date.fromisoformat(partition)
    return [(day - dt.timedelta(days=i)).isoformat() for i in range(history_days, -1, -1)]


def day_inputs(lake: ObjectStore, contract: Contract, partition: str, history_days: int) -> DayInputs:
    """The records of the day's window that passed ingestion.

    Blocking checks stop this step only inside the run that ingested the data; a later run must not
    consume a partition whose ingestion checks failed, so this re-verifies. The day itself must have
    passed (else `refused`); a failed day in the history is left out (`excluded`, named in the metadata)
    rather than halting every day after it for the length of the window.
    """
    window = history_window(partition, history_days)
    verdicts = ingestion_verdicts(lake, RECORDS, window)
    refused = refusals(verdicts, [partition])
    if refused:
        return DayInputs(partition, window, refused)
    excluded = {p: why for p, why in verdicts.items() if why}
    records = read_partitions(lake, RECORDS, [p for p in window if verdicts.get(p, "") is None])
    day = dt.date.fromisoformat(partition)
    todays = records[pd.to_datetime(records[contract.timestamp], utc=True).dt.date == day] if len(records) else records
    return DayInputs(partition, window, [], excluded, records, todays)


def refusal_message(inputs: DayInputs) -> str:
    return (f"{ASSET} {inputs.partition}: refusing to consume partitions that did not pass "
            f"ingestion: {'; '.join(inputs.refused)}. Fix the "
            f"delivery and re-materialize those partitions of {RECORDS} first.")


def no_rows_message(partition: str) -> str:
    return f"{RECORDS} has no rows for {partition}: materialize it first; features are not computed from missing data"


def write_features(lake: ObjectStore, contract: Contract, inputs: DayInputs) -> FeatureDay:
    """Compute the day's features from its window, write them and the window's exclusions, and judge them."""
    pk = inputs.partition
    feats = compute_features(inputs.records, contract, dt.date.fromisoformat(pk))
    sha = lake.write_parquet(lake_key(ASSET, pk), feats)
    lake.write_bytes(HISTORY.format(day=pk), json.dumps({"excluded": inputs.excluded}).encode())
    active = set(inputs.todays[contract.entity])
    covered = len(active & set(feats[contract.entity])) / len(active)
    null_rate = float(feats[contract.feature_names].isna().mean().max())
    t = contract.thresholds
    return FeatureDay(
        rows=len(feats),
        completeness=Outcome(covered >= t.completeness_min, f"{covered:.2%} of {len(active)} active entities have "
                             f"features (limit {t.completeness_min:.2%})"),
        nulls=Outcome(null_rate <= t.null_rate_max,
                      f"highest feature null rate {null_rate:.2%} (limit {t.null_rate_max:.2%})"),
        metadata={"rows": len(feats), "entities": int(feats[contract.entity].nunique()), "completeness": covered,
                  "max_feature_null_rate": null_rate, "history_days_read": len(inputs.window) - len(inputs.excluded),
                  "history_excluded": "; ".join(inputs.excluded.values()) or "none", "sha256": sha})
