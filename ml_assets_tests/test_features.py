import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_assets.contract import load_contract, window_to_timedelta
from ml_assets.features.compute import aggregate, compute_features

CONTRACT = load_contract()


def random_records(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    ts = start + pd.to_timedelta(rng.integers(0, 9 * 86400, size=n), unit="s")
    return pd.DataFrame({
        "transaction_id": [f"t{i}" for i in range(n)],
        "card_id": rng.choice([f"c{i}" for i in range(40)], size=n),
        "event_timestamp": ts,
        "amount": np.round(rng.lognormal(3, 1, size=n), 2),
        "merchant_category": rng.choice(["grocery", "travel"], size=n),
        "channel": rng.choice(["online", "in_store"], size=n),
        "country": rng.choice(["US", "NG"], size=n),
        "home_country": "US",
        "customer_age_band": "30-44",
    })


def pandas_reference(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The obvious implementation, kept as the oracle for the vectorised one."""
    ordered = df.sort_values(["card_id", "event_timestamp"], kind="stable")
    out = {}
    for spec in CONTRACT.features.aggregates:
        g = ordered.set_index("event_timestamp").groupby(ordered["card_id"].to_numpy(), sort=False)[spec.column]
        for w in spec.windows:
            rolling = g.rolling(window_to_timedelta(w), closed="right")
            for fn in spec.functions:
                col = np.empty(len(df))
                col[df.index.get_indexer(ordered.index)] = getattr(rolling, fn)().to_numpy()
                out[f"{spec.column}_{fn}_{w}"] = col
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_aggregates_match_pandas_rolling(seed):
    df = random_records(3000, seed)
    # ties: the same card at the same second must count both records, like pandas does
    df.loc[1, ["card_id", "event_timestamp"]] = df.loc[0, ["card_id", "event_timestamp"]].to_numpy()
    got, want = aggregate(df, CONTRACT), pandas_reference(df)
    assert set(got) == set(want) == set(CONTRACT.aggregate_names)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-6, err_msg=name)


def test_window_is_half_open_and_per_entity():
    t0 = pd.Timestamp("2026-01-02", tz="UTC")
    df = pd.DataFrame({
        "transaction_id": ["a", "b", "c", "d"],
        "card_id": ["x", "x", "x", "y"],
        "event_timestamp": [t0, t0 + pd.Timedelta(hours=1), t0 + pd.Timedelta(hours=1, seconds=1), t0],
        "amount": [10.0, 20.0, 40.0, 1000.0],
    })
    agg = aggregate(df, CONTRACT)
    # 1h window ending at b excludes a (exactly 1h earlier); card y never mixes with x
    assert list(agg["amount_count_1h"]) == [1, 1, 2, 1]
    assert list(agg["amount_sum_1d"]) == [10, 30, 70, 1000]
    assert list(agg["amount_max_7d"]) == [10, 20, 40, 1000]


def test_features_of_a_day_use_the_history_before_it():
    df = random_records(2000, 5)
    day = dt.date(2026, 1, 8)
    feats = compute_features(df, CONTRACT, day)
    assert (feats["event_timestamp"].dt.date == day).all()
    assert len(feats) == int((df["event_timestamp"].dt.date == day).sum())
    assert (feats["amount_count_7d"] >= feats["amount_count_1d"]).all()
    assert feats["amount_count_7d"].max() > feats["amount_count_1d"].max(), "history from earlier days is counted"
    assert set(feats["is_foreign"]) == {0, 1} and feats["hour_of_day"].between(0, 23).all()
