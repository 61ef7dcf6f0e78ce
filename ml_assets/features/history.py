"""Which ingested partitions a consumer may read: published, passed their checks, unchanged since."""

from __future__ import annotations

from ml_assets.ingestion.ingest import lake_key, read_status
from ml_assets.storage import ObjectStore, sha256_bytes

TAMPERED = "TAMPERED"


def partition_verdicts(store: ObjectStore, asset: str, partitions: list[str]) -> dict[str, str | None]:
    """For each partition that is published: None when it passed its ingestion checks, else why not.

    Partitions without a published file are left out (absence is the caller's to judge). A file that
    does not match its ingestion record gets a reason starting with TAMPERED: that is not a data-quality
    verdict but a file changed behind the pipeline's back, which no consumer may read around.
    """
    out: dict[str, str | None] = {}
    for p in partitions:
        key = lake_key(asset, p)
        if not store.exists(key):
            continue
        status = read_status(store, asset, p)
        if status is None:
            out[p] = f"{asset} {p}: no ingestion record (written by an interrupted run?)"
            continue
        # Only blocking checks refuse a day; a warning (baseline_drift: in-domain values training never saw) is
        # for monitoring to judge.
        failed = {n: c.get("description", "") for n, c in status.get("checks", {}).items()
                  if not c.get("passed") and c.get("blocking", True)}
        if failed:
            out[p] = f"{asset} {p}: failed " + "; ".join(f"{n} ({d})" for n, d in failed.items())
        elif sha256_bytes(store.read_bytes(key)) != status["output_sha256"]:
            out[p] = (f"{TAMPERED} {asset} {p}: {store.uri(key)} is not the file its ingestion record describes "
                      f"(sha256 differs): it was changed after ingestion. Re-materialize that partition.")
        else:
            out[p] = None
    return out


def refusals(verdicts: dict[str, str | None], required: list[str]) -> list[str]:
    """What a consumer must refuse: any tampered partition, and any required partition that did not pass."""
    return [why for p, why in verdicts.items() if why and (why.startswith(TAMPERED) or p in required)]
