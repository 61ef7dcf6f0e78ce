"""Hand-made landing files for the ingestion tests: rows of the demo contract, written as CSV or Parquet."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ml_assets.contract import Contract, load_contract
from ml_assets.ingestion.ingest import IngestReport, ingest_partition
from ml_assets.storage import LocalStore

CONTRACT = load_contract()
COLUMNS = list(CONTRACT.columns)
DAY = "2026-01-05"


def row(i: int, day: str = DAY, **values: str) -> dict[str, str]:
    """A valid record of `day`, as delivered text; keyword arguments replace fields."""
    base = {
        "transaction_id": f"tx_{day.replace('-', '')}_{i:06d}",
        "card_id": f"card_{i % 17:04d}",
        "event_timestamp": f"{day}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "amount": f"{(i * 7919) % 100000 / 100:.2f}",
        "merchant_category": ["grocery", "fuel", "travel"][i % 3],
        "channel": ["in_store", "online", "atm"][i % 3],
        "country": ["US", "GB", "DE"][i % 3],
        "home_country": ["US", "GB", "DE"][(i + 1) % 3],
        "customer_age_band": ["18-29", "30-44", "45-64", "65+"][i % 4],
    }
    base.update(values)
    return base


def rows(n: int, day: str = DAY, start: int = 0) -> list[dict[str, str]]:
    return [row(i, day) for i in range(start, start + n)]


def csv_bytes(records: list[dict[str, str]], columns: list[str] | None = None, newline: str = "\n",
              quoting: int = csv.QUOTE_MINIMAL, encoding: str = "utf-8") -> bytes:
    columns = columns or COLUMNS
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline, quoting=quoting)
    w.writerow(columns)
    for r in records:
        w.writerow([r.get(c, "") for c in columns])
    return buf.getvalue().encode(encoding)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def text_table(records: list[dict[str, str]], columns: list[str] | None = None) -> pa.Table:
    columns = columns or COLUMNS
    return pa.table({c: pa.array([r[c] for r in records], type=pa.string()) for c in columns})


class Zone:
    """A landing zone and a lake under one directory."""

    def __init__(self, root: Path, contract: Contract = CONTRACT):
        self.contract = contract
        self.landing = LocalStore(root / "landing")
        self.lake = LocalStore(root / "lake")

    def deliver(self, day: str, data: bytes, ext: str = "csv", directory: str | None = None) -> str:
        key = f"{directory or self.contract.records.dir}/{day}.{ext}"
        self.landing.write_bytes(key, data)
        return key

    def ingest(self, day: str, kind: str = "records", asset: str | None = None,
               baseline: dict | None = None) -> IngestReport:
        asset = asset or ("raw_transactions" if kind == "records" else "raw_labels")
        return ingest_partition(kind, self.landing, self.lake, self.contract, day, asset, baseline)

    def valid(self, day: str, asset: str = "raw_transactions"):
        return self.lake.read_parquet(f"{asset}/{day}.parquet")

    def quarantine(self, day: str, asset: str = "raw_transactions"):
        return self.lake.read_parquet(f"quarantine/{asset}/{day}.parquet")

    def lake_files(self) -> dict[str, bytes]:
        return {k: self.lake.read_bytes(k) for k in self.lake.list("")}
