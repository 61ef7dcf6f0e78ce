"""Property: whatever a landing file holds, ingestion either publishes it with delivered == valid + quarantined
and every published value equal to what was delivered (checked against Python's own parsers), or refuses the
partition with the project's own error type (IngestionError) - never another exception, never a changed value.

Files are generated from the demo contract, then mutated in their values, columns, encoding and bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_assets.ingestion.validate import IngestionError
from ml_assets_tests.ingestion_helpers import COLUMNS, CONTRACT, DAY, Zone, row

NASTY_TEXT = ["", " ", "\x00", "NaN", "inf", "-0", "1e-400", "1e400", "0x10", "١", "１", "1,5", " 7 ", "\u00a0x",
              "x\n", "\r", "\t", '"', "'", ",", "NULL", "None", "é", "\ufeff", "2026-01-05", "2026-01-05T24:00:00Z",
              "2026-01-05T23:59:60Z", "2026-01-05T10:00:00+14:00", "2026-01-05 10:00:00", "2026-01-05T10:00:00.1234567Z",
              "1899-12-31T00:00:00Z", "2026-02-30T00:00:00Z", "online", "atm", "US", "65+", "grocery"]
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def timestamps() -> st.SearchStrategy[str]:
    seconds = st.integers(0, 86399)
    micro = st.sampled_from(["", ".5", ".123456", ".000001", ".123456000"])
    zone = st.sampled_from(["Z", "", "+00:00", "+01:00", "-05:30", "+0000"])
    sep = st.sampled_from(["T", " "])
    return st.builds(lambda s, m, z, sp: f"{DAY}{sp}{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{m}{z}"
                     if z in ("", "Z", "+00:00", "+0000") else f"{DAY}{sp}12:{s // 60 % 60:02d}:{s % 60:02d}{m}{z}",
                     seconds, micro, zone, sep)


def amounts() -> st.SearchStrategy[str]:
    return st.one_of(st.floats(0, 100000, allow_nan=False).map(repr),
                     st.decimals(0, 100000, places=2, allow_nan=False, allow_infinity=False).map(str),
                     st.floats(0, 1000, allow_nan=False).map(lambda v: f"{v:e}"))


def records() -> st.SearchStrategy[list[dict[str, str]]]:
    def make(n, ts, am):
        out = []
        for i in range(n):
            r = row(i)
            r["event_timestamp"], r["amount"] = ts[i % len(ts)], am[i % len(am)]
            out.append(r)
        return out

    return st.builds(make, st.integers(0, 25), st.lists(timestamps(), min_size=1, max_size=5),
                     st.lists(amounts(), min_size=1, max_size=5))


@st.composite
def landing_files(draw) -> tuple[bytes, str]:
    rs = draw(records())
    columns = list(COLUMNS)
    # values
    for r in rs:
        if draw(st.booleans()) and draw(st.booleans()):
            col = draw(st.sampled_from(columns))
            r[col] = draw(st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=12)))
    # columns
    op = draw(st.sampled_from(["none", "none", "shuffle", "drop", "duplicate", "extra", "rename"]))
    if op == "shuffle":
        columns = draw(st.permutations(columns))
    elif op == "drop":
        columns.remove(draw(st.sampled_from(columns)))
    elif op == "duplicate":
        columns.append(draw(st.sampled_from(columns)))
    elif op == "extra":
        columns.append("extra")
    elif op == "rename":
        i = draw(st.integers(0, len(columns) - 1))
        columns[i] = columns[i].upper()
    if draw(st.integers(0, 4)) == 0:
        typed = draw(st.booleans())
        table = pa.table({c: pa.array([r.get(c, "x") for r in rs], type=pa.string()) for c in dict.fromkeys(columns)})
        if typed and "amount" in table.column_names:
            kind = draw(st.sampled_from(["float64", "float32", "int64", "bool"]))
            values = {"float64": [1.5] * len(rs), "float32": [1.5] * len(rs), "int64": [3] * len(rs),
                      "bool": [True] * len(rs)}[kind]
            table = table.set_column(table.column_names.index("amount"), "amount", pa.array(values, type=kind))
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data, ext = buf.getvalue(), "parquet"
    else:
        text = io.StringIO()
        w = csv.writer(text, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])),
                       quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
        w.writerow(columns)
        for r in rs:
            w.writerow([r.get(c, "") for c in columns])
        encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
        try:
            data = text.getvalue().encode(encoding)
        except UnicodeEncodeError:
            data = text.getvalue().encode("utf-8")
        ext = "csv"
    # bytes
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "insert", "flip"]))
    if damage != "none" and data:
        at = draw(st.integers(0, len(data) - 1))
        if damage == "truncate":
            data = data[:at]
        elif damage == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
        else:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data, ext


def _reference_rows(data: bytes, ext: str) -> list[dict] | None:
    """The delivered rows, read by Python's csv module or pyarrow's Parquet reader (None if they cannot)."""
    try:
        if ext == "parquet":
            return pq.read_table(io.BytesIO(data)).to_pylist()
        text = data.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader)
        return [dict(zip(header, r, strict=True)) for r in reader if r]
    except Exception:  # noqa: BLE001 - then only the counts are checked
        return None


def _expected(name: str, delivered, published) -> bool:
    """Is `published` exactly the delivered value, as Python reads it?"""
    dtype = CONTRACT.columns[name].dtype
    if not isinstance(delivered, str):  # typed Parquet
        if dtype == "float":
            return float(delivered) == published and math.copysign(1, float(delivered)) == math.copysign(1, published)
        if dtype == "datetime":
            return delivered.replace(tzinfo=delivered.tzinfo or dt.UTC) == published
        return delivered == published
    if dtype in ("string", "category"):
        return delivered == published
    if dtype == "float":
        ref = float(delivered.strip())
        return ref.hex() == float(published).hex()
    if dtype == "datetime":
        ref = dt.datetime.fromisoformat(delivered.strip())
        ref = ref.replace(tzinfo=dt.UTC) if ref.tzinfo is None else ref.astimezone(dt.UTC)
        return ref == published.to_pydatetime()
    raise AssertionError(dtype)


def check_one(data: bytes, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        zone = Zone(Path(tmp))
        zone.deliver(DAY, data, ext)
        try:
            report = zone.ingest(DAY)
        except IngestionError:
            assert zone.lake.list("raw_transactions") == [] and zone.lake.list("staging") == []
            assert zone.landing.read_bytes(f"transactions/{DAY}.{ext}") == data
            return
        valid, quarantine = zone.valid(DAY), zone.quarantine(DAY)
        assert report.delivered == report.valid + report.quarantined
        assert len(valid) == report.valid and len(quarantine) == report.quarantined
        source = _reference_rows(data, ext)
        if source is None or len(source) != report.delivered:
            return
        first = 2 if ext == "csv" else 1
        kept = sorted(set(range(len(source))) - {n - first for n in quarantine["_row_number"]})
        assert len(kept) == len(valid)
        for pos, (_, published) in zip(kept, valid.iterrows(), strict=True):
            for name in COLUMNS:
                assert _expected(name, source[pos][name], published[name]), (name, source[pos][name],
                                                                              published[name])


@SETTINGS
@given(landing_files())
def test_ingestion_publishes_exactly_what_was_delivered_or_refuses_with_its_own_error(file):
    check_one(*file)
