"""D1 / S2: file-level problems fail loudly; row-level problems are quarantined, never dropped."""

import datetime as dt

import pandas as pd
import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion.ingest import SourceMissing, ingest_partition
from ml_assets.ingestion.validate import LandingFileError, read_landing_file, validate_records
from ml_assets.retry import SourceUnavailable, with_retries
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets.storage import LocalStore

CONTRACT = load_contract()


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    simulate(root, SimulationConfig(start_date=dt.date(2026, 1, 1), days=1, n_cards=300))
    return root


def day_csv(landing) -> pd.DataFrame:
    return pd.read_csv(landing / "transactions" / "2026-01-01.csv", dtype=str, keep_default_na=False)


def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost(landing):
    raw = day_csv(landing)
    raw.loc[0, "amount"] = "abc"
    raw.loc[1, "amount"] = "-5"
    raw.loc[2, "channel"] = "carrier_pigeon"
    raw.loc[3, "card_id"] = ""
    raw.loc[4, "transaction_id"] = raw.loc[5, "transaction_id"]
    result = validate_records(raw, CONTRACT, "t.csv")
    assert result.delivered == len(raw) == len(result.valid) + len(result.quarantine)
    reasons = dict(zip(result.quarantine["transaction_id"], result.quarantine["_reason"], strict=True))
    q = result.quarantine.set_index("_row_number")
    assert "not a valid float" in q.loc[2, "_reason"]          # row 0 -> CSV line 2
    assert "amount >= 0.0" in q.loc[3, "_reason"]
    assert "channel" in q.loc[4, "_reason"]
    assert "null" in q.loc[5, "_reason"]
    assert any("duplicate" in r for r in reasons.values())
    # the original text of a quarantined row is kept as delivered
    assert q.loc[4, "channel"] == "carrier_pigeon"
    assert len(result.quarantine) == 5


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda df: df.drop(columns=["amount"]), "missing ['amount']"),
        (lambda df: df.rename(columns={"amount": "amt"}), "renamed"),
        (lambda df: df.assign(amount="twelve"), "column 'amount' of type float"),
    ],
)
def test_file_level_violations_fail_with_expected_and_found(landing, mutate, expected):
    with pytest.raises(LandingFileError) as e:
        validate_records(mutate(day_csv(landing)), CONTRACT, "landing/transactions/2026-01-01.csv")
    msg = str(e.value)
    assert "landing/transactions/2026-01-01.csv" in msg and "expected" in msg and "found" in msg
    assert expected in msg


def test_unreadable_files_fail_and_stay_in_place(tmp_path, landing):
    lake = LocalStore(tmp_path / "lake")
    drop = LocalStore(tmp_path / "landing")
    good = (landing / "transactions" / "2026-01-01.csv").read_bytes()
    drop.write_bytes("transactions/2026-01-02.csv", b"")
    drop.write_bytes("transactions/2026-01-03.csv", good[: len(good) // 2])  # cut off mid-row
    short_row = good + b"tx_short,card_000001\n"
    drop.write_bytes("transactions/2026-01-06.csv", short_row)
    drop.write_bytes("transactions/2026-01-04.xlsx", good)
    for day, needle in [("2026-01-02", "empty file"), ("2026-01-03", "looks truncated"),
                        ("2026-01-06", "Expected 9 columns, got 2")]:
        with pytest.raises(LandingFileError, match=needle):
            ingest_partition("records", drop, lake, CONTRACT, day, "raw_transactions")
        assert drop.exists(f"transactions/{day}.csv"), "a bad delivery is kept for inspection"
        assert not lake.exists(f"raw_transactions/{day}.parquet"), "nothing is published from a bad file"
    with pytest.raises(SourceMissing, match="found only"):
        ingest_partition("records", drop, lake, CONTRACT, "2026-01-04", "raw_transactions")
    with pytest.raises(SourceMissing, match="found nothing"):
        ingest_partition("records", drop, lake, CONTRACT, "2026-01-05", "raw_transactions")
    with pytest.raises(LandingFileError, match="ending in"):
        read_landing_file(good, "x.json")


def test_ingest_writes_valid_and_quarantine_atomically_and_reproducibly(tmp_path, landing):
    lake = LocalStore(tmp_path / "lake")
    src = LocalStore(landing)
    first = ingest_partition("records", src, lake, CONTRACT, "2026-01-01", "raw_transactions")
    bytes_1 = lake.read_bytes(first.output_key)
    second = ingest_partition("records", src, lake, CONTRACT, "2026-01-01", "raw_transactions")
    assert lake.read_bytes(second.output_key) == bytes_1, "re-running a partition gives identical output (D5)"
    assert first.delivered == first.valid + first.quarantined
    assert not list((tmp_path / "lake").rglob("*.tmp")), "no temporary files left behind"


def test_transient_errors_retry_with_backoff_then_fail_loudly():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("connection reset")
        return "ok"

    assert with_retries(flaky, "source", sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]

    def down():
        raise TimeoutError("no route")

    with pytest.raises(SourceUnavailable, match="still failing after 4 attempts"):
        with_retries(down, "source", sleep=lambda s: None)
