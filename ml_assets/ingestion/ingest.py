"""Ingest daily partitions from the landing zone into the lake (D1, D5, D6, D7).

Each partition of a run is read, validated and staged (`stage_partition`); `publish_partitions`
then publishes the staged partitions of the run together, only when every row count adds
up, with each partition's ingestion record (counts, hashes, check outcomes) and its record-id
index. Publishing is all or nothing: any exception while publishing (a full disk, a lost
connection) restores what was there before, and staged files never outlive their run
(`clean_stale_staging` removes those of crashed runs). Consumers in later runs re-check the
records with `verify_ingested`.

What a delivery is judged by, besides its rows (validate.py):
- a delivery manifest, when present or required (`ingestion.manifest`): the file's sha256 and
  row count must match it, so a file cut at a row boundary cannot pass;
- record ids: an id already ingested in another partition is quarantined naming it, and a
  file whose ids were all ingested before (a re-delivery in other bytes) fails the partition;
- the expected volume (records): a sharply short day fails the `row_volume` check;
- labels: a label whose record was quarantined is quarantined with that record's reason; only
  labels of records never delivered fail `labels_match_records`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import statistics
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ml_assets.contract import Contract
from ml_assets.ingestion import ids
from ml_assets.ingestion.baseline import Deviation, compare_to_baseline
from ml_assets.ingestion.status import read_status, status_key
from ml_assets.ingestion.validate import (
    SUPPORTED_FORMATS,
    IngestionError,
    LandingFileError,
    OutsidePartition,
    ValidationResult,
    label_columns,
    read_landing_file,
    validate_labels,
    validate_records,
)
from ml_assets.metadata import Outcome
from ml_assets.retry import with_retries
from ml_assets.storage import ObjectStore, sha256_bytes, table_to_parquet_bytes

RECORDS_ASSET = "raw_transactions"
MANIFEST_SUFFIX = ".manifest.json"


class SourceMissing(IngestionError, FileNotFoundError):
    """No landing file (or no required manifest) for a partition: fail loudly rather than consume old data (D7)."""


class DuplicateDelivery(IngestionError, ValueError):
    """A landing file whose content was already ingested for another partition (D5)."""


class PublishMismatch(IngestionError, RuntimeError):
    """Staged row counts do not add up; nothing was published (D6)."""


class PublishFailed(IngestionError, RuntimeError):
    """Publishing raised part-way (e.g. a full disk); everything published by the run was rolled back."""


class IngestionRefused(IngestionError, RuntimeError):
    """A consumer found an ingested partition whose checks failed or whose file does not match its record."""


@dataclass
class Volume:
    """A records partition's row count against the recent days' (the `row_volume` check)."""

    delivered: int
    history: list[int]
    expected: float | None
    floor: float | None
    passed: bool
    description: str


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
    staged_index_key: str = ""
    # The same content was already ingested for this partition: re-ingesting it replaces the
    # partition with identical rows, it never adds them twice.
    redelivery: bool = False
    deviation: Deviation | None = None
    volume: Volume | None = None
    manifest: dict | None = None
    extra_columns: list[str] = field(default_factory=list)
    reused_from: dict[str, int] = field(default_factory=dict)  # earlier partition -> rows quarantined
    labels_of_quarantined: int = 0  # labels whose record was quarantined (quarantined with them)
    orphan_labels: int = 0  # labels whose record was never delivered
    id_hashes: np.ndarray | None = None  # sorted hashes of the valid rows' record ids (the index entry)

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined / self.delivered if self.delivered else 0.0


def lake_key(asset: str, partition: str) -> str:
    return f"{asset}/{partition}.parquet"


def quarantine_key(asset: str, partition: str) -> str:
    return f"quarantine/{asset}/{partition}.parquet"


def source_index_key(asset: str, source_sha256: str) -> str:
    return f"ingestion_index/{asset}/{source_sha256}.json"


def manifest_key(directory: str, partition: str) -> str:
    return f"{directory}/{partition}{MANIFEST_SUFFIX}"


STAGING = "staging"


def staging_prefix(run_id: str) -> str:
    return f"{STAGING}/{run_id}"


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 4
    base_delay_s: float = 0.5

    @classmethod
    def of(cls, contract: Contract) -> RetrySettings:
        return cls(contract.ingestion.retry_attempts, contract.ingestion.retry_base_delay_s)

    def kwargs(self) -> dict:
        return {"attempts": self.attempts, "base_delay_s": self.base_delay_s}


def find_landing_file(landing: ObjectStore, directory: str, partition: str, retry: RetrySettings | None = None) -> str:
    retry = retry or RetrySettings()
    candidates = [f"{directory}/{partition}{ext}" for ext in SUPPORTED_FORMATS]
    present = [k for k in candidates
               if with_retries(lambda k=k: landing.exists(k), f"checking {landing.uri(k)}", **retry.kwargs())]
    if not present:
        nearby = [k for k in with_retries(lambda: landing.list(directory), f"listing {landing.uri(directory)}",
                                          **retry.kwargs())
                  if k.rsplit("/", 1)[-1].startswith(partition) and not k.endswith(MANIFEST_SUFFIX)]
        raise SourceMissing(
            f"no landing file for partition {partition}: expected {' or '.join(landing.uri(k) for k in candidates)}; "
            + (f"found only {nearby} (unsupported name or format)" if nearby else "found nothing")
            + ". Deliver the file and re-run the partition; downstream assets were not updated."
        )
    if len(present) > 1:
        raise SourceMissing(f"partition {partition} has several landing files {present}; expected exactly one")
    return present[0]


# ---- delivery manifest ------------------------------------------------------------------------
def read_manifest(landing: ObjectStore, directory: str, partition: str, data_key: str, contract: Contract,
                  retry: RetrySettings) -> dict | None:
    """The manifest entry of the delivered file, or None when there is none and none is required.

    The manifest is `<dir>/<day>.manifest.json`:
    `{"files": {"<day>.csv": {"rows": <data rows, header excluded>, "sha256": "<hex>"}}}`,
    written by the upstream after the data file (so its presence also says the upload finished).
    """
    key = manifest_key(directory, partition)
    uri = landing.uri(key)
    if not with_retries(lambda: landing.exists(key), f"checking {uri}", **retry.kwargs()):
        if contract.ingestion.manifest == "required":
            raise SourceMissing(
                f"no delivery manifest for partition {partition}: expected {uri} (ingestion.manifest: required); "
                f"found nothing. The upload may still be in progress; the data file was left in the landing zone.")
        return None
    raw = with_retries(lambda: landing.read_bytes(key), f"reading {uri}", **retry.kwargs())
    name = data_key.rsplit("/", 1)[-1]
    expected = '{"files": {"' + name + '": {"rows": <int>, "sha256": "<64 hex digits>"}}}'
    try:
        doc = json.loads(raw)
        entry = doc["files"][name]
        rows, sha = entry["rows"], entry["sha256"]
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise ValueError(f"rows is {rows!r}")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
            raise ValueError(f"sha256 is {sha!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise LandingFileError(uri, f"a manifest of the form {expected}",
                               f"{type(e).__name__}: {e}") from None
    return {"key": uri, "rows": rows, "sha256": sha.lower()}


# ---- ingestion records ------------------------------------------------------------------------
def already_ingested_as(lake: ObjectStore, asset: str, source_sha256: str) -> str | None:
    """The partition whose published data came from a file with this content, if any."""
    key = source_index_key(asset, source_sha256)
    if not lake.exists(key):
        return None
    partition = json.loads(lake.read_bytes(key))["partition"]
    status = read_status(lake, asset, partition)
    # The index may be stale (that partition was re-ingested from other content since).
    return partition if status and status.get("source_sha256") == source_sha256 else None


def expected_volume(lake: ObjectStore, asset: str, partition: str, delivered: int, contract: Contract,
                    in_run: dict[str, int]) -> Volume:
    """The partition's rows against the median of the recent days (ingestion.volume_*)."""
    s = contract.ingestion
    day = dt.date.fromisoformat(partition)
    history = []
    for i in range(1, s.volume_window_days + 1):
        p = (day - dt.timedelta(days=i)).isoformat()
        if p in in_run:
            history.append(in_run[p])
        else:
            status = read_status(lake, asset, p)
            if status is not None:
                history.append(int(status["delivered"]))
    settings = (f"ingestion.volume_drop_max {s.volume_drop_max:g}, volume_window_days {s.volume_window_days}, "
                f"volume_min_history_days {s.volume_min_history_days}")
    if len(history) < s.volume_min_history_days:
        return Volume(delivered, history, None, None, True,
                      f"{delivered} rows; {len(history)} earlier day(s) known, too few to expect a volume ({settings})")
    expected = float(statistics.median(history))
    floor = (1 - s.volume_drop_max) * expected
    passed = delivered >= floor
    verdict = "within" if passed else "sharply short of"
    return Volume(delivered, history, expected, floor, passed,
                  f"{delivered} rows, {verdict} the expected volume: at least {floor:.0f} = (1 - "
                  f"{s.volume_drop_max:g}) x median {expected:.0f} of the last {len(history)} day(s) ({settings})"
                  + ("" if passed else ". An empty or truncated delivery? Check the upstream; a delivery manifest "
                     "(ingestion.manifest) makes truncation a file-level failure."))


# ---- staging ----------------------------------------------------------------------------------
def stage_partition(kind: str, landing: ObjectStore, lake: ObjectStore, contract: Contract, partition: str,
                    asset: str, staging: str, baseline: dict | None = None,
                    in_run: list[IngestReport] | None = None) -> IngestReport:
    """Read and validate one landing file; write its valid and quarantined rows and its id index under `staging`.

    Nothing reaches the published lake here; `publish_partitions` does that once the counts
    of every staged partition add up (D6). `in_run` are the partitions staged before this one
    in the same run (their ids count as delivered; their volumes as history).
    """
    in_run = in_run or []
    retry = RetrySettings.of(contract)
    directory = contract.records.dir if kind == "records" else contract.labels.dir
    key = find_landing_file(landing, directory, partition, retry)
    source = landing.uri(key)
    manifest = read_manifest(landing, directory, partition, key, contract, retry)
    data = with_retries(lambda: landing.read_bytes(key), f"reading {source}", **retry.kwargs())
    columns = contract.columns if kind == "records" else label_columns(contract)
    # The file's hash and its parse are independent; both release the GIL, so they share the cores.
    with ThreadPoolExecutor(1) as pool:
        sha_job = pool.submit(lambda: hashlib.sha256(data).hexdigest())
        raw = read_landing_file(data, source, columns)
        source_sha = sha_job.result()
    if manifest is not None:
        _check_manifest(manifest, source, source_sha, raw.num_rows, len(data))
    redelivery = False
    if raw.num_rows:  # empty deliveries (header only) are all alike and carry nothing to double count
        earlier = already_ingested_as(lake, asset, source_sha)
        if earlier is not None and earlier != partition:
            raise DuplicateDelivery(
                f"{source}: expected new data for partition {partition}; found a byte-identical copy "
                f"(sha256 {source_sha[:12]}) of the file already ingested as partition {earlier}. "
                f"Its {raw.num_rows} rows were not ingested again; the file was left in the landing zone. "
                f"Ask the upstream for the real {partition} delivery."
            )
        redelivery = earlier == partition
        same = next((r for r in in_run if r.source_sha256 == source_sha), None)
        if same is not None:
            raise DuplicateDelivery(f"{source}: expected new data for partition {partition}; found a byte-identical "
                                    f"copy of the file delivered for partition {same.partition} in the same run. "
                                    f"Nothing from this run was published; ask the upstream for the real "
                                    f"{partition} delivery.")
    if kind == "records":
        try:
            result = validate_records(raw, contract, source, partition)
        except OutsidePartition:
            _refuse_if_redelivered(raw, lake, asset, contract, partition, in_run, source)
            raise
    else:
        result = validate_labels(raw, contract, source)
    reused = _quarantine_reused_ids(result, lake, asset, contract, partition, in_run, source)
    lq = orphans = 0
    if kind == "labels":
        lq, orphans = _match_labels(result, lake, contract, partition)
    s_key, s_q_key = f"{staging}/{lake_key(asset, partition)}", f"{staging}/{quarantine_key(asset, partition)}"
    s_i_key = f"{staging}/{ids.index_key(asset, partition)}"
    valid = result.valid_table

    def stage_valid() -> str:
        data = table_to_parquet_bytes(valid)
        lake.write_bytes(s_key, data)
        return sha256_bytes(data)

    # The valid rows (the big file) are encoded and written while this thread does the rest
    # (Arrow releases the GIL while it encodes, the disk while it syncs).
    with ThreadPoolExecutor(1) as pool:
        valid_job = pool.submit(stage_valid)
        lake.write_bytes(s_q_key, table_to_parquet_bytes(result.quarantine_table))
        hashes = result.valid_id_hashes()
        lake.write_bytes(s_i_key, ids.encode(hashes))
        deviation = volume = None
        if kind == "records":
            deviation = compare_to_baseline(valid, result.null_rates, baseline, contract.thresholds.baseline,
                                            delivered=result.delivered)
            volume = expected_volume(lake, asset, partition, result.delivered, contract,
                                     {r.partition: r.delivered for r in in_run})
        out_sha = valid_job.result()
    if not redelivery:
        previous = read_status(lake, asset, partition)
        redelivery = bool(previous and previous.get("output_sha256") == out_sha and result.delivered)
    return IngestReport(
        partition=partition, source=source, source_sha256=source_sha, delivered=result.delivered,
        valid=result.valid_count, quarantined=result.quarantined, output_key=lake_key(asset, partition),
        output_sha256=out_sha, quarantine_key=quarantine_key(asset, partition), reasons=result.reason_counts,
        null_rates=result.null_rates, staged_key=s_key, staged_quarantine_key=s_q_key, staged_index_key=s_i_key,
        redelivery=redelivery, deviation=deviation, volume=volume, manifest=manifest,
        extra_columns=result.extra_columns, reused_from=reused, labels_of_quarantined=lq, orphan_labels=orphans,
        id_hashes=hashes,
    )


def _check_manifest(manifest: dict, source: str, sha: str, rows: int, size: int) -> None:
    if manifest["sha256"] != sha:
        raise LandingFileError(
            source, f"the file its manifest {manifest['key']} describes (sha256 {manifest['sha256'][:12]}..., "
            f"{manifest['rows']} rows)", f"sha256 {sha[:12]}... ({size} bytes)",
            "The upload is incomplete or the file was replaced; it was left in the landing zone.")
    if manifest["rows"] != rows:
        raise LandingFileError(source, f"{manifest['rows']} rows, as its manifest {manifest['key']} says",
                               f"{rows} rows", "The file was left in the landing zone.")


def _refuse_if_redelivered(raw: pa.Table, lake: ObjectStore, asset: str, contract: Contract, partition: str,
                           in_run: list[IngestReport], source: str) -> None:
    """A file of another day's records: say so plainly when that day was already ingested (D5)."""
    rid = contract.record_id
    if rid not in raw.column_names or not raw.num_rows:
        return
    text = raw.column(rid).combine_chunks()
    text = text.dictionary_decode() if pa.types.is_dictionary(text.type) else text
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return
    text = text.cast(pa.string())
    rows = np.flatnonzero(text.is_valid().to_numpy(zero_copy_only=False))
    staged = {r.partition: (r.id_hashes, r.staged_key) for r in in_run if r.id_hashes is not None}
    published = [p for p in ids.indexed_partitions(lake, asset) if p != partition and p not in staged]
    found = ids.reused_ids(lake, asset, rid, text, ids.hash_text(text)[rows], rows, published, staged)
    if found and len(np.unique(np.concatenate(list(found.values())))) == len(rows):
        _raise_redelivery(source, partition, rid, len(rows), found)


def _raise_redelivery(source: str, partition: str, rid: str, total: int, found: dict[str, np.ndarray]) -> None:
    where = ", ".join(f"{p} ({len(r)} rows)" for p, r in sorted(found.items()))
    raise DuplicateDelivery(
        f"{source}: expected new records for partition {partition}; found that all {total} rows carry "
        f"{rid}s already ingested in partition(s) {where}: a re-delivery of that content in other bytes. "
        f"Nothing was ingested; the file was left in the landing zone. Ask the upstream for the real "
        f"{partition} delivery.")


def _quarantine_reused_ids(result: ValidationResult, lake: ObjectStore, asset: str, contract: Contract,
                           partition: str, in_run: list[IngestReport], source: str) -> dict[str, int]:
    """Quarantine valid rows whose record id was already ingested in another partition (D5)."""
    if result.id_hashes is None or not result.delivered:
        return {}
    rid = contract.record_id
    valid_rows = np.flatnonzero(result.valid_mask)
    if not len(valid_rows):
        return {}
    staged = {r.partition: (r.id_hashes, r.staged_key) for r in in_run
              if r.partition != partition and r.id_hashes is not None}
    published = [p for p in ids.indexed_partitions(lake, asset) if p != partition and p not in staged]
    id_text = result.typed.column(rid)
    id_text = id_text.combine_chunks() if isinstance(id_text, pa.ChunkedArray) else id_text
    every = len(valid_rows) == result.delivered
    found = ids.reused_ids(lake, asset, rid, id_text, result.id_hashes[valid_rows], valid_rows, published, staged,
                           sorted_hashes=result.valid_id_hashes() if every else None)
    if not found:
        return {}
    total = len(np.unique(np.concatenate(list(found.values()))))
    if total == len(valid_rows):
        _raise_redelivery(source, partition, rid, total, found)
    counts = {}
    for p, rows in sorted(found.items()):
        shown = id_text.take(pa.array(rows)).to_pylist()
        result.reject(rows, [f"{rid}: {v!r} was already ingested in partition {p}" for v in shown])
        counts[p] = len(rows)
    return counts


def _match_labels(result: ValidationResult, lake: ObjectStore, contract: Contract, partition: str) -> tuple[int, int]:
    """Labels of quarantined records are quarantined with the record's reason; returns
    (labels quarantined that way, labels whose record was never delivered)."""
    rid = contract.record_id
    rows = np.flatnonzero(result.valid_mask)
    if not len(rows):
        return 0, 0
    labels = result.typed.column(rid)
    labels = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    event_day = (dt.date.fromisoformat(partition) - dt.timedelta(days=contract.labels.delay_days)).isoformat()
    others = [p for p in ids.indexed_partitions(lake, RECORDS_ASSET) if p != event_day]
    pending = rows

    def unmatched(candidates: np.ndarray, known: pa.Array) -> np.ndarray:
        if not len(candidates) or not len(known):
            return candidates
        hit = pc.is_in(labels.take(pa.array(candidates)), value_set=known).to_numpy(zero_copy_only=False)
        return candidates[~hit]

    key = lake_key(RECORDS_ASSET, event_day)
    if lake.exists(key):
        pending = unmatched(pending, ids.read_ids(lake, key, rid))
    if len(pending) and others:  # a record delivered under another day (late tolerance, a re-delivery)
        found = ids.reused_ids(lake, RECORDS_ASSET, rid, labels, ids.hash_text(labels.take(pa.array(pending))),
                               pending, others)
        if found:
            pending = np.setdiff1d(pending, np.concatenate(list(found.values())))
    quarantined = 0
    for day in [event_day, *[p for p in _quarantine_partitions(lake) if p != event_day]]:
        if not len(pending):
            break
        qkey = quarantine_key(RECORDS_ASSET, day)
        if not lake.exists(qkey):
            continue
        table = pq.read_table(io.BytesIO(lake.read_bytes(qkey)))
        if rid not in table.column_names or not table.num_rows:
            continue
        q_ids = table.column(rid).combine_chunks().cast(pa.string())
        wanted = labels.take(pa.array(pending))
        pos = pc.index_in(wanted, value_set=q_ids)
        hit = pos.is_valid().to_numpy(zero_copy_only=False)
        if not hit.any():
            continue
        reasons = table.column("_reason").combine_chunks().to_pylist()
        at = pos.filter(pa.array(hit)).to_numpy(zero_copy_only=False).astype(np.int64)
        matched = pending[hit]
        shown = wanted.filter(pa.array(hit)).to_pylist()
        result.reject(matched, [f"{rid}: the record {v!r} was quarantined at ingestion of {RECORDS_ASSET} {day} "
                                f"({reasons[i]})" for v, i in zip(shown, at.tolist(), strict=True)])
        quarantined += len(matched)
        pending = pending[~hit]
    return quarantined, len(pending)


def _quarantine_partitions(lake: ObjectStore) -> list[str]:
    return sorted(k.rsplit("/", 1)[-1].removesuffix(".parquet") for k in lake.list(f"quarantine/{RECORDS_ASSET}")
                  if k.endswith(".parquet"))


# ---- publishing -------------------------------------------------------------------------------
def _parquet_rows(data: bytes) -> int:
    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


def status_record(report: IngestReport, checks: dict[str, dict], run_id: str) -> dict:
    """The partition's ingestion record: source, counts, hashes, every check's outcome.

    Dagster's blocking checks stop downstream steps of the same run only; consumers in later
    runs read this record (`verify_ingested`) and refuse a partition whose blocking checks failed.
    """
    return {
        "partition": report.partition, "source": report.source, "source_sha256": report.source_sha256,
        "delivered": report.delivered, "valid": report.valid, "quarantined": report.quarantined,
        "output_sha256": report.output_sha256, "checks": checks,
        "passed": all(c["passed"] for c in checks.values() if c.get("blocking", True)), "run_id": run_id,
        "null_rates": report.null_rates, "extra_columns": report.extra_columns,
        "manifest": report.manifest, "reused_from": report.reused_from,
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def publish_partitions(lake: ObjectStore, reports: list[IngestReport], statuses: dict[str, dict] | None = None,
                       asset: str | None = None) -> None:
    """Publish staged partitions only if every count adds up exactly; otherwise publish none.

    For each partition: rows delivered == valid + quarantined, and the staged files hold
    exactly that many rows. A mismatch (a lossy write, a bug in validation) leaves the
    published lake as it was and fails with every mismatch named. Then the staged files are
    moved into place with the partition's ingestion record (`statuses`, by partition) and its
    id index; an exception part-way restores every file the run replaced (`PublishFailed`).
    """
    if not reports:
        return
    asset = asset or reports[0].output_key.split("/")[0]
    staging = {r.staged_key[: r.staged_key.index("/" + r.output_key)] for r in reports}
    problems = []
    for r in reports:
        valid_bytes, q_bytes = lake.read_bytes(r.staged_key), lake.read_bytes(r.staged_quarantine_key)
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
    done: list[tuple[str, str | None]] = []  # (published key, where its previous version was kept)
    step = "starting"

    def put(final: str, backups: str, staged: str | None = None, data: bytes | None = None) -> None:
        nonlocal step
        step = final
        backup = None
        if lake.exists(final):
            backup = f"{backups}/{final}"
            lake.move(final, backup)
        done.append((final, backup))
        if staged is not None:
            lake.move(staged, final)
        else:
            lake.write_bytes(final, data)

    try:
        for r in reports:
            backups = r.staged_key[: r.staged_key.index("/" + r.output_key)] + "/_replaced"
            put(r.output_key, backups, staged=r.staged_key)
            put(r.quarantine_key, backups, staged=r.staged_quarantine_key)
            put(ids.index_key(asset, r.partition), backups, staged=r.staged_index_key)
            if statuses is not None and r.partition in statuses:
                record = json.dumps(statuses[r.partition], indent=2, sort_keys=True).encode()
                put(status_key(asset, r.partition), backups, data=record)
                if r.delivered:
                    put(source_index_key(asset, r.source_sha256), backups,
                        data=json.dumps({"partition": r.partition}).encode())
    except BaseException as e:
        failures = _roll_back(lake, done)
        for prefix in staging:
            drop_staging(lake, prefix)
        raise PublishFailed(
            f"publishing {asset} failed at {step} with {type(e).__name__}: {e}. Every file this run had published "
            f"was restored, so the lake is as it was before the run"
            + (f" except: {'; '.join(failures)}" if failures else "")
            + "; no partition of the run was ingested. Fix the cause (e.g. free disk space) and re-run."
        ) from e
    for prefix in staging:
        drop_staging(lake, prefix)


def _roll_back(lake: ObjectStore, done: list[tuple[str, str | None]]) -> list[str]:
    failures = []
    for final, backup in reversed(done):
        try:
            lake.delete(final)
            if backup is not None:
                lake.move(backup, final)
        except Exception as e:  # noqa: BLE001 - keep restoring the others, then report
            failures.append(f"{final}: {type(e).__name__}: {e}")
    return failures


def drop_staged(lake: ObjectStore, reports: list[IngestReport]) -> None:
    """Remove the staged files of a run that will not publish them."""
    for r in reports:
        for key in (r.staged_key, r.staged_quarantine_key, r.staged_index_key):
            if key:
                lake.delete(key)


def drop_staging(lake: ObjectStore, prefix: str) -> None:
    """Remove everything under a run's staging prefix."""
    lake.delete_prefix(prefix)


def check_records(outcomes: Mapping[str, Mapping[str, Outcome]], partition: str,
                  blocking: Mapping[str, bool]) -> dict[str, dict]:
    """Each check's outcome for one partition, as its ingestion record keeps it (`status_record`)."""
    return {name: {"passed": o[partition].passed, "description": o[partition].description,
                   "blocking": blocking[name]} for name, o in outcomes.items() if partition in o}


def ingest_run(kind: str, asset: str, landing: ObjectStore, lake: ObjectStore, contract: Contract,
               partitions: list[str], run_id: str,
               judge: Callable[[list[IngestReport]], dict[str, dict[str, Outcome]]],
               blocking: Mapping[str, bool], baseline: dict | None = None,
               ) -> tuple[list[IngestReport], dict[str, dict[str, Outcome]]]:
    """Stage every partition of a run, judge its checks, then publish them all with their records (D6).

    Any error drops the run's staging (the partitions staged before it are not published either)
    and propagates: the caller decides what it means for the step.
    """
    staging = staging_prefix(run_id)
    reports: list[IngestReport] = []
    try:
        for pk in partitions:
            reports.append(stage_partition(kind, landing, lake, contract, pk, asset, staging, baseline,
                                           in_run=reports))
        outcomes = judge(reports)
        statuses = {r.partition: status_record(r, check_records(outcomes, r.partition, blocking), run_id)
                    for r in reports}
        publish_partitions(lake, reports, statuses, asset)
    except Exception:
        drop_staging(lake, staging)
        raise
    return reports, outcomes


def clean_stale_staging(lake: ObjectStore, is_active: Callable[[str], bool]) -> list[str]:
    """Remove the staging of runs that are no longer running (e.g. killed mid-publish); returns their ids."""
    runs = sorted({k.split("/")[1] for k in lake.list(STAGING) if k.count("/") >= 2})
    local = lake.local_dir(STAGING)
    if local is not None and local.is_dir():  # runs that left only temporary files
        runs = sorted({*runs, *(p.name for p in local.iterdir() if p.is_dir())})
    stale = [run for run in runs if not is_active(run)]
    for run in stale:
        drop_staging(lake, staging_prefix(run))
    return stale


TAMPERED = "TAMPERED"


def ingestion_verdicts(lake: ObjectStore, asset: str, partitions: list[str]) -> dict[str, str | None]:
    """For each published partition: None when it passed its blocking ingestion checks and its file is the
    one its record describes, else why not. Partitions without a published file are left out (absence is
    the caller's to judge). A file that does not match its record gets a reason starting with TAMPERED: not
    a data-quality verdict but a file changed behind the pipeline's back. Warnings (non-blocking checks,
    e.g. drift for monitoring to judge) never refuse a partition."""
    out: dict[str, str | None] = {}
    for p in partitions:
        key = lake_key(asset, p)
        if not lake.exists(key):
            continue
        status = read_status(lake, asset, p)
        if status is None:
            out[p] = f"{asset} {p}: no ingestion record at {lake.uri(status_key(asset, p))} (written by an " \
                     f"interrupted run?)"
            continue
        failed = {name: c.get("description", "") for name, c in status["checks"].items()
                  if not c["passed"] and c.get("blocking", True)}
        if failed:
            out[p] = f"{asset} {p}: failed check(s) " + "; ".join(f"{n} ({d})" for n, d in failed.items())
        elif sha256_bytes(lake.read_bytes(key)) != status["output_sha256"]:
            out[p] = (f"{TAMPERED} {asset} {p}: {lake.uri(key)} is not the file its ingestion record describes "
                      f"(sha256 differs): it was changed after ingestion")
        else:
            out[p] = None
    return out


def verify_ingested(lake: ObjectStore, asset: str, partitions: list[str]) -> list[str]:
    """Re-verify, in the consumer, the ingestion checks of the published partitions it reads.

    Raises `IngestionRefused` naming every published partition whose blocking checks failed, which has
    no record, or whose file is not the one its record describes. Returns the verified partitions.
    """
    verdicts = ingestion_verdicts(lake, asset, partitions)
    problems = [why.removeprefix(f"{TAMPERED} ") for why in verdicts.values() if why]
    if problems:
        raise IngestionRefused(
            "refusing to consume partitions that did not pass ingestion: " + "; ".join(problems)
            + ". Fix the delivery and re-materialize those partitions of " + asset + " first."
        )
    return [p for p, why in verdicts.items() if why is None]


def ingest_partition(kind: str, landing: ObjectStore, lake: ObjectStore, contract: Contract, partition: str,
                     asset: str, baseline: dict | None = None) -> IngestReport:
    """Validate one landing file and publish its valid and quarantined rows (stage, then publish)."""
    staging = staging_prefix(f"direct-{uuid.uuid4().hex[:12]}")
    try:
        report = stage_partition(kind, landing, lake, contract, partition, asset, staging, baseline)
    except BaseException:
        drop_staging(lake, staging)
        raise
    publish_partitions(lake, [report], {partition: status_record(report, {}, staging.split("/")[1])}, asset)
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
