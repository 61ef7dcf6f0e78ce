"""D1 / S2: file-level problems fail loudly; row-level problems are quarantined, never dropped; values are
parsed exactly, each on its own terms."""

import datetime as dt
import random
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion.ingest import SourceMissing, ingest_partition
from ml_assets.ingestion.validate import LandingFileError, read_landing_file, validate_records
from ml_assets.retry import SourceUnavailable, with_retries
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets.storage import LocalStore
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.ingestion_helpers import (
    CONTRACT,
    DAY,
    Zone,
    csv_bytes,
    parquet_bytes,
    row,
    rows,
    text_table,
)


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    simulate(root, SimulationConfig(start_date=dt.date(2026, 1, 1), days=1, n_cards=300))
    return root


def day_csv(landing) -> pd.DataFrame:
    return pd.read_csv(landing / "transactions" / "2026-01-01.csv", dtype=str, keep_default_na=False)


def quarantined(result) -> dict[int, str]:
    q = result.quarantine
    return dict(zip(q["_row_number"], q["_reason"], strict=True))


def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost(landing):
    raw = day_csv(landing)
    raw.loc[0, "amount"] = "abc"
    raw.loc[1, "amount"] = "-5"
    raw.loc[2, "channel"] = "carrier_pigeon"
    raw.loc[3, "card_id"] = ""
    raw.loc[4, "transaction_id"] = raw.loc[5, "transaction_id"]
    result = validate_records(raw, CONTRACT, "t.csv")
    assert result.delivered == len(raw) == len(result.valid) + len(result.quarantine)
    q = quarantined(result)
    assert "not a valid float" in q[2]          # row 0 -> CSV record 2 (the header is record 1)
    assert "amount >= 0.0 (columns.amount.min)" in q[3]
    assert "channel" in q[4] and "carrier_pigeon" in q[4]
    assert "card_id: null where the contract requires a value" in q[5]
    assert "duplicate" in q[7]                  # row 5 repeats row 4's id: the later occurrence goes
    # the original text of a quarantined row is kept as delivered
    qt = result.quarantine.set_index("_row_number")
    assert qt.loc[4, "channel"] == "carrier_pigeon" and qt.loc[2, "amount"] == "abc"
    assert len(result.quarantine) == 5


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda df: df.drop(columns=["amount"]), "missing ['amount']"),
        (lambda df: df.rename(columns={"amount": "amt"}), "renamed"),
        (lambda df: df.rename(columns={"amount": " amount"}), "only by surrounding whitespace"),
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
    assert lake.list("staging") == []


def test_ingest_writes_valid_and_quarantine_atomically_and_reproducibly(tmp_path, landing):
    lake = LocalStore(tmp_path / "lake")
    src = LocalStore(landing)
    first = ingest_partition("records", src, lake, CONTRACT, "2026-01-01", "raw_transactions")
    bytes_1 = lake.read_bytes(first.output_key)
    second = ingest_partition("records", src, lake, CONTRACT, "2026-01-01", "raw_transactions")
    assert lake.read_bytes(second.output_key) == bytes_1, "re-running a partition gives identical output (D5)"
    assert first.delivered == first.valid + first.quarantined
    assert second.redelivery, "the same content for the same day is recognised as a re-delivery"
    assert not list((tmp_path / "lake").rglob("*.tmp")), "no temporary files left behind"
    assert lake.list("staging") == []


def test_published_schema_is_what_the_pandas_readers_downstream_expect(tmp_path, landing):
    lake = LocalStore(tmp_path / "lake")
    ingest_partition("records", LocalStore(landing), lake, CONTRACT, "2026-01-01", "raw_transactions")
    df = lake.read_parquet("raw_transactions/2026-01-01.parquet")
    assert str(df["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert df["amount"].dtype == "float64"
    for name in ("transaction_id", "card_id", "merchant_category", "channel", "customer_age_band"):
        assert df[name].dtype == object and isinstance(df[name].iloc[0], str), name  # text, not Categorical
    source = day_csv(landing)
    assert df["transaction_id"].tolist() == source["transaction_id"].tolist()
    assert df["amount"].tolist() == [float(v) for v in source["amount"]]


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

    data_errors = []

    def bad_data():
        data_errors.append(1)
        raise LandingFileError("f.csv", "a column", "two")

    with pytest.raises(LandingFileError):
        with_retries(bad_data, "source", sleep=lambda s: None)
    assert data_errors == [1], "a data error is never retried as if it were transient"


# ---- each value on its own terms ------------------------------------------------------------
def validate(records: list[dict], contract=CONTRACT, partition: str | None = DAY, source: str = "t/2026-01-05.csv"):
    return validate_records(text_table(records), contract, source, partition)


def test_a_naive_timestamp_next_to_an_offset_one_is_not_shifted_by_its_neighbour():
    result = validate([row(0, event_timestamp="2026-01-05T10:00:00+05:00"),
                       row(1, event_timestamp="2026-01-05T10:00:00"),
                       row(2, event_timestamp="2026-01-05 10:00:00Z"),
                       row(3, event_timestamp="2026-01-05T10:00:00.250-02:30")])
    ts = result.valid_table.column("event_timestamp").to_pylist()
    utc = dt.UTC
    assert ts == [dt.datetime(2026, 1, 5, 5, tzinfo=utc), dt.datetime(2026, 1, 5, 10, tzinfo=utc),
                  dt.datetime(2026, 1, 5, 10, tzinfo=utc), dt.datetime(2026, 1, 5, 12, 30, 0, 250000, tzinfo=utc)]
    assert result.quarantined == 0


def test_the_contract_decides_whether_naive_timestamps_are_utc_or_refused(tmp_path):
    refuse = load_contract(write_contract(tmp_path / "c.yaml", records={"naive_timestamps": "refuse"}))
    result = validate([row(i) for i in range(5)] + [row(5, event_timestamp="2026-01-05T10:00:00")], refuse)
    assert result.quarantined == 1
    assert "has no UTC offset and records.naive_timestamps is 'refuse'" in quarantined(result)[7]
    with pytest.raises(LandingFileError, match="set it to 'utc' if the source writes UTC"):
        validate([row(i, event_timestamp="2026-01-05T10:00:00") for i in range(5)], refuse)


def test_rows_outside_the_partitions_day_are_quarantined_and_a_file_entirely_outside_fails(tmp_path):
    records = [row(0), row(1, event_timestamp="2026-01-04T23:30:00Z"), row(2, event_timestamp="2027-01-05T10:00:00Z"),
               row(3, event_timestamp="2026-01-06T00:00:00Z")]
    result = validate(records)
    q = quarantined(result)
    assert set(q) == {3, 4, 5}
    assert "outside the partition's window [2026-01-05T00:00:00+00:00, 2026-01-06T00:00:00+00:00)" in q[4]
    assert "records.late_tolerance_hours 0" in q[4]
    late = load_contract(write_contract(tmp_path / "c.yaml", records={"late_tolerance_hours": 1}))
    assert set(quarantined(validate(records, late))) == {4, 5}, "a late event within the tolerance is accepted"
    with pytest.raises(LandingFileError, match="all 3 parsed event times outside it, from 2027-01-05"):
        validate([row(i, day="2027-01-05") for i in range(3)])


def test_identifiers_are_never_stripped_and_padded_ones_are_quarantined():
    result = validate([row(0), row(1, transaction_id=" tx_1"), row(2, card_id="card_7\t"),
                       row(3, transaction_id="tx_\u00a03"), row(4, card_id="\u00a0card")])
    q = quarantined(result)
    assert set(q) == {3, 4, 6}
    assert "leading or trailing whitespace" in q[3] and "' tx_1'" in q[3]
    assert result.valid_table.column("transaction_id").to_pylist() == [row(0)["transaction_id"], "tx_\u00a03"]


@pytest.mark.parametrize(("text", "reason"), [
    ("1e-400", "too small for a float64"), ("4.9e-324", "too small for a float64"), ("1e400", "outside the float64 range"),
    ("NaN", "not a finite number"), ("inf", "not a finite number"), ("-Infinity", "not a finite number"),
    ("0x10", "not a valid float"), ("1,5", "not a valid float"), ("1_000", "not a valid float"), ("--1", "not a valid float"),
])
def test_floats_a_double_cannot_hold_exactly_are_refused_not_changed(text, reason):
    result = validate([row(0), row(1, amount=text)])
    assert reason in quarantined(result)[3] and len(result.valid) == 1


def test_floats_are_the_nearest_double_to_the_delivered_decimal():
    """What "exact" means for floats: the value any correctly rounding parser gives (here Python's float),
    with no float32 detour; -0 stays -0.0; 0.0 only for a decimal that is zero."""
    rng = random.Random(7)
    texts = ["0", "-0", "0.000", "1", "2.675", "0.1", "99999.99", "1e3", "1.5E-2", ".5", "5.", "+7", "00012.50",
             "123456.789012345678901234", "9007199254740993", "2.2250738585072014e-308"]
    texts += [f"{rng.uniform(0, 1e5):.{rng.randint(0, 12)}f}" for _ in range(300)]
    texts += [f"{rng.uniform(0, 9.99)}e{rng.randint(-300, 4)}" for _ in range(300)]
    table = pa.table({"x": pa.array(texts)})
    from ml_assets.contract.model import Column
    from ml_assets.ingestion.validate import validate_frame

    result = validate_frame(table, {"x": Column(dtype="float", nullable=False)}, "t.csv")
    assert result.quarantined == 0
    got = result.valid_table.column("x").to_pylist()
    assert [v.hex() for v in got] == [float(t).hex() for t in texts]
    assert np.signbit(got[1]) and not np.signbit(got[2])


def test_ints_are_exact_beyond_float_precision():
    from ml_assets.contract.model import Column
    from ml_assets.ingestion.validate import validate_frame

    texts = ["9007199254740993", "-9223372036854775808", "9223372036854775807", "007", "+5", "1.000", "1e3",
             "9223372036854775808", "1.5", "", "x"]
    result = validate_frame(pa.table({"n": pa.array(texts)}), {"n": Column(dtype="int", nullable=True)}, "t.csv")
    assert result.valid_table.column("n").to_pylist() == [9007199254740993, -9223372036854775808, 9223372036854775807, 7, 5,
                                                    1, 1000, None]
    q = quarantined(result)
    assert "outside the int64 range" in q[9] and "is not an integer" in q[10] and "not a valid int" in q[12]


def test_timestamps_keep_their_microseconds_and_refuse_finer_digits():
    result = validate([row(0, event_timestamp="2026-01-05T01:02:03.123456Z"),
                       row(1, event_timestamp="2026-01-05T01:02:03.123456000Z"),
                       row(2, event_timestamp="2026-01-05T01:02:03.123456789Z")])
    assert [t.microsecond for t in result.valid_table.column("event_timestamp").to_pylist()] == [123456, 123456]
    assert "digits below the microsecond" in quarantined(result)[4]


def test_a_duplicate_header_column_fails_at_once_naming_the_file_and_the_column():
    data = csv_bytes(rows(3), columns=[*CONTRACT.columns, "amount"])
    with pytest.raises(LandingFileError, match=r"t/2026-01-05.csv: expected each column named once; found "
                                               r"column\(s\) \['amount'\] more than once"):
        read_landing_file(data, "t/2026-01-05.csv", CONTRACT.columns)


@pytest.mark.parametrize(("column", "array", "found"), [
    ("amount", pa.array([True, False, True]), "bool where float64 is declared"),
    ("amount", pa.array([1.5, 2.5, 3.5], type=pa.float32()), "single or half precision"),
    ("transaction_id", pa.array([1, 2, 3]), "int64 where text is declared"),
    ("event_timestamp", pa.array([dt.date(2026, 1, 5)] * 3), "date32[day] where a timestamp is declared"),
])
def test_parquet_columns_of_the_wrong_type_fail_the_file(tmp_path, column, array, found):
    table = text_table(rows(3))
    table = table.set_column(table.column_names.index(column), column, array)
    zone = Zone(tmp_path)
    zone.deliver(DAY, parquet_bytes(table), "parquet")
    with pytest.raises(LandingFileError, match=re.escape(found)):
        zone.ingest(DAY)
    assert zone.lake.list("") == []


def test_typed_parquet_values_are_taken_exactly(tmp_path):
    table = text_table(rows(3))
    ts = pa.array([dt.datetime(2026, 1, 5, 1, 2, 3, 456789, tzinfo=dt.UTC)] * 2 + [None],
                  type=pa.timestamp("ns", tz="Europe/Berlin"))
    table = table.set_column(2, "event_timestamp", ts)
    table = table.set_column(3, "amount", pa.array([1, 2, 2**53 + 1], type=pa.int64()))
    zone = Zone(tmp_path)
    zone.deliver(DAY, parquet_bytes(table), "parquet")
    report = zone.ingest(DAY)
    assert report.delivered == 3 and report.valid == 2
    valid = zone.valid(DAY)
    assert (valid["event_timestamp"] == pd.Timestamp("2026-01-05T01:02:03.456789Z")).all()
    assert valid["amount"].tolist() == [1.0, 2.0]
    reasons = zone.quarantine(DAY).set_index("_row_number")["_reason"]
    assert "beyond 2**53, which a float64 cannot hold exactly" in reasons[3]
    assert "event_timestamp: null where the contract requires a value" in reasons[3]
