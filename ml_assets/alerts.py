"""Alerts (O2, T3, D3): one structured record per problem, to a configurable sink."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("ml_assets.alerts")


@dataclass(frozen=True)
class Alert:
    kind: str  # run_failure | training_overtime | freshness | drift | ...
    summary: str
    job: str | None = None
    run_id: str | None = None
    steps: list[str] = field(default_factory=list)
    error: str | None = None
    run_url: str | None = None
    details: dict = field(default_factory=dict)
    at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def append_alert(path: str | Path, alert: Alert) -> None:
    """Append one JSON line; O_APPEND keeps concurrent writers' lines whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (alert.to_json() + "\n").encode())
    finally:
        os.close(fd)
    log.warning("ALERT %s: %s", alert.kind, alert.summary)


def read_alerts(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
