"""Which ingested partitions a feature window may read."""

from __future__ import annotations

from ml_assets.ingestion.ingest import TAMPERED


def refusals(verdicts: dict[str, str | None], required: list[str]) -> list[str]:
    """What a consumer must refuse: any tampered partition, and any required partition that did not pass
    (`verdicts` from `ingestion.ingest.ingestion_verdicts`). Other failed days are left out of the window."""
    return [why.removeprefix(f"{TAMPERED} ") for p, why in verdicts.items()
            if why and (why.startswith(TAMPERED) or p in required)]
