"""Object storage for the lake and the landing zone: local files or S3, one interface.

Writes are atomic (temporary object + rename on local disk; a single PUT on S3), so a
crashed or retried step never leaves a half-written partition behind (D5).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml_assets.lake_layout import AREAS, UndeclaredAccess, owners_of


def _current_umask() -> int:
    # Read once at import (single-threaded then); os.umask can only be read by setting it.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
FILE_MODE = 0o666 & ~_UMASK  # 0644 under the usual umask 022, as open() would create it


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a temporary file in the same directory, fsynced, then renamed.

    The file gets the mode an ordinary `open()` would give it (0666 less the umask: 0644
    usually), not mkstemp's private 0600, so other readers of the lake (DuckDB, a serving
    job under another user) can read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def frame_to_parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    return buf.getvalue()


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    """An Arrow table as Parquet, readable by pandas, DuckDB and Feast as plain types.

    Dictionary-encoded columns are written with Parquet's dictionary pages (cheap and small)
    but the Arrow schema is not stored, so every reader gets plain text back, not a
    pandas Categorical; timestamps keep their UTC marker through Parquet's own logical type.
    """
    buf = io.BytesIO()
    dictionary = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
    # Snappy (Parquet's and pandas' default): a third cheaper to write than zstd on the ingestion
    # path, for files about twice the size. Min/max statistics where readers prune on them
    # (numbers, timestamps), not on text (ids, categories), where they only cost time.
    stats = [f.name for f in table.schema if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                                                  or pa.types.is_dictionary(f.type))]
    pq.write_table(table, buf, compression="snappy", use_dictionary=dictionary or False, store_schema=False,
                   write_statistics=stats or False)
    return buf.getvalue()


class ObjectStore(ABC):
    """Keys are '/'-separated relative paths, e.g. 'raw_transactions/2026-01-01.parquet'."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where a person (or DuckDB/Feast) finds the object."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Rename an object (atomic on a local disk, and it needs no free space there)."""

    def local_dir(self, prefix: str) -> Path | None:
        """The local directory behind `prefix` (None when the store is not on this machine's disk)."""
        return None

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under `prefix` (a directory, locally: temporary files included)."""
        for key in self.list(prefix):
            self.delete(key)

    # Helpers shared by every implementation.
    def write_parquet(self, key: str, df: pd.DataFrame) -> str:
        data = frame_to_parquet_bytes(df)
        self.write_bytes(key, data)
        return sha256_bytes(data)

    def write_table(self, key: str, table: pa.Table) -> str:
        """Write an Arrow table as Parquet (see `table_to_parquet_bytes`); returns its sha256."""
        data = table_to_parquet_bytes(table)
        self.write_bytes(key, data)
        return sha256_bytes(data)

    def read_parquet(self, key: str, **kwargs: Any) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(key)), **kwargs)


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents and p != self.root:
            raise ValueError(f"key {key!r} escapes the store root {self.root}")
        return p

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self.path(key), data)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix) if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def uri(self, key: str) -> str:
        return str(self.path(key))

    def local_dir(self, prefix: str) -> Path | None:
        return self.path(prefix)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def move(self, src: str, dst: str) -> None:
        target = self.path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(src), target)

    def delete_prefix(self, prefix: str) -> None:
        path = self.path(prefix)
        if path != self.root and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)  # a killed writer's hidden temporary files too
        elif path.is_file():
            path.unlink(missing_ok=True)


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 client: Any = None):
        """`client`: a boto3 S3 client (S3StorageResource passes dagster-aws's); without one, a plain boto3
        client for `endpoint_url`/`region` (the training ranks, which run outside Dagster)."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic on S3: readers see the old object or the new one.
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                k = obj["Key"]
                keys.append(k[len(self.prefix) + 1 :] if self.prefix else k)
        return sorted(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def move(self, src: str, dst: str) -> None:
        # S3 has no rename: a server-side copy, then the delete (readers see the old key until then).
        self.client.copy_object(Bucket=self.bucket, Key=self._key(dst),
                                CopySource={"Bucket": self.bucket, "Key": self._key(src)})
        self.client.delete_object(Bucket=self.bucket, Key=self._key(src))


class ReadCache(ObjectStore):
    """A store that remembers what one step has read (Parquet frames and existence), up to a memory budget.

    A daily asset over a range of days reads each day's window of earlier days: without it, a 30-day run of
    `drift_report` would read the same 28 feature files for every day. Writes go through and drop what they
    replace, so the step always reads what it wrote. Frames are returned as copies (callers may mutate).
    """

    def __init__(self, store: ObjectStore, budget_bytes: int = 1 << 30):
        self.store = store
        self.budget = budget_bytes
        self._frames: dict[tuple, pd.DataFrame] = {}
        self._sizes: dict[tuple, int] = {}
        self._exists: dict[str, bool] = {}

    def _forget(self, key: str) -> None:
        self._exists.pop(key, None)
        for k in [k for k in self._frames if k[0] == key]:
            self._frames.pop(k)
            self._sizes.pop(k)

    def read_parquet(self, key: str, **kwargs: Any) -> pd.DataFrame:
        k = (key, repr(sorted(kwargs.items())))
        if k not in self._frames:
            frame = self.store.read_parquet(key, **kwargs)
            size = int(frame.memory_usage(deep=False).sum())
            while self._frames and sum(self._sizes.values()) + size > self.budget:
                oldest = next(iter(self._frames))
                self._frames.pop(oldest)
                self._sizes.pop(oldest)
            if size <= self.budget:
                self._frames[k], self._sizes[k] = frame, size
            return frame.copy()
        return self._frames[k].copy()

    def exists(self, key: str) -> bool:
        if key not in self._exists:
            self._exists[key] = self.store.exists(key)
        return self._exists[key]

    def read_bytes(self, key: str) -> bytes:
        return self.store.read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._forget(key)
        self.store.write_bytes(key, data)

    def list(self, prefix: str) -> list[str]:
        return self.store.list(prefix)

    def uri(self, key: str) -> str:
        return self.store.uri(key)

    def local_dir(self, prefix: str) -> Path | None:
        return self.store.local_dir(prefix)

    def delete(self, key: str) -> None:
        self._forget(key)
        self.store.delete(key)

    def move(self, src: str, dst: str) -> None:
        self._forget(src)
        self._forget(dst)
        self.store.move(src, dst)


def store_for_uri(uri: str | Path) -> ObjectStore:
    """The store rooted at `uri`: `s3://bucket/prefix` or a local directory.

    Used where only a string can travel (command lines of training pods): the S3 endpoint
    and credentials come from the environment (ML_ASSETS_S3_ENDPOINT_URL, AWS_*), never
    from the URI (S1).
    """
    text = str(uri)
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"storage URI {text!r} names no bucket; expected s3://bucket/prefix")
        return S3Store(bucket, prefix, endpoint_url=os.environ.get("ML_ASSETS_S3_ENDPOINT_URL") or None)
    if "://" in text:
        raise ValueError(f"storage URI {text!r}: expected s3://bucket/prefix or a local directory path")
    return LocalStore(text)


class ScopedStore(ObjectStore):
    """One asset's view of the lake: it writes only its own area and reads only its own area and those of the
    inputs it was handed (see `lake_layout`). Anything else raises `UndeclaredAccess` naming the key, the
    area's owner and how to declare it. What was read (per owning asset) and written (key, sha256, bytes) is
    kept, so the IO manager can record it with the materialization.
    """

    def __init__(self, store: ObjectStore, owner: str, readable: dict[str, str]):
        """`readable`: asset -> how it was declared ("own", "input", "feedback")."""
        if owner not in AREAS:
            raise ValueError(f"{owner!r} has no area in lake_layout.AREAS")
        self.store, self.owner = store, owner
        self.readable = {owner: "own", **{a: how for a, how in readable.items() if a != owner}}
        self.reads: dict[str, set[str]] = {}
        self.written: dict[str, tuple[str, int]] = {}

    def _owners(self, key: str, verb: str) -> set[str]:
        owners = owners_of(key)
        if not owners:
            raise UndeclaredAccess(f"{self.owner} {verb} {key!r}, which lies in no asset's area: every lake object "
                                   f"belongs to an asset (add its prefix to lake_layout.AREAS)")
        return owners

    def _check_read(self, key: str) -> None:
        owners = self._owners(key, "read")
        allowed = owners & set(self.readable)
        if not allowed:
            raise UndeclaredAccess(
                f"{self.owner} read {key!r}, which belongs to {' / '.join(sorted(owners))}; expected only its own "
                f"area and its declared inputs ({', '.join(sorted(set(self.readable) - {self.owner})) or 'none'}). "
                f"Declare it as an input (dg.AssetIn) so the graph shows the edge, or as feedback in lake_layout")
        for asset in allowed:
            self.reads.setdefault(asset, set()).add(key)

    def _check_write(self, key: str) -> None:
        owners = self._owners(key, "wrote")
        if self.owner not in owners:
            raise UndeclaredAccess(f"{self.owner} wrote {key!r}, which belongs to {' / '.join(sorted(owners))}; "
                                   f"an asset writes only its own area")

    def read_bytes(self, key: str) -> bytes:
        self._check_read(key)
        return self.store.read_bytes(key)

    def read_parquet(self, key: str, **kwargs: Any) -> pd.DataFrame:
        self._check_read(key)
        return self.store.read_parquet(key, **kwargs)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._check_write(key)
        self.store.write_bytes(key, data)
        self.written[key] = (sha256_bytes(data), len(data))

    def exists(self, key: str) -> bool:
        self._check_read(key)
        return self.store.exists(key)

    def list(self, prefix: str) -> list[str]:
        self._check_read(prefix)
        return self.store.list(prefix)

    def uri(self, key: str) -> str:
        return self.store.uri(key)

    def local_dir(self, prefix: str) -> Path | None:
        self._check_read(prefix)
        return self.store.local_dir(prefix)

    def delete(self, key: str) -> None:
        self._check_write(key)
        self.written.pop(key, None)
        self.store.delete(key)

    def delete_prefix(self, prefix: str) -> None:
        self._check_write(prefix)
        for key in [k for k in self.written if k.startswith(prefix)]:
            self.written.pop(key)
        self.store.delete_prefix(prefix)

    def move(self, src: str, dst: str) -> None:
        self._check_write(src)
        self._check_write(dst)
        if src in self.written:
            self.written[dst] = self.written.pop(src)
        self.store.move(src, dst)
