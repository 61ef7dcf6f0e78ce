"""Ingest daily partitions from the landing zone into the lake (D1, D5, D6, D7).

Each partition is validated and staged; `publish_partitions` publishes the staged
partitions of a run only when every row count adds up; `record_status` writes each
published partition's check outcomes next to it, and `verify_ingested` lets consumers in
later runs refuse partitions that failed.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
import pyarrow.parquet as pq

from ml_assets.contract import Contract
from ml_assets.ingestion.baseline import Deviation, compare_to_baseline
from ml_assets.ingestion.validate import SUPPORTED_FORMATS, read_landing_file, validate_labels, validate_records
from ml_assets.retry import with_retries
from ml_assets.storage import ObjectStore, sha256_bytes


class SourceMissing(FileNotFoundError):
    """No landing file for a partition: fail loudly rather than consume old data (D7)."""


class DuplicateDelivery(ValueError):
    """A landing file whose content was already ingested for another partition (D5)."""


class PublishMismatch(RuntimeError):
    """Staged row counts do not add up; nothing was published (D6)."""


class IngestionRefused(RuntimeError):
    """A consumer found an ingested partition whose checks failed or whose file does not match its record."""


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
    staged_key: str = ""
    staged_quarantine_key: str = ""
    # The same file was already ingested for this partition: re-ingesting it replaces the
    # partition with identical rows, it never adds them twice.
    redelivery: bool = False
    deviation: Deviation | None = None

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined / self.delivered if self.delivered else 0.0


def lake_key(asset: str, partition: str) -> str:
    return f"{asset}/{partition}.parquet"


def quarantine_key(asset: str, partition: str) -> str:
    return f"quarantine/{asset}/{partition}.parquet"


def status_key(asset: str, partition: str) -> str:
    """The ingestion record of a published partition: source, counts, hashes, check outcomes."""
    return f"ingestion_status/{asset}/{partition}.json"


def source_index_key(asset: str, source_sha256: str) -> str:
    return f"ingestion_index/{asset}/{source_sha256}.json"


def staging_prefix(run_id: str) -> str:
    return f"staging/{run_id}"


def find_landing_file(landing: ObjectStore, directory: str, partition: str, retry: RetrySettings | None = None) -> str:
    retry = retry or RetrySettings()
    candidates = [f"{directory}/{partition}{ext}" for ext in SUPPORTED_FORMATS]
    present = [k for k in candidates
               if with_retries(lambda k=k: landing.exists(k), f"checking {landing.uri(k)}", **retry.kwargs())]
    if not present:
        nearby = [k for k in with_retries(lambda: landing.list(directory), f"listing {landing.uri(directory)}",
                                          **retry.kwargs())
                  if k.rsplit("/", 1)[-1].startswith(partition)]
        raise SourceMissing(
            f"no landing file for partition {partition}: expected {' or '.join(landing.uri(k) for k in candidates)}; "
            + (f"found only {nearby} (unsupported name or format)" if nearby else "found nothing")
            + ". Deliver the file and re-run the partition; downstream assets were not updated."
        )
    if len(present) > 1:
        raise SourceMissing(f"partition {partition} has several landing files {present}; expected exactly one")
    return present[0]


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 4
    base_delay_s: float = 0.5

    @classmethod
    def of(cls, contract: Contract) -> RetrySettings:
        return cls(contract.ingestion.retry_attempts, contract.ingestion.retry_base_delay_s)

    def kwargs(self) -> dict:
        return {"attempts": self.attempts, "base_delay_s": self.base_delay_s}


def read_status(lake: ObjectStore, asset: str, partition: str) -> dict | None:
    key = status_key(asset, partition)
    return json.loads(lake.read_bytes(key)) if lake.exists(key) else None


def already_ingested_as(lake: ObjectStore, asset: str, source_sha256: str) -> str | None:
    """The partition whose published data came from a file with this content, if any."""
    key = source_index_key(asset, source_sha256)
    if not lake.exists(key):
        return None
    partition = json.loads(lake.read_bytes(key))["partition"]
    status = read_status(lake, asset, partition)
    # The index may be stale (that partition was re-ingested from other content since).
    return partition if status and status.get("source_sha256") == source_sha256 else None


def stage_partition(kind: str, landing: ObjectStore, lake: ObjectStore, contract: Contract, partition: str,
                    asset: str, staging: str, baseline: dict | None = None) -> IngestReport:
    """Validate one landing file and write its valid and quarantined rows under `staging`.

    Nothing reaches the published lake here; `publish_partitions` does that once the counts
    of every staged partition add up (D6).
    """
    retry = RetrySettings.of(contract)
    directory = contract.records.dir if kind == "records" else contract.labels.dir
    key = find_landing_file(landing, directory, partition, retry)
    source = landing.uri(key)
    data = with_retries(lambda: landing.read_bytes(key), f"reading {source}", **retry.kwargs())
    source_sha = sha256_bytes(data)
    raw = read_landing_file(data, source)
    redelivery = False
    if len(raw):  # empty deliveries (header only) are all alike and carry nothing to double count
        earlier = already_ingested_as(lake, asset, source_sha)
        if earlier is not None and earlier != partition:
            raise DuplicateDelivery(
                f"{source}: expected new data for partition {partition}; found a byte-identical copy "
                f"(sha256 {source_sha[:12]}) of the file already ingested as partition {earlier}. "
                f"Its {len(raw)} rows were not ingested again; the file was left in the landing zone. "
                f"Ask the upstream for the real {partition} delivery."
            )
        redelivery = earlier == partition
    result = (validate_records if kind == "records" else validate_labels)(raw, contract, source)
    deviation = (compare_to_baseline(result.valid, result.null_rates, baseline, contract.thresholds.baseline)
                 if kind == "records" else None)
    s_key, s_q_key = f"{staging}/{lake_key(asset, partition)}", f"{staging}/{quarantine_key(asset, partition)}"
    out_sha = lake.write_parquet(s_key, result.valid)
    lake.write_parquet(s_q_key, result.quarantine)
    return IngestReport(
        partition=partition,
        source=source,
        source_sha256=source_sha,
        delivered=result.delivered,
        valid=len(result.valid),
        quarantined=len(result.quarantine),
        output_key=lake_key(asset, partition),
        output_sha256=out_sha,
        quarantine_key=quarantine_key(asset, partition),
        reasons=result.reasons,
        null_rates=result.null_rates,
        staged_key=s_key,
        staged_quarantine_key=s_q_key,
        redelivery=redelivery,
        deviation=deviation,
    )


def _parquet_rows(data: bytes) -> int:
    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


def publish_partitions(lake: ObjectStore, reports: list[IngestReport]) -> None:
    """Publish staged partitions only if every count adds up exactly; otherwise publish none.

    For each partition: rows delivered == valid + quarantined, and the staged files hold
    exactly that many rows. A mismatch (a lossy write, a bug in validation) leaves the
    published lake as it was and fails with every mismatch named.
    """
    staged = {}
    problems = []
    for r in reports:
        valid_bytes, q_bytes = lake.read_bytes(r.staged_key), lake.read_bytes(r.staged_quarantine_key)
        staged[r.partition] = (valid_bytes, q_bytes)
        valid_rows, q_rows = _parquet_rows(valid_bytes), _parquet_rows(q_bytes)
        if r.delivered != r.valid + r.quarantined:
            problems.append(f"{r.partition}: delivered {r.delivered} != valid {r.valid} + quarantined {r.quarantined}")
        if valid_rows != r.valid:
            problems.append(f"{r.partition}: staged {lake.uri(r.staged_key)} holds {valid_rows} rows, "
                            f"expected {r.valid} valid rows")
        if q_rows != r.quarantined:
            problems.append(f"{r.partition}: staged {lake.uri(r.staged_quarantine_key)} holds {q_rows} rows, "
                            f"expected {r.quarantined} quarantined rows")
        if sha256_bytes(valid_bytes) != r.output_sha256:
            problems.append(f"{r.partition}: staged file changed after it was written (sha256 mismatch)")
    if problems:
        drop_staged(lake, reports)
        raise PublishMismatch(
            "row counts do not match, so nothing was published and the lake is unchanged: " + "; ".join(problems)
            + ". Re-run the partitions; if it persists, inspect the validation of these files."
        )
    for r in reports:
        valid_bytes, q_bytes = staged[r.partition]
        lake.write_bytes(r.output_key, valid_bytes)
        # Always (re)written, so a re-run that fixed the data leaves no stale quarantine behind.
        lake.write_bytes(r.quarantine_key, q_bytes)
    drop_staged(lake, reports)


def drop_staged(lake: ObjectStore, reports: list[IngestReport]) -> None:
    """Remove the staged files of a run that will not publish them."""
    for r in reports:
        lake.delete(r.staged_key)
        lake.delete(r.staged_quarantine_key)


def record_status(lake: ObjectStore, asset: str, report: IngestReport, checks: dict[str, dict], run_id: str) -> None:
    """Write the partition's ingestion record next to its data, with every check's outcome.

    Dagster's blocking checks stop downstream steps of the same run only; consumers in later
    runs read this record (`verify_ingested`) and refuse a partition whose checks failed.
    """
    status = {
        "partition": report.partition, "source": report.source, "source_sha256": report.source_sha256,
        "delivered": report.delivered, "valid": report.valid, "quarantined": report.quarantined,
        "output_sha256": report.output_sha256, "checks": checks,
        "passed": all(c["passed"] for c in checks.values()), "run_id": run_id,
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    lake.write_bytes(status_key(asset, report.partition), json.dumps(status, indent=2, sort_keys=True).encode())
    if report.delivered:
        lake.write_bytes(source_index_key(asset, report.source_sha256),
                         json.dumps({"partition": report.partition}).encode())


def verify_ingested(lake: ObjectStore, asset: str, partitions: list[str]) -> list[str]:
    """Re-verify, in the consumer, the ingestion checks of the published partitions it reads.

    Partitions with no published file are skipped (the caller decides whether absence is an
    error). Raises `IngestionRefused` naming every partition whose checks failed, which has no
    record, or whose file is not the one its record describes. Returns the verified partitions.
    """
    problems, verified = [], []
    for p in partitions:
        key = lake_key(asset, p)
        if not lake.exists(key):
            continue
        status = read_status(lake, asset, p)
        if status is None:
            problems.append(f"{asset} {p}: no ingestion record at {lake.uri(status_key(asset, p))} "
                            f"(written by an interrupted run?)")
            continue
        failed = {name: c.get("description", "") for name, c in status["checks"].items() if not c["passed"]}
        if failed:
            problems.append(f"{asset} {p}: failed check(s) " + "; ".join(f"{n} ({d})" for n, d in failed.items()))
        elif sha256_bytes(lake.read_bytes(key)) != status["output_sha256"]:
            problems.append(f"{asset} {p}: {lake.uri(key)} is not the file its ingestion record describes "
                            f"(sha256 differs)")
        else:
            verified.append(p)
    if problems:
        raise IngestionRefused(
            "refusing to consume partitions that did not pass ingestion: " + "; ".join(problems)
            + ". Fix the delivery and re-materialize those partitions of " + asset + " first."
        )
    return verified


def ingest_partition(kind: str, landing: ObjectStore, lake: ObjectStore, contract: Contract, partition: str,
                     asset: str, baseline: dict | None = None) -> IngestReport:
    """Validate one landing file and publish its valid and quarantined rows (stage, then publish)."""
    report = stage_partition(kind, landing, lake, contract, partition, asset,
                             staging_prefix(f"direct-{uuid.uuid4().hex[:12]}"), baseline)
    publish_partitions(lake, [report])
    return report


def read_partitions(lake: ObjectStore, asset: str, partitions: list[str] | None = None) -> pd.DataFrame:
    """Concatenate the lake files of `asset` (all, or the given partitions that exist)."""
    keys = lake.list(asset) if partitions is None else [lake_key(asset, p) for p in partitions]
    frames = [lake.read_parquet(k) for k in keys if k.endswith(".parquet") and lake.exists(k)]
    if not frames:
        return pd.DataFrame()
    # Empty partitions (e.g. header-only label deliveries) add no rows; leaving them out keeps
    # the column dtypes those with rows agree on.
    filled = [f for f in frames if len(f)]
    return pd.concat(filled, ignore_index=True) if filled else frames[0]


def landing_partitions(landing: ObjectStore, directory: str) -> list[str]:
    """Partition keys (file stems) of the supported files delivered under `directory`."""
    names = (k.rsplit("/", 1)[-1] for k in landing.list(directory))
    return sorted({n.rsplit(".", 1)[0] for n in names if "." + n.rsplit(".", 1)[-1].lower() in SUPPORTED_FORMATS})


def materialized_partitions(lake: ObjectStore, asset: str) -> list[str]:
    return sorted(k.rsplit("/", 1)[-1].removesuffix(".parquet") for k in lake.list(asset) if k.endswith(".parquet"))
