"""What the landing zone holds right now (D3): the newest delivery per source directory,
the gaps, and whether the newest data is older than the contract's freshness SLO.

Plain logic for the `landing_zone` observable source asset: its data version changes only
when a delivery changes, so a late or missing delivery is visible as "nothing new" in the UI,
and `delivery_state` tells the freshness alert sensor whether the SLO is missed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ml_assets.contract import Contract
from ml_assets.ingestion.validate import SUPPORTED_FORMATS
from ml_assets.metadata import table
from ml_assets.storage import ObjectStore, sha256_bytes

ON_TIME, COMPLETE, LATE = "on_time", "complete", "late"


@dataclass(frozen=True)
class SourceSurvey:
    role: str  # records | labels
    directory: str  # as a URI, so a person can go and look
    partitions: list[str]
    newest: str | None
    newest_sha256: str | None
    missing: list[str] = field(default_factory=list)  # expected partitions with no file
    state: str = LATE
    age_hours: float | None = None  # how old the end of the newest delivered day is

    def row(self) -> dict:
        return {"source": self.role, "directory": self.directory, "files": len(self.partitions),
                "newest": self.newest or "none", "age_hours": None if self.age_hours is None else round(self.age_hours, 1),
                "missing": ", ".join(self.missing[-5:]) + (" …" if len(self.missing) > 5 else "") or "none",
                "state": self.state, "sha256": (self.newest_sha256 or "")[:12]}


def delivered_partitions(landing: ObjectStore, directory: str) -> dict[str, str]:
    """Partition key -> landing key of each supported file under `directory`."""
    out = {}
    for key in landing.list(directory):
        name = key.rsplit("/", 1)[-1]
        stem, _, ext = name.rpartition(".")
        if stem and "." + ext.lower() in SUPPORTED_FORMATS:
            out[stem] = key
    return out


def survey_source(landing: ObjectStore, role: str, directory: str, contract: Contract,
                  expected: list[str], now: dt.datetime) -> SourceSurvey:
    """Newest delivery of one source against the partitions expected by `now` (D3).

    The newest delivered day covers data up to its end; once that end is more than
    `thresholds.freshness_hours` ago, the source is late. A bounded series (contract
    `partitions.end_date`) whose last partition has arrived is complete, never late.
    """
    files = delivered_partitions(landing, directory)
    partitions = sorted(files)
    newest = partitions[-1] if partitions else None
    sha = sha256_bytes(landing.read_bytes(files[newest])) if newest else None
    missing = [p for p in expected if p not in files]
    age = None
    if newest:
        end_of_newest = dt.datetime.combine(dt.date.fromisoformat(newest) + dt.timedelta(days=1), dt.time(),
                                            tzinfo=dt.UTC)
        age = (now - end_of_newest).total_seconds() / 3600
    end = contract.partitions.end_date
    if newest and end is not None and newest >= (end - dt.timedelta(days=1)).isoformat() and not missing:
        state = COMPLETE
    elif age is not None and age <= contract.thresholds.freshness_hours:
        state = ON_TIME
    else:
        state = LATE
    return SourceSurvey(role, landing.uri(directory), partitions, newest, sha, missing, state, age)


def survey_landing(landing: ObjectStore, contract: Contract, expected: list[str], now: dt.datetime) -> list[SourceSurvey]:
    return [survey_source(landing, "records", contract.records.dir, contract, expected, now),
            survey_source(landing, "labels", contract.labels.dir, contract, expected, now)]


def landing_state(surveys: list[SourceSurvey]) -> str:
    states = {s.state for s in surveys}
    return LATE if LATE in states else ON_TIME if ON_TIME in states else COMPLETE


def landing_data_version(surveys: list[SourceSurvey]) -> str:
    """Changes exactly when a source's newest delivery (its name or its content) changes."""
    h = hashlib.sha256()
    for s in surveys:
        h.update(f"{s.role}:{s.newest}:{s.newest_sha256}:{len(s.partitions)}\n".encode())
    return h.hexdigest()[:24]


def landing_metadata(surveys: list[SourceSurvey], state: str, contract: Contract, expected: list[str]) -> dict[str, Any]:
    """What an observation of the landing zone tells a person: its state, each source's newest day and gaps."""
    return {
        "delivery_state": state,
        "threshold_freshness_hours": contract.thresholds.freshness_hours,
        "expected_newest_partition": expected[-1] if expected else "none",
        "sources": table(pd.DataFrame([s.row() for s in surveys])),
        **{f"{s.role}_newest_partition": s.newest or "none" for s in surveys},
        **{f"{s.role}_missing_partitions": len(s.missing) for s in surveys},
    }
