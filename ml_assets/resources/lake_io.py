"""The lake's IO manager: every piece of lake data an asset reads arrives as a function parameter.

`load_input` hands a consumer its upstream as a `LakeInput`: which asset, which of its partitions Dagster
mapped to this run (the partition mapping of the edge). The
consumer opens one `session` over its own area and the inputs it was handed; the session refuses every
other key (`storage.ScopedStore`, areas in `lake_layout`), so an edge missing from the graph is an error,
not a silent read. The asset returns the session as its value (`MaterializeResult(value=...)`) and
`handle_output` records what was written (keys, sha256, bytes) and read (objects per upstream area, and how
each was declared) with the materialization.

Writes stay in the logic modules, on the session: they need more than one object per partition published
together (ingestion stages every partition, judges it and publishes it with its record and quarantine or not
at all, D6), which an IO manager's one-object-per-output `handle_output` cannot express. What the IO manager
guarantees is the boundary: nothing is read that is not an edge, nothing written outside the asset's area.
Atomic writes and hashes are the store's (`storage.atomic_write_bytes`, a single PUT on S3).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from ml_assets.lake_layout import feedback_of
from ml_assets.metadata import table
from ml_assets.resources.storage import StorageResource
from ml_assets.storage import ScopedStore

MAX_LISTED = 20  # written objects listed one by one in the metadata; more are summarised by their digest


@dataclass(frozen=True)
class LakeInput:
    """An upstream asset's data as its consumer receives it."""

    asset: str
    partitions: tuple[str, ...] | None  # the upstream partitions this run maps to (None: unpartitioned)


class LakeIOManager(dg.ConfigurableIOManager):
    """Loads lake inputs as `LakeInput`s and records each asset's lake session with its materialization. It opens
    no storage itself: the consumer reads through its session, on the `lake` resource, which admits the inputs."""

    def load_input(self, context: dg.InputContext) -> LakeInput:
        asset = context.asset_key.to_user_string()
        partitions = tuple(context.asset_partition_keys) if context.has_asset_partitions else None
        return LakeInput(asset, partitions)

    def handle_output(self, context: dg.OutputContext, obj: ScopedStore | None) -> None:
        if obj is None or not context.has_asset_key:  # an op's result (the rollback job's) is not lake data
            return
        if not isinstance(obj, ScopedStore):
            raise TypeError(f"{context.asset_key.to_user_string()}: the lake IO manager stores an asset's lake "
                            f"session (ml_assets.resources.lake_io.session), got {type(obj).__name__}")
        context.add_output_metadata(session_metadata(obj))


def session(context: dg.AssetExecutionContext, lake: StorageResource, *inputs: LakeInput) -> ScopedStore:
    """The asset's read/write view of the lake: its own area, its declared inputs, its declared feedback."""
    owner = context.asset_key.to_user_string()
    readable = {**{a: "feedback" for a in feedback_of(owner)}, **{i.asset: "input" for i in inputs}}
    return ScopedStore(lake.get_store(), owner, readable)


def session_metadata(store: ScopedStore) -> dict:
    """What a person checks to trust where the data came from and what was written."""
    lines = "\n".join(f"{k} {sha} {n}" for k, (sha, n) in sorted(store.written.items()))
    reads = [{"area of": asset, "declared as": store.readable[asset], "objects read": len(keys)}
             for asset, keys in sorted(store.reads.items())]
    listed = [{"key": k, "sha256": sha, "bytes": n} for k, (sha, n) in sorted(store.written.items())][:MAX_LISTED]
    meta = {
        "lake_objects_written": len(store.written),
        "lake_bytes_written": sum(n for _, n in store.written.values()),
        "lake_reads": table(pd.DataFrame(reads, columns=["area of", "declared as", "objects read"])),
    }
    if listed:  # the digest names everything written, also past the rows listed
        meta["lake_written_digest"] = hashlib.sha256(lines.encode()).hexdigest()
        meta["lake_written"] = table(pd.DataFrame(listed, columns=["key", "sha256", "bytes"]))
    return meta


def lake_resources(lake: StorageResource) -> dict[str, dg.ConfigurableResource]:
    """The lake as assets need it: the storage (their own writes) and the IO manager (their inputs) on it."""
    return {"lake": lake, "io_manager": LakeIOManager()}
