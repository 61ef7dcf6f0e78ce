"""Record ids across deliveries (D5): which ids were already ingested, and in which partition.

A record id may be delivered once. Re-sending a day under another day's name, with other
bytes (CRLF, another column order or quoting, Parquet instead of CSV), carries the same ids,
so ids are what is compared, not files.

The index is one small file per published partition: the sorted 64-bit hashes of its valid
record ids (8 bytes per row, written when the partition is published, replaced when it is
re-ingested; no shared file, so concurrent runs of different partitions cannot lose each
other's updates). A lookup of a new day's ids against the history:
1. a 16 M-entry byte mask of the new day's hashes is built once;
2. each earlier partition's hash file is probed through the mask (one gather per stored
   hash, ~7 ms per million), and only mask hits are binary-searched among the new hashes;
3. every hash match is confirmed on the ids themselves, read from that partition's lake
   file, so a hash collision can never quarantine a record.
Cost grows with history as one pass over 8 bytes per stored id; `bench/ingest_throughput.py
--history-days` measures it. A partition published before the index existed is indexed from
its lake file on first use.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ml_assets.ingestion.text import as_text, buffers
from ml_assets.storage import ObjectStore

HASH_VERSION = "h64v1"  # bump (a new key prefix) if `hash_text` ever changes
_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_WIDE = 64  # rows longer than this many bytes are hashed one by one (rare)
_MASK_BITS = 24


def _fmix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> _S33)
    x = x * _M1
    x = x ^ (x >> _S33)
    x = x * _M2
    return x ^ (x >> _S33)


def _combine(words: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    acc = lengths.astype(np.uint64) * _G
    for j in range(words.shape[1]):
        acc = acc + _fmix(words[:, j] ^ (np.uint64(j + 1) * _G))
    return _fmix(acc)


def hash_text(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of every value's UTF-8 bytes (nulls hash like the empty string).

    Words of 8 bytes (zero padded) are mixed with their position, summed and mixed with the
    length (murmur3's finalizer); vectorised over rows, independent of the row's neighbours.
    """
    arr = as_text(arr)
    n = len(arr)
    offsets, data = buffers(arr)
    lengths = np.diff(offsets)
    out = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return out
    with np.errstate(over="ignore"):
        short = lengths <= _WIDE
        idx = np.flatnonzero(short)
        if len(idx):
            lens = lengths[idx]
            width = int(-(-int(lens.max()) // 8) * 8) or 8
            starts = offsets[idx]
            if len(idx) == n and (lengths == lengths[0]).all() and np.array_equal(
                    starts, offsets[0] + np.arange(n) * lengths[0]):
                mat = np.zeros((n, width), dtype=np.uint8)
                if lengths[0]:
                    mat[:, :lengths[0]] = data[offsets[0]:offsets[0] + n * lengths[0]].reshape(n, lengths[0])
            else:
                cols = np.arange(width)
                inside = cols[None, :] < lens[:, None]
                src = np.where(inside, starts[:, None] + cols[None, :], 0)
                mat = np.where(inside, data[src] if len(data) else 0, 0).astype(np.uint8)
            out[idx] = _combine(mat.view("<u8").reshape(len(idx), width // 8), lens)
        for i in np.flatnonzero(~short):
            raw = data[offsets[i]:offsets[i + 1]].tobytes()
            raw += b"\0" * (-len(raw) % 8)
            words = np.frombuffer(raw, dtype="<u8").reshape(1, -1)
            out[i] = _combine(words, lengths[i:i + 1])[0]
    return out


def index_key(asset: str, partition: str) -> str:
    return f"ingestion_index/{asset}/record_ids-{HASH_VERSION}/{partition}.u64"


def encode(sorted_hashes: np.ndarray) -> bytes:
    """The index file of a partition: its sorted hashes, 8 bytes each, little-endian."""
    return sorted_hashes.astype("<u8", copy=False).tobytes()


def decode(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u8")


class Probe:
    """The new delivery's id hashes, prepared for probing many partitions' hash files."""

    def __init__(self, hashes: np.ndarray, rows: np.ndarray, sorted_hashes: np.ndarray | None = None):
        self.hashes, self.rows = hashes, rows
        self.sorted = np.sort(hashes) if sorted_hashes is None else sorted_hashes
        self.mask = np.zeros(1 << _MASK_BITS, dtype=bool)
        self.mask[self.sorted >> np.uint64(64 - _MASK_BITS)] = True

    def hits(self, stored: np.ndarray) -> np.ndarray:
        """Rows (positions in the new delivery) whose hash is in `stored`."""
        if not len(stored) or not len(self.sorted):
            return np.zeros(0, dtype=np.int64)
        maybe = stored[self.mask[stored >> np.uint64(64 - _MASK_BITS)]]
        if not len(maybe):
            return np.zeros(0, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.sorted, maybe), len(self.sorted) - 1)
        matched = maybe[self.sorted[at] == maybe]
        if not len(matched):
            return np.zeros(0, dtype=np.int64)
        # Matches are rare (a re-delivery, or a collision to be ruled out): map them back to rows here.
        return np.unique(self.rows[np.isin(self.hashes, matched)])


def stored_hashes(lake: ObjectStore, asset: str, partition: str, record_id: str) -> np.ndarray:
    """A partition's sorted id hashes; indexed from its lake file when it predates the index."""
    key = index_key(asset, partition)
    if lake.exists(key):
        return decode(lake.read_bytes(key))
    ids = read_ids(lake, f"{asset}/{partition}.parquet", record_id)
    data = encode(np.sort(hash_text(ids)))
    lake.write_bytes(key, data)
    return decode(data)


def read_ids(lake: ObjectStore, key: str, record_id: str) -> pa.Array:
    table = pq.read_table(io.BytesIO(lake.read_bytes(key)), columns=[record_id])
    return as_text(table.column(record_id).cast(pa.string()))


def confirm(new_ids: pa.Array, rows: np.ndarray, earlier_ids: pa.Array) -> np.ndarray:
    """The subset of `rows` whose id really is among `earlier_ids` (hash matches are only candidates)."""
    if not len(rows):
        return rows
    same = pc.is_in(new_ids.take(pa.array(rows)), value_set=earlier_ids).to_numpy(zero_copy_only=False)
    return rows[same]


def indexed_partitions(lake: ObjectStore, asset: str) -> list[str]:
    """Partitions with a published lake file (each has, or will get, an index file)."""
    return sorted(k.rsplit("/", 1)[-1].removesuffix(".parquet") for k in lake.list(asset)
                  if k.endswith(".parquet"))


def reused_ids(lake: ObjectStore, asset: str, record_id: str, ids: pa.Array, hashes: np.ndarray,
               rows: np.ndarray, partitions: Iterable[str],
               staged: dict[str, tuple[np.ndarray, str]] | None = None,
               sorted_hashes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Rows (positions in the new delivery) whose id was already ingested, per earlier partition.

    `rows` are the candidate positions (e.g. the valid rows) and `hashes` their ids' hashes;
    `partitions` are the published partitions to compare with (the caller leaves out the one
    being ingested and those re-staged in this run); `staged` maps partitions staged earlier in
    this run to (their sorted hashes, the lake key of their staged valid file); `sorted_hashes`, when
    the caller has them, are `hashes` sorted.
    """
    found: dict[str, np.ndarray] = {}
    sources = [(p, lambda p=p: stored_hashes(lake, asset, p, record_id), f"{asset}/{p}.parquet") for p in partitions]
    sources += [(p, lambda h=h: h, key) for p, (h, key) in (staged or {}).items()]
    if not sources or not len(rows):
        return found
    probe = Probe(hashes, rows, sorted_hashes)
    for partition, load, key in sources:
        hits = probe.hits(load())
        if len(hits):
            confirmed = confirm(ids, hits, read_ids(lake, key, record_id))
            if len(confirmed):
                found[partition] = confirmed
    return found
