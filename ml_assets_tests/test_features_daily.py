"""One day of transaction_features on a local lake, without Dagster: the window it reads (only
partitions that passed ingestion), what it refuses, what it writes, and its checks' verdicts;
and the online store's materialization window and consistency verdict."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_assets.contract import load_contract
from ml_assets.features import daily
from ml_assets.features.online import consistency_verdict, materialize_window
from ml_assets.ingestion.ingest import lake_key
from ml_assets.ingestion.status import status_key
from ml_assets.storage import LocalStore

CONTRACT = load_contract()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "lake")


def records(day: str, n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(rng.integers(0, 86400, size=n), unit="s")
    return pd.DataFrame({
        "transaction_id": [f"{day}-{i}" for i in range(n)], "card_id": rng.choice(["c1", "c2", "c3"], size=n),
        "event_timestamp": ts, "amount": np.round(rng.lognormal(3, 1, size=n), 2),
        "merchant_category": "grocery", "channel": "online", "country": "US", "home_country": "US",
        "customer_age_band": "30-44"})


def publish(store: LocalStore, day: str, passed: bool = True, n: int = 30) -> None:
    """A raw_transactions partition with the ingestion record a consumer verifies."""
    sha = store.write_parquet(lake_key(daily.RECORDS, day), records(day, n))
    check = {"passed": passed, "description": "quarantine rate too high", "blocking": True}
    store.write_bytes(status_key(daily.RECORDS, day), json.dumps(
        {"checks": {"schema_contract": check}, "output_sha256": sha}).encode())


def test_the_window_ends_on_the_day_and_reaches_back_the_history_days() -> None:
    assert daily.history_window("2026-03-01", 2) == ["2026-02-27", "2026-02-28", "2026-03-01"]


def test_a_failed_history_day_is_left_out_and_named(store: LocalStore) -> None:
    publish(store, "2026-01-03")
    publish(store, "2026-01-04", passed=False)
    publish(store, "2026-01-05")
    inputs = daily.day_inputs(store, CONTRACT, "2026-01-05", history_days=2)
    assert not inputs.refused
    assert list(inputs.excluded) == ["2026-01-04"]
    assert set(pd.to_datetime(inputs.records["event_timestamp"]).dt.date.astype(str)) == {"2026-01-03", "2026-01-05"}
    assert len(inputs.todays) == 30
    day = daily.write_features(store, CONTRACT, inputs)
    assert day.rows == 30 and day.completeness.passed and day.nulls.passed  # the day's records; history feeds windows
    assert day.metadata["history_days_read"] == 2
    assert "2026-01-04" in day.metadata["history_excluded"]
    kept = json.loads(store.read_bytes(daily.HISTORY.format(day="2026-01-05")))
    assert list(kept["excluded"]) == ["2026-01-04"]
    assert store.exists(lake_key(daily.ASSET, "2026-01-05"))


def test_a_failed_day_is_refused_and_a_missing_day_has_no_rows(store: LocalStore) -> None:
    publish(store, "2026-01-05", passed=False)
    refused = daily.day_inputs(store, CONTRACT, "2026-01-05", history_days=2)
    assert refused.refused and refused.records.empty
    message = daily.refusal_message(refused)
    assert message.startswith("transaction_features 2026-01-05: refusing to consume partitions that did not pass")
    assert "schema_contract (quarantine rate too high)" in message
    missing = daily.day_inputs(store, CONTRACT, "2026-01-06", history_days=2)
    assert not missing.refused and missing.todays.empty
    assert daily.no_rows_message("2026-01-06").startswith("raw_transactions has no rows for 2026-01-06")


def test_online_window_covers_the_ttl_before_the_first_day_and_all_of_the_last() -> None:
    start, end = materialize_window(["2026-01-10", "2026-01-12"], ttl_days=3)
    assert (start, end) == (dt.datetime(2026, 1, 7, tzinfo=dt.UTC), dt.datetime(2026, 1, 13, tzinfo=dt.UTC))
    ok = {"sampled_entities": 5, "mismatched_features": [], "features_missing_online": []}
    assert consistency_verdict(ok) == (True, {"sampled_entities": 5, "mismatches": "[]", "missing_online": "[]"})
    assert not consistency_verdict({**ok, "features_missing_online": ["amount_sum_1d"]})[0]
    assert not consistency_verdict({**ok, "mismatched_features": [{"feature": "amount"}]})[0]
