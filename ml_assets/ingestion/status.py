"""A published partition's ingestion record: where it is kept and how to read it.

Kept apart from ingest.py, which writes the records, so that baseline.py can read each of
its partitions' delivered null rates from them without importing ingest.py (which imports
baseline.py to judge each new partition against the baseline).
"""

from __future__ import annotations

import json

from ml_assets.storage import ObjectStore


def status_key(asset: str, partition: str) -> str:
    """The ingestion record of a published partition: source, counts, hashes, check outcomes."""
    return f"ingestion_status/{asset}/{partition}.json"


def read_status(lake: ObjectStore, asset: str, partition: str) -> dict | None:
    key = status_key(asset, partition)
    return json.loads(lake.read_bytes(key)) if lake.exists(key) else None
