"""Promotion decisions (P2-P4, P8): every gate, re-verified by the code that moves aliases.

Dagster's blocking checks stop downstream steps only inside one run; automation and later
runs do not honour them. So `champion_model` does not trust that the checks ran: it
re-verifies the artifact hash and re-evaluates every gate itself before touching an alias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.monitoring.performance import classification_metrics
from ml_assets.registry.gates import GateResult, absolute_gates, champion_challenger_gates, latency_gate
from ml_assets.registry.mlflow_registry import IntegrityError, ModelRef, Registry


@dataclass
class Evaluation:
    version: str
    scores: np.ndarray
    threshold: float
    metrics: dict[str, Any]


@dataclass
class Decision:
    challenger: str
    champion: str | None
    gates: list[GateResult] = field(default_factory=list)
    challenger_metrics: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def reasons(self) -> list[str]:
        return [f"{g.name}: {g.detail}" for g in self.gates if not g.passed]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([g.to_row() for g in self.gates])


def evaluate(model: Any, version: str, golden: pd.DataFrame, contract: Contract) -> Evaluation:
    """Score the golden set with a loaded pyfunc and compute metrics at the model's own threshold."""
    out = model.predict(golden[contract.feature_names])
    scores = out["score"].to_numpy(dtype=float)
    threshold = float(model.unwrap_python_model().threshold)
    y = (golden[contract.label] == contract.labels.positive).astype(int).to_numpy()
    return Evaluation(version, scores, threshold, classification_metrics(y, scores, threshold))


def decide(challenger: Evaluation, champion: Evaluation | None, golden: pd.DataFrame, contract: Contract,
           challenger_model: Any) -> Decision:
    g = contract.thresholds.gates
    y = (golden[contract.label] == contract.labels.positive).astype(int).to_numpy()
    decision = Decision(challenger.version, champion.version if champion else None)
    decision.gates += absolute_gates(challenger.metrics, g.precision_min, g.recall_min, g.roc_auc_min)
    if champion is not None and champion.version != challenger.version:
        decision.gates += champion_challenger_gates(
            y, challenger.scores, champion.scores, challenger.threshold, champion.threshold,
            auc_tolerance=g.auc_tolerance, relative_regression_max=g.relative_regression_max,
            n_resamples=g.bootstrap_resamples, seed=0,
        )
    decision.gates.append(latency(challenger_model, golden, contract))
    return decision


def assess(registry: Registry, challenger: ModelRef, champion: ModelRef | None, golden: pd.DataFrame,
           contract: Contract, log: Callable[[str], None] = lambda _: None) -> Decision:
    """Every gate for replacing `champion` by `challenger`, each artifact verified by hash first (P8)."""
    decision = Decision(challenger.version, champion.version if champion else None)
    try:
        challenger_model, digest = registry.load_verified(challenger.version)
    except IntegrityError as e:
        decision.gates.append(GateResult("artifact_integrity", False, None, None, str(e)))
        return decision
    decision.gates.append(GateResult("artifact_integrity", True, None, None, f"sha256 {digest[:16]}… verified"))
    challenger_eval = evaluate(challenger_model, challenger.version, golden, contract)
    champion_eval = None
    if champion is not None:
        # Scored live on the current golden version: metrics of different golden versions never meet.
        try:
            champion_model, _ = registry.load_verified(champion.version)
            champion_eval = evaluate(champion_model, champion.version, golden, contract)
        except IntegrityError as e:
            log(f"the current champion v{champion.version} fails its integrity check and is not compared: {e}")
    decision.gates += decide(challenger_eval, champion_eval, golden, contract, challenger_model).gates
    decision.challenger_metrics = challenger_eval.metrics
    decision.champion_metrics = champion_eval.metrics if champion_eval else {}
    return decision


def latency(model: Any, golden: pd.DataFrame, contract: Contract) -> GateResult:
    g = contract.thresholds.gates
    features = golden[contract.feature_names]
    rows = [features.iloc[[i % len(features)]] for i in range(g.latency_requests)]
    return latency_gate(model.predict, rows, p99_limit_ms=g.latency_p99_ms, n_requests=g.latency_requests)
