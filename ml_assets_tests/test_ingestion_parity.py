"""Parity: the Arrow validator quarantines exactly the rows the previous (pandas + pandera) validator did, for
the same reasons, and publishes the same values - on every input where the previous one was right.

`legacy_validate.py` is a frozen copy of that validator. Where the two differ on purpose (the old one
stripped identifiers, accepted `inf`, turned `1e-400` into 0.0, shifted naive timestamps by a neighbour's
offset, ...), the new behaviour has its own tests in test_ingestion.py and test_ingestion_nasty.py.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_assets.ingestion.validate import validate_records
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets_tests import legacy_validate
from ml_assets_tests.ingestion_helpers import CONTRACT

BAD_VALUES = {
    "amount": ["-1", "abc", "100000.01", "", "-0.5", "1e6", "12.5.1"],
    "channel": ["carrier_pigeon", "", "ONLINE"],  # "atm " differs on purpose: the old validator stripped it
    "merchant_category": ["", "groceries", "travel2"],
    "card_id": [""],
    "transaction_id": [""],
    "event_timestamp": ["x", "", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z", "yesterday"],
    "country": ["XX", "", "us"],
}


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    sim = simulate(root, SimulationConfig(start_date=dt.date(2026, 1, 1), days=4, n_cards=2000))
    return [pd.read_csv(p, dtype=str, keep_default_na=False) for p in sim.transaction_files]


def sprinkle(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Row-level problems the previous validator judged correctly, a few per column, plus repeated ids."""
    rng = np.random.default_rng(seed)
    df = df.copy()
    for column, values in BAD_VALUES.items():
        for value in values:
            for i in rng.choice(len(df), size=3, replace=False):
                df.loc[i, column] = value
    for i in rng.choice(len(df), size=5, replace=False):
        df.loc[i, "transaction_id"] = df.loc[int(rng.integers(len(df))), "transaction_id"]
    return df


def columns_per_row(quarantine: pd.DataFrame) -> dict[int, set[str]]:
    return {int(n): {part.split(":")[0].strip() for part in reason.split("; ")}
            for n, reason in zip(quarantine["_row_number"], quarantine["_reason"], strict=True)}


@pytest.mark.parametrize("seed", range(4))
def test_the_same_rows_are_quarantined_for_the_same_columns_and_the_same_values_published(days, seed):
    raw = sprinkle(days[seed], seed)
    source = "transactions/2026-01-01.csv"
    old = legacy_validate.validate_records(raw, CONTRACT, source)
    new = validate_records(raw, CONTRACT, source)
    assert new.delivered == old.delivered == len(raw)
    assert columns_per_row(new.quarantine) == columns_per_row(old.quarantine)
    assert new.quarantined > 60, "the sprinkle reached the validators"
    got = new.valid
    want = old.valid.reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    for name in CONTRACT.columns:
        if CONTRACT.columns[name].dtype == "float":
            assert np.array_equal(got[name].to_numpy(), want[name].to_numpy()), name
        elif CONTRACT.columns[name].dtype == "datetime":
            assert (got[name] == want[name]).all(), name
        else:
            assert got[name].tolist() == want[name].tolist(), name


def test_clean_simulated_days_pass_both_untouched(days):
    for df in days:
        old = legacy_validate.validate_records(df, CONTRACT, "t.csv")
        new = validate_records(df, CONTRACT, "t.csv")
        assert old.quarantine.empty and new.quarantined == 0
        assert new.valid["transaction_id"].tolist() == old.valid["transaction_id"].tolist()
