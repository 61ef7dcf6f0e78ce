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


NASTY = {
    "datetime": ["2026-01-01T23:59:60Z", "2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
                 "0000-01-01T00:00:00Z", "2999-12-31T23:59:59Z", "2026-01-01T24:00:00Z", "2026-01-01T05:06:07Z",
                 " 2026-01-01T05:06:07Z", "2026-01-01 05:06:07", "", None, "x", "2026-04-31T00:00:00Z"],
    "float": ["1", "-0", "0012.50", "123456789.123456", "1e5", " 3", "NaN", "inf", "", "abc", "-1.5", "1.", ".5",
              "2.675", "99999.99", None],
    "int": ["1", "1.0", "007", "-3", "2.5", "", "x", "999999999999999", " 4 "],
    "category": ["a", " a", "a\x1f", "\u00a0a", "", "  ", "ok", None, "é", "a b", "x\n", "ok"],
}


@pytest.mark.parametrize(("dtype", "allowed"), [(d, None) for d in NASTY] + [("category", ["a", "ok", " a", "x\n"])])
def test_the_vectorised_parser_agrees_with_the_pandas_parser(dtype, allowed):
    """The Arrow fast path may only speed things up: same values, same rejects, same blanks."""
    import numpy as np
    import pyarrow as pa

    from ml_assets.contract.model import Column
    from ml_assets.ingestion.validate import _empty, _parse_column, _parse_column_fast

    rng = np.random.default_rng(0)
    values = NASTY[dtype] + ([f"{x:.2f}" for x in rng.lognormal(3, 2, 5000)] if dtype == "float" else [])
    spec = Column(dtype=dtype, allowed=allowed)
    for raw in (pd.Series(values, dtype=object), pd.Series(values, dtype=pd.ArrowDtype(pa.string()))):
        ref_values, ref_bad = _parse_column(raw.astype(object), spec)
        fast_values, fast_bad, n_empty, _text = _parse_column_fast(raw, spec)
        pd.testing.assert_series_equal(fast_values, ref_values, check_names=False)
        assert fast_bad.tolist() == ref_bad.tolist()
        assert n_empty == int(_empty(raw.astype(object)).sum())


def test_pandera_on_the_suspect_rows_finds_exactly_what_it_finds_on_every_row(landing):
    import pandera.pandas as pandera

    from ml_assets.ingestion.validate import _parse_column, pandera_schema, suspect_rows

    raw = day_csv(landing)
    raw.loc[0, "amount"] = "-5"
    raw.loc[1, "channel"] = "carrier_pigeon"
    raw.loc[2, "card_id"] = ""
    raw.loc[[3, 7, 9], "transaction_id"] = raw.loc[20, "transaction_id"]  # one value four times
    raw.loc[4, "amount"] = "100000.01"
    typed = pd.DataFrame({n: _parse_column(raw[n], s)[0] for n, s in CONTRACT.columns.items()})
    schema = pandera_schema(CONTRACT.columns)

    def failures(frame: pd.DataFrame) -> set[tuple]:
        try:
            schema.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as e:
            return {(r.index, r.column, str(r.check)) for r in e.failure_cases.itertuples() if r.index is not None}
        return set()

    everywhere = failures(typed)
    suspect = suspect_rows(typed, CONTRACT.columns)
    assert {i for i, _, _ in everywhere} <= set(typed.index[suspect])
    assert failures(typed.loc[suspect]) == everywhere
    assert {i for i, c, _ in everywhere if c == "transaction_id"} == {7, 9, 20}  # the first (row 3) stays
    assert not suspect_rows(typed.drop(index=list(suspect[suspect].index)), CONTRACT.columns).any()
