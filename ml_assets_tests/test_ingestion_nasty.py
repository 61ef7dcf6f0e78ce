"""A determined tester's list of bad landing files, each run through ingestion end to end. Every one is either
quarantined with a reason, refused as a whole with a message that says what was expected and found, or
provably fine (the published value is exactly the delivered one). Nothing is ever lost: a published
partition holds delivered == valid + quarantined rows, and a refused file stays in the landing zone."""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion.ingest import DuplicateDelivery
from ml_assets.ingestion.status import read_status
from ml_assets.ingestion.validate import LandingFileError
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.ingestion_helpers import COLUMNS, DAY, Zone, csv_bytes, parquet_bytes, row, rows, text_table

BASE = 20  # valid rows delivered around each nasty input


@dataclass
class Quarantined:
    reason: str
    rows: int = 1


@dataclass
class Refused:
    error: type[Exception]
    message: str


@dataclass
class Fine:
    check: Callable[[pd.DataFrame], bool] = lambda valid: True
    extra_columns: list[str] | None = None


def with_row(**values: str) -> tuple[bytes, str]:
    return csv_bytes(rows(BASE) + [row(BASE, **values)]), "csv"


def raw(text: str) -> tuple[bytes, str]:
    return text.encode("utf-8"), "csv"


def header() -> str:
    return ",".join(COLUMNS)


def line(r: dict) -> str:
    return ",".join(r[c] for c in COLUMNS)


def last(valid: pd.DataFrame, column: str):
    return valid[column].iloc[-1]


def parquet_with(column: str, array: pa.Array) -> tuple[bytes, str]:
    table = text_table(rows(3))
    return parquet_bytes(table.set_column(table.column_names.index(column), column, array)), "parquet"


GOOD = csv_bytes(rows(BASE))
TS = "event_timestamp"
CASES: dict[str, tuple[Callable[[], tuple[bytes, str]], object]] = {
    # -- bytes and encodings
    "utf-8 byte-order mark": (lambda: (b"\xef\xbb\xbf" + GOOD, "csv"), Fine()),
    "utf-16 file": (lambda: ("\ufeff" + GOOD.decode()).encode("utf-16-le"), None),
    "latin-1 value": (lambda: (csv_bytes(rows(BASE) + [row(BASE, card_id="café")], encoding="latin-1"), "csv"),
                      Refused(LandingFileError, "not valid UTF-8")),
    "NUL byte in an id": (lambda: with_row(transaction_id="tx\x00_1"), Quarantined("control character")),
    "NUL byte in a category": (lambda: with_row(channel="online\x00"), Quarantined("control character")),
    "only NUL bytes": (lambda: (b"\x00" * 64 + b"\n", "csv"), Refused(LandingFileError, "expected")),
    "header only": (lambda: raw(header() + "\n"), Fine(lambda v: len(v) == 0)),
    "empty file": (lambda: (b"", "csv"), Refused(LandingFileError, "empty file (0 bytes)")),
    "no newline at the end": (lambda: (GOOD.rstrip(b"\n"), "csv"), Refused(LandingFileError, "looks truncated")),
    "CRLF line endings": (lambda: (csv_bytes(rows(BASE), newline="\r\n"), "csv"),
                          Fine(lambda v: last(v, "customer_age_band") == row(BASE - 1)["customer_age_band"])),
    "CR-only line endings": (lambda: (csv_bytes(rows(BASE), newline="\r"), "csv"), Fine(lambda v: len(v) == BASE)),
    "blank lines between rows": (lambda: raw(header() + "\n" + line(row(0)) + "\n\n\n" + line(row(1)) + "\n"),
                                 Fine(lambda v: len(v) == 2)),
    "trailing delimiter on every line": (
        lambda: raw(header() + ",\n" + "".join(line(r) + ",\n" for r in rows(BASE))), Fine(extra_columns=[""])),
    "trailing delimiter on one row": (lambda: raw(header() + "\n" + line(row(0)) + ",\n"),
                                      Refused(LandingFileError, "Expected 9 columns, got 10")),
    "quoted newline in a category": (lambda: with_row(channel="on\nline"), Quarantined("violates channel in")),
    "quoted newline in an id": (lambda: with_row(transaction_id="tx\n1"), Quarantined("control character")),
    "quoted CR in an id": (lambda: raw(header() + "\n" + line(row(0)) + "\n" + line(row(1, card_id='"card\r1"')) + "\n"),
                           Quarantined("control character")),
    "unquoted CR inside a field": (lambda: raw(header() + "\n" + line(row(1, card_id="card\r1")) + "\n"),
                                   Refused(LandingFileError, "Expected 9 columns, got")),
    "escaped quotes in an id": (lambda: with_row(transaction_id='tx"1"'), Fine(lambda v: last(v, "transaction_id") ==
                                                                               'tx"1"')),
    "unterminated quote": (lambda: raw(header() + "\n" + line(row(0)) + '\n"tx_9,card\n'),
                           Refused(LandingFileError, "readable csv")),
    "a 1 MB id": (lambda: with_row(transaction_id="x" * 1_000_000),
                  Fine(lambda v: last(v, "transaction_id") == "x" * 1_000_000)),
    "200 extra columns": (lambda: (csv_bytes([dict(r, **{f"x{i}": "1" for i in range(200)}) for r in rows(BASE)],
                                             columns=COLUMNS + [f"x{i}" for i in range(200)]), "csv"),
                          Fine(extra_columns=[f"x{i}" for i in range(200)])),
    "duplicate header column": (lambda: (csv_bytes(rows(BASE), columns=COLUMNS + ["amount"]), "csv"),
                                Refused(LandingFileError, "['amount'] more than once")),
    "header with padded names": (lambda: (csv_bytes(rows(BASE), columns=COLUMNS).replace(b"amount", b" amount ", 1),
                                          "csv"), Refused(LandingFileError, "only by surrounding whitespace")),
    "header in other case": (lambda: (GOOD.replace(b"amount", b"Amount", 1), "csv"),
                             Refused(LandingFileError, "missing ['amount']")),
    "columns reordered": (lambda: (csv_bytes(rows(BASE), columns=COLUMNS[::-1]), "csv"), Fine(lambda v: list(v.columns)
                                                                                            == COLUMNS)),
    "a missing column": (lambda: (csv_bytes(rows(BASE), columns=COLUMNS[:-1]), "csv"),
                         Refused(LandingFileError, "missing ['customer_age_band']")),
    "a row of delimiters only": (lambda: raw(header() + "\n" + line(row(0)) + "\n" + "," * 8 + "\n"),
                                 Quarantined("null where the contract requires a value")),
    # -- numbers
    "1e-400": (lambda: with_row(amount="1e-400"), Quarantined("too small for a float64")),
    "1e400": (lambda: with_row(amount="1e400"), Quarantined("outside the float64 range")),
    "NaN": (lambda: with_row(amount="NaN"), Quarantined("not a finite number")),
    "inf": (lambda: with_row(amount="inf"), Quarantined("not a finite number")),
    "-Infinity": (lambda: with_row(amount="-Infinity"), Quarantined("not a finite number")),
    "negative zero": (lambda: with_row(amount="-0"), Fine(lambda v: math.copysign(1, last(v, "amount")) == -1)),
    "decimal comma": (lambda: with_row(amount="12,50"), Quarantined("not a valid float")),
    "currency sign": (lambda: with_row(amount="$12.50"), Quarantined("not a valid float")),
    "padded number": (lambda: with_row(amount=" 12.50 "), Fine(lambda v: last(v, "amount") == 12.5)),
    "tab-padded number": (lambda: with_row(amount="12.50\t"), Fine(lambda v: last(v, "amount") == 12.5)),
    "scientific notation": (lambda: with_row(amount="1.25E+02"), Fine(lambda v: last(v, "amount") == 125.0)),
    "hex float": (lambda: with_row(amount="0x1p3"), Quarantined("not a valid float")),
    "arabic-indic digits": (lambda: with_row(amount="١٢"), Quarantined("not a valid float")),
    "fullwidth digits": (lambda: with_row(amount="１２"), Quarantined("not a valid float")),
    "40 significant digits": (lambda: with_row(amount="0.1000000000000000055511151231257827021181583404541015625"),
                              Fine(lambda v: last(v, "amount") == 0.1)),
    # The decimal is above max by 1e-12, but the double nearest to it is max itself: range checks compare the
    # stored double (documented in text.py); the stored value is the exact nearest double.
    "just above max, rounds to max": (lambda: with_row(amount="100000.000000000001"),
                                      Fine(lambda v: last(v, "amount") == 100000.0)),
    "above max": (lambda: with_row(amount="100000.01"), Quarantined("columns.amount.max")),
    # -- timestamps
    "leap second": (lambda: with_row(event_timestamp=f"{DAY}T23:59:60Z"), Quarantined("leap second")),
    "hour 24": (lambda: with_row(event_timestamp=f"{DAY}T24:00:00Z"), Quarantined("hour 24")),
    "a date before 1900": (lambda: with_row(event_timestamp="1899-12-31T00:00:00Z"),
                           Quarantined("outside the partition's window")),
    "year 0000": (lambda: with_row(event_timestamp="0000-01-01T00:00:00Z"), Quarantined("years 1678-2260")),
    "a timezone name": (lambda: with_row(event_timestamp=f"{DAY}T10:00:00 Europe/Berlin"),
                        Quarantined("is not a valid datetime")),
    "a timezone abbreviation": (lambda: with_row(event_timestamp=f"{DAY}T10:00:00EST"),
                                Quarantined("is not a valid datetime")),
    "epoch seconds": (lambda: with_row(event_timestamp="1767607200"), Quarantined("is not a valid datetime")),
    "february 30": (lambda: with_row(event_timestamp="2026-02-30T00:00:00Z"), Quarantined("is not a valid datetime")),
    "an offset that moves it to the previous day": (
        lambda: with_row(event_timestamp=f"{DAY}T05:00:00+14:00"), Quarantined("2026-01-04T15:00:00+00:00 is outside")),
    "nanoseconds": (lambda: with_row(event_timestamp=f"{DAY}T05:00:00.123456789Z"),
                    Quarantined("below the microsecond")),
    "lowercase t and z": (lambda: with_row(event_timestamp=f"{DAY}t05:00:00z"), Quarantined("not a valid datetime")),
    "a bare date": (lambda: with_row(event_timestamp=DAY), Fine(lambda v: last(v, TS) == pd.Timestamp(DAY, tz="UTC"))),
    "naive next to offset": (lambda: (csv_bytes([row(0, event_timestamp=f"{DAY}T10:00:00+02:00"),
                                                 row(1, event_timestamp=f"{DAY}T10:00:00")]), "csv"),
                             Fine(lambda v: list(v[TS].dt.hour) == [8, 10])),
    # -- text, categories, ids
    "category in other case": (lambda: with_row(channel="Online"), Quarantined("violates channel in")),
    "padded category": (lambda: with_row(channel=" online"), Quarantined("violates channel in")),
    "padded id": (lambda: with_row(transaction_id="tx_1 "), Quarantined("leading or trailing whitespace")),
    "no-break space around an id": (lambda: with_row(card_id="\u00a0card_1"),
                                    Quarantined("leading or trailing whitespace")),
    "zero-width space in an id (kept as delivered)": (
        lambda: with_row(transaction_id="tx_\u200b1"), Fine(lambda v: last(v, "transaction_id") == "tx_\u200b1")),
    "NFD and NFC forms of one id are two ids": (
        lambda: (csv_bytes([row(0, transaction_id="caf\u00e9"), row(1, transaction_id="cafe\u0301")]), "csv"),
        Fine(lambda v: set(v["transaction_id"]) == {"caf\u00e9", "cafe\u0301"})),
    "formula in an id (data, kept as delivered)": (
        lambda: with_row(transaction_id="=HYPERLINK(\"x\")"), Fine(lambda v: last(v, "transaction_id").startswith("="))),
    "the same row twice": (lambda: (csv_bytes(rows(BASE) + [row(3)]), "csv"), Quarantined("duplicate value")),
    "one id, two different rows": (lambda: (csv_bytes(rows(BASE) + [row(3, amount="1.00")]), "csv"),
                                   Quarantined("duplicate value")),
    "an empty id": (lambda: with_row(transaction_id=""), Quarantined("transaction_id: null where")),
    # -- Parquet
    "parquet: bool where float is declared": (lambda: parquet_with("amount", pa.array([True, False, True])),
                                              Refused(LandingFileError, "bool where float64 is declared")),
    "parquet: float32 amounts": (lambda: parquet_with("amount", pa.array([1.1, 2.2, 3.3], pa.float32())),
                                 Refused(LandingFileError, "single or half precision")),
    "parquet: int ids": (lambda: parquet_with("transaction_id", pa.array([1, 2, 3])),
                         Refused(LandingFileError, "where text is declared")),
    "parquet: a list column": (lambda: parquet_with("channel", pa.array([["a"], ["b"], ["c"]])),
                               Refused(LandingFileError, "where text is declared")),
    "parquet: nanosecond timestamps": (
        lambda: parquet_with(TS, pa.array([pd.Timestamp(f"{DAY}T01:00:00.000000001Z").value,
                                           pd.Timestamp(f"{DAY}T01:00:00.000001Z").value,
                                           pd.Timestamp(f"{DAY}T01:00:00Z").value],
                                          pa.int64()).cast(pa.timestamp("ns", tz="UTC"))),
        Quarantined("below the microsecond")),
    "parquet: zone-aware timestamps": (
        lambda: parquet_with(TS, pa.array([dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)] * 3,
                                          pa.timestamp("us", tz="Asia/Tokyo"))),
        Fine(lambda v: (v[TS] == pd.Timestamp(f"{DAY}T09:00:00Z")).all())),
    "parquet: dictionary-encoded categories": (
        lambda: parquet_with("channel", pa.array(["online", "atm", "online"]).dictionary_encode()),
        Fine(lambda v: v["channel"].tolist() == ["online", "atm", "online"])),
    "parquet: zero rows": (lambda: (parquet_bytes(text_table([])), "parquet"), Fine(lambda v: len(v) == 0)),
    "parquet: truncated": (lambda: (parquet_bytes(text_table(rows(5)))[:-40], "parquet"),
                           Refused(LandingFileError, "readable parquet")),
    "a CSV named .parquet": (lambda: (GOOD, "parquet"), Refused(LandingFileError, "readable parquet")),
}
CASES["utf-16 file"] = (lambda: (("\ufeff" + GOOD.decode()).encode("utf-16-le"), "csv"),
                        Refused(LandingFileError, "UTF-16 byte-order mark"))


@pytest.mark.parametrize("name", list(CASES))
def test_a_nasty_input_is_quarantined_refused_or_provably_fine(tmp_path, name):
    build, expect = CASES[name]
    data, ext = build()
    zone = Zone(tmp_path)
    zone.deliver(DAY, data, ext)
    if isinstance(expect, Refused):
        with pytest.raises(expect.error) as e:
            zone.ingest(DAY)
        assert expect.message in str(e.value) and "expected" in str(e.value), str(e.value)
        assert zone.lake.list("") == [], "nothing published or staged"
        assert zone.landing.read_bytes(f"transactions/{DAY}.{ext}") == data, "the file stays as delivered"
        return
    report = zone.ingest(DAY)
    status = read_status(zone.lake, "raw_transactions", DAY)
    assert status["delivered"] == status["valid"] + status["quarantined"] == report.delivered
    valid, quarantine = zone.valid(DAY), zone.quarantine(DAY)
    assert len(valid) == report.valid and len(quarantine) == report.quarantined
    if isinstance(expect, Quarantined):
        assert report.quarantined == expect.rows, quarantine["_reason"].tolist()
        assert all(expect.reason in r for r in quarantine["_reason"]), quarantine["_reason"].tolist()
    else:
        assert report.quarantined == 0, quarantine["_reason"].tolist()
        assert expect.check(valid)
        if expect.extra_columns is not None:
            assert report.extra_columns == expect.extra_columns


def test_null_markers_are_missing_only_where_the_contract_says_so(tmp_path):
    text_null = with_row(card_id="NULL")
    zone = Zone(tmp_path / "plain")
    zone.deliver(DAY, text_null[0])
    assert zone.ingest(DAY).quarantined == 0 and zone.valid(DAY)["card_id"].iloc[-1] == "NULL"
    contract = load_contract(write_contract(tmp_path / "c.yaml", ingestion={"null_markers": ["NULL", "N/A"]}))
    zone = Zone(tmp_path / "markers", contract)
    zone.deliver(DAY, csv_bytes(rows(BASE) + [row(BASE, card_id="NULL"), row(BASE + 1, amount="N/A")]))
    report = zone.ingest(DAY)
    assert report.quarantined == 2
    assert {r.split(":")[0] for r in zone.quarantine(DAY)["_reason"]} == {"card_id", "amount"}
    assert all("null where the contract requires a value" in r for r in zone.quarantine(DAY)["_reason"])


def test_a_redelivery_in_excel_quoting_is_still_the_same_content(tmp_path):
    zone = Zone(tmp_path)
    zone.deliver("2026-01-04", csv_bytes(rows(BASE, "2026-01-04")))
    zone.ingest("2026-01-04")
    zone.deliver(DAY, csv_bytes(rows(BASE, "2026-01-04"), quoting=csv.QUOTE_NONNUMERIC, newline="\r\n"))
    with pytest.raises(DuplicateDelivery, match="already ingested in partition"):
        zone.ingest(DAY)


def test_a_file_cut_inside_a_quoted_field_is_refused_but_a_lone_quote_in_a_field_is_data(tmp_path):
    zone = Zone(tmp_path / "cut")
    zone.deliver(DAY, (header() + "\n" + line(row(0)) + "\n" + line(row(1))[:-5] + '"open' + "\n").encode())
    with pytest.raises(LandingFileError, match="a quote left open at the end of the file"):
        zone.ingest(DAY)
    zone = Zone(tmp_path / "lone")
    zone.deliver(DAY, csv_bytes(rows(BASE) + [row(BASE, card_id='card_12"')]))
    assert zone.ingest(DAY).quarantined == 0 and zone.valid(DAY)["card_id"].iloc[-1] == 'card_12"'


def test_a_large_file_parsed_in_parts_gives_the_rows_of_the_whole_file(tmp_path):
    """Files from 8 MB on are split at record boundaries and parsed in parallel: quoted line breaks
    near the split point must not move a row across it."""
    from ml_assets.ingestion.validate import _SPLIT_BYTES, read_landing_file

    records = rows(110_000)
    for i in range(0, len(records), 3):
        records[i]["card_id"] = f"card\n{i}"  # quoted line breaks everywhere, so around the split too
    data = csv_bytes(records)
    assert len(data) >= _SPLIT_BYTES
    table = read_landing_file(data, "t/2026-01-05.csv")
    assert table.column("card_id").num_chunks == 2
    assert table.column("card_id").to_pylist() == [r["card_id"] for r in records]
    assert table.column("transaction_id").to_pylist() == [r["transaction_id"] for r in records]
