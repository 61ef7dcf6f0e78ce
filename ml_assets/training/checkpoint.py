"""Where a training run's checkpoint lives in the lake, and what model_checkpoint records and
reports about it. Plain functions over plain data; training/assets.py wires them."""

from __future__ import annotations

import hashlib
import json

from ml_assets.contract.model import TrainingSpec

LATEST = "model_checkpoint/latest.json"
# Durable checkpoints and outputs of each training run, in the lake (local directory or S3 prefix): T1.
RUNS_PREFIX = "model_checkpoint/runs"


def run_key(training_hash: str, spec: TrainingSpec) -> str:
    """Same data + same spec = same checkpoint directory, so a re-run resumes (T1)."""
    return hashlib.sha256((training_hash + json.dumps(spec.model_dump(), sort_keys=True)).encode()).hexdigest()[:16]
