"""Ingest one daily partition from the landing zone into the lake (D1, D5, D7)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.ingestion.validate import SUPPORTED_FORMATS, read_landing_file, validate_labels, validate_records
from ml_assets.retry import with_retries
from ml_assets.storage import ObjectStore, sha256_bytes


class SourceMissing(FileNotFoundError):
    """No landing file for a partition: fail loudly rather than consume old data (D7)."""


@dataclass
class IngestReport:
    partition: str
    source: str
    source_sha256: str
    delivered: int
    valid: int
    quarantined: int
    output_key: str
    output_sha256: str
    quarantine_key: str
    reasons: Counter = field(default_factory=Counter)
    null_rates: dict[str, float] = field(default_factory=dict)

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined / self.delivered if self.delivered else 0.0


def lake_key(asset: str, partition: str) -> str:
    return f"{asset}/{partition}.parquet"


def quarantine_key(asset: str, partition: str) -> str:
    return f"quarantine/{asset}/{partition}.parquet"


def find_landing_file(landing: ObjectStore, directory: str, partition: str) -> str:
    candidates = [f"{directory}/{partition}{ext}" for ext in SUPPORTED_FORMATS]
    present = [k for k in candidates if with_retries(lambda k=k: landing.exists(k), f"checking {landing.uri(k)}")]
    if not present:
        nearby = [k for k in landing.list(directory) if k.rsplit("/", 1)[-1].startswith(partition)]
        raise SourceMissing(
            f"no landing file for partition {partition}: expected {' or '.join(landing.uri(k) for k in candidates)}; "
            + (f"found only {nearby} (unsupported name or format)" if nearby else "found nothing")
            + ". Deliver the file and re-run the partition; downstream assets were not updated."
        )
    if len(present) > 1:
        raise SourceMissing(f"partition {partition} has several landing files {present}; expected exactly one")
    return present[0]


def ingest_partition(kind: str, landing: ObjectStore, lake: ObjectStore, contract: Contract, partition: str,
                     asset: str) -> IngestReport:
    """Validate one landing file and write valid rows and quarantined rows atomically."""
    directory = contract.records.dir if kind == "records" else contract.labels.dir
    key = find_landing_file(landing, directory, partition)
    source = landing.uri(key)
    data = with_retries(lambda: landing.read_bytes(key), f"reading {source}")
    raw = read_landing_file(data, source)
    result = (validate_records if kind == "records" else validate_labels)(raw, contract, source)
    out_key, q_key = lake_key(asset, partition), quarantine_key(asset, partition)
    out_sha = lake.write_parquet(out_key, result.valid)
    # Always (re)written, so a re-run that fixed the data leaves no stale quarantine behind.
    lake.write_parquet(q_key, result.quarantine)
    return IngestReport(
        partition=partition,
        source=source,
        source_sha256=sha256_bytes(data),
        delivered=result.delivered,
        valid=len(result.valid),
        quarantined=len(result.quarantine),
        output_key=out_key,
        output_sha256=out_sha,
        quarantine_key=q_key,
        reasons=result.reasons,
        null_rates=result.null_rates,
    )


def read_partitions(lake: ObjectStore, asset: str, partitions: list[str] | None = None) -> pd.DataFrame:
    """Concatenate the lake files of `asset` (all, or the given partitions that exist)."""
    keys = lake.list(asset) if partitions is None else [lake_key(asset, p) for p in partitions]
    frames = [lake.read_parquet(k) for k in keys if k.endswith(".parquet") and lake.exists(k)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def landing_partitions(landing: ObjectStore, directory: str) -> list[str]:
    """Partition keys (file stems) of the supported files delivered under `directory`."""
    names = (k.rsplit("/", 1)[-1] for k in landing.list(directory))
    return sorted({n.rsplit(".", 1)[0] for n in names if "." + n.rsplit(".", 1)[-1].lower() in SUPPORTED_FORMATS})


def materialized_partitions(lake: ObjectStore, asset: str) -> list[str]:
    return sorted(k.rsplit("/", 1)[-1].removesuffix(".parquet") for k in lake.list(asset) if k.endswith(".parquet"))
