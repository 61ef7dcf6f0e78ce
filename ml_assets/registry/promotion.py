"""Promotion decisions (P1-P5, P8): every gate, re-verified by the code that moves aliases.

Dagster's blocking checks stop downstream steps only inside one run; automation and later
runs do not honour them. So `champion_model` does not trust that the checks ran: it
re-verifies the artifact hash, the golden set's separation from the challenger's training
data, and re-evaluates every gate itself before touching an alias.

Golden versions (P1). Metrics on the golden set are tagged per golden version
(``golden_<version>_roc_auc``, ...). A comparison always scores both models live on the
*current* golden version, and a reference value (e.g. for model_performance) is only
ever read from the tag of the current version; when a new version is frozen the current
champion is re-baselined on it (:func:`baseline`), so values of two versions never meet.

A champion whose artifact fails its integrity check (P8) is a security incident, not a
missing baseline: someone changed the serving model's files outside the pipeline. P3 then
cannot be evaluated, and promotion does not fall back to judging the challenger alone or
against an older version: the gate ``champion_challenger_baseline`` fails, the decision says
so (with the version a rollback would restore and whether that one verifies), and the
decision carries an incident for the caller to alert on. Automatic promotion stays refused
until an operator acts, because the same write access may have touched more than one file
and the registry should not move production on its own while that is being looked at; the
operator either restores the artifact (its hash verifies again) or runs the `rollback` job
(champion <- previous, verified first), after which the next promotion compares against the
restored champion as usual. Meanwhile scoring refuses the tampered champion too (P8).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.datasets.build import content_hash, disjointness
from ml_assets.metrics import bootstrap_metric, classification_metrics, roc_auc
from ml_assets.registry.gates import (
    ARTIFACT_INTEGRITY,
    GOLDEN_SET_DISJOINT,
    GOLDEN_SET_GATES,
    GateResult,
    absolute_gates,
    champion_challenger_gates,
    fairness_gate,
    latency_gate,
    slice_metrics,
)
from ml_assets.registry.mlflow_registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    DatasetRef,
    IntegrityError,
    ModelRef,
    Registry,
)

GOLDEN_METRICS = ("roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "average_precision", "precision", "recall", "f1")
TrainingLookup = Callable[[str], "pd.DataFrame | None"]
"""Training data by its content hash (the model's `training_set_hash` lineage tag), or None when unknown."""


def golden_tag(golden_version: str, metric: str) -> str:
    """Tag name of a golden-set metric: one per golden version, so versions are never mixed."""
    return f"golden_{golden_version}_{metric}"


def baseline_tags(golden_version: str, metrics: dict[str, Any]) -> dict[str, float]:
    return {golden_tag(golden_version, k): float(metrics[k]) for k in GOLDEN_METRICS if metrics.get(k) is not None}


def golden_dataset(golden: pd.DataFrame, golden_version: str, contract: Contract,
                   source: str | None = None) -> DatasetRef:
    """The golden set as an MLflow input: named by version, its content hash as digest, read from `source`
    (the lake object; by default its key in the lake)."""
    return DatasetRef(name=f"golden_set_{golden_version}", source=source or f"golden_set/{golden_version}",
                      digest=content_hash(golden), context="evaluation", frame=golden, targets=contract.label)


@dataclass
class Evaluation:
    version: str
    scores: np.ndarray
    threshold: float
    metrics: dict[str, Any]

    @property
    def predictions(self) -> np.ndarray:
        return (self.scores >= self.threshold).astype(int)


@dataclass
class Decision:
    challenger: str
    champion: str | None
    golden_version: str = ""
    gates: list[GateResult] = field(default_factory=list)
    challenger_metrics: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, Any] = field(default_factory=dict)
    slices: pd.DataFrame | None = None
    # Security incidents found while deciding (a champion that fails its integrity check): the caller alerts.
    incidents: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        # No gate evaluated is no evidence: never a pass.
        return bool(self.gates) and all(g.passed for g in self.gates)

    @property
    def reasons(self) -> list[str]:
        return [f"{g.name}: {g.detail}" for g in self.gates if not g.passed]

    def failed(self) -> list[str]:
        return [g.name for g in self.gates if not g.passed]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([g.to_row() for g in self.gates])

    def side_by_side(self) -> pd.DataFrame:
        """metric | challenger | champion | CI | threshold | pass, one row per gate."""
        rows = []
        for g in self.gates:
            champion = g.champion
            if champion is None and g.champion_metric:
                champion = self.champion_metrics.get(g.champion_metric)
            rows.append({
                "metric": g.name,
                "challenger": g.challenger,
                "champion": champion,
                "CI": g.to_row()["ci"] or "–",
                "threshold": g.rule,
                "pass": "pass" if g.passed else "FAIL",
            })
        return pd.DataFrame(rows, columns=["metric", "challenger", "champion", "CI", "threshold", "pass"])


def evaluate(model: Any, version: str, golden: pd.DataFrame, contract: Contract) -> Evaluation:
    """Score the golden set with a loaded pyfunc and compute metrics at the model's own threshold."""
    out = model.predict(golden[contract.feature_names])
    scores = out["score"].to_numpy(dtype=float)
    threshold = float(model.unwrap_python_model().threshold)
    y = _labels(golden, contract)
    metrics = classification_metrics(y, scores, threshold)
    if metrics["roc_auc"] is not None:
        # M3 judges live AUC against the lower end of this interval, so a lucky golden AUC cannot make
        # stable data look like a decline.
        ci = bootstrap_metric(y, scores, roc_auc, n_resamples=contract.thresholds.performance.bootstrap_resamples, seed=0)
        metrics.update(roc_auc_ci_low=ci.low, roc_auc_ci_high=ci.high)
    return Evaluation(version, scores, threshold, metrics)


def _labels(golden: pd.DataFrame, contract: Contract) -> np.ndarray:
    return (golden[contract.label] == contract.labels.positive).astype(int).to_numpy()


def decide(challenger: Evaluation, champion: Evaluation | None, golden: pd.DataFrame, contract: Contract,
           challenger_model: Any) -> Decision:
    """Absolute, champion/challenger, latency and fairness gates, plus per-slice metrics."""
    g = contract.thresholds.gates
    y = _labels(golden, contract)
    decision = Decision(challenger.version, champion.version if champion else None)
    decision.gates += absolute_gates(challenger.metrics, g.precision_min, g.recall_min, g.roc_auc_min)
    if champion is not None and champion.version != challenger.version:
        decision.gates += champion_challenger_gates(
            y, challenger.scores, champion.scores, challenger.threshold, champion.threshold,
            auc_tolerance=g.auc_tolerance, relative_regression_max=g.relative_regression_max,
            n_resamples=g.bootstrap_resamples, seed=0,
        )
    # Only the challenger is load-tested: the champion passed this gate when it was promoted.
    decision.gates.append(latency(challenger_model, golden, contract))
    sensitive = contract.slices.sensitive_attribute
    if sensitive:
        f = g.fairness
        clusters = golden[contract.entity] if f.cluster_by_entity else None
        fair = fairness_gate(challenger.predictions, golden[sensitive], minimum=f.ratio_min, alpha=1 - f.confidence,
                             attribute=sensitive, y_true=y, clusters=clusters, metric=f.metric)
        if champion is not None:
            fair.champion = fairness_gate(champion.predictions, golden[sensitive], minimum=f.ratio_min,
                                          alpha=1 - f.confidence, attribute=sensitive, y_true=y, clusters=clusters,
                                          metric=f.metric).value
        decision.gates.append(fair)
    decision.slices = slices_side_by_side(challenger, champion, golden, contract)
    return decision


def slices_side_by_side(challenger: Evaluation, champion: Evaluation | None, golden: pd.DataFrame,
                        contract: Contract) -> pd.DataFrame | None:
    """P5: per-slice metrics of the challenger on the declared slices, with the champion's AUC per slice."""
    declared = list(contract.slices.declared)
    if not declared:
        return None
    y = _labels(golden, contract)
    table = slice_metrics(y, challenger.scores, challenger.threshold, golden[declared].reset_index(drop=True))
    if champion is not None:
        theirs = slice_metrics(y, champion.scores, champion.threshold, golden[declared].reset_index(drop=True))
        table["champion_roc_auc"] = pd.Series(list(theirs["roc_auc"]), dtype=object)
        table["champion_recall"] = pd.Series(list(theirs["recall"]), dtype=object)
    return table


def _disjoint(passed: bool, value: float | None, detail: str, **extra: Any) -> GateResult:
    return GateResult("golden_set_disjoint", passed, value, 0.0, detail, **extra, check=GOLDEN_SET_DISJOINT,
                      rule="0 shared entities, records, golden-window rows")


def disjointness_gate(ref: ModelRef, training_data: TrainingLookup | None, golden: pd.DataFrame,
                      golden_version: str, contract: Contract) -> GateResult:
    """P1 re-verified at promotion: the data the challenger was trained on (found through its
    `training_set_hash` lineage tag) shares no entity, record or golden-window day with the
    golden set it is judged on. Unknown training data is refused: the separation cannot be shown."""
    digest = ref.tags.get("training_set_hash")
    where = f"v{ref.version}'s training data"
    if not digest:
        return _disjoint(False, None,
                         f"v{ref.version} has no training_set_hash lineage tag; its training data cannot be shown to "
                         f"be disjoint from golden set {golden_version}")
    training = training_data(digest) if training_data else None
    if training is None:
        return _disjoint(False, None,
                         f"{where} (training_set {digest[:12]}) is not in the lake any more; it cannot be shown to be "
                         f"disjoint from golden set {golden_version}. Re-train on the current training_set.")
    actual = content_hash(training)
    if actual != digest:
        return _disjoint(False, None,
                         f"{where} stored under hash {digest[:12]} now hashes to {actual[:12]}: it was modified, so it "
                         f"no longer proves anything about what v{ref.version} saw")
    scope = golden.attrs.get("golden_scope", {})
    overlap = disjointness(training, golden, contract, scope.get("holdout", "entity"), scope.get("window"))
    shared = overlap["violations"]
    detail = (f"{where} (training_set {digest[:12]}, {len(training)} rows) vs golden set {golden_version}: "
              f"{overlap['shared_entities']} shared {contract.entity} values"
              + (f" (e.g. {', '.join(map(str, overlap['examples']))})" if overlap["examples"] else "")
              + f", {overlap['shared_records']} shared records, {overlap['training_rows_in_golden_window']} training "
              f"rows inside the golden window" + ("" if shared == 0 else
                                                 "; metrics on this golden set would be optimistic"))
    return _disjoint(shared == 0, float(shared), detail, challenger=float(shared))


def assess(registry: Registry, challenger: ModelRef, champion: ModelRef | None, golden: pd.DataFrame,
           golden_version: str, contract: Contract, training_data: TrainingLookup | None = None,
           log: Callable[[str], None] = lambda _: None) -> Decision:
    """Every gate for replacing `champion` by `challenger`, each artifact verified by hash first (P8)."""
    decision = Decision(challenger.version, champion.version if champion else None, golden_version)
    disjoint = disjointness_gate(challenger, training_data, golden, golden_version, contract)
    try:
        challenger_model, digest = registry.load_verified(challenger.version)
    except IntegrityError as e:
        decision.gates += [GateResult("artifact_integrity", False, None, None, str(e), check=ARTIFACT_INTEGRITY,
                                      rule="sha256 as registered"), disjoint]
        return decision
    decision.gates.append(GateResult("artifact_integrity", True, None, None, f"sha256 {digest[:16]}… verified",
                                     check=ARTIFACT_INTEGRITY, rule="sha256 as registered"))
    decision.gates.append(disjoint)
    challenger_eval = evaluate(challenger_model, challenger.version, golden, contract)
    champion_eval = None
    if champion is not None:
        # Scored live on the current golden version: metrics of different golden versions never meet.
        try:
            champion_model, _ = registry.load_verified(champion.version)
            champion_eval = evaluate(champion_model, champion.version, golden, contract)
        except IntegrityError as e:
            gate = tampered_champion_gate(registry, champion, e)
            decision.gates.append(gate)
            decision.incidents.append(gate.detail)
            log(gate.detail)
    decided = decide(challenger_eval, champion_eval, golden, contract, challenger_model)
    decision.gates += decided.gates
    decision.slices = decided.slices
    decision.challenger_metrics = challenger_eval.metrics
    decision.champion_metrics = champion_eval.metrics if champion_eval else {}
    return decision


def tampered_champion_gate(registry: Registry, champion: ModelRef, error: IntegrityError) -> GateResult:
    """P3 cannot be judged against a champion whose artifact fails its integrity check: refused, with the
    operator's ways out (the version a rollback restores, checked now, or restoring the artifact)."""
    previous = registry.alias(PREVIOUS)
    if previous is None or previous.version == champion.version:
        way_out = ("there is no 'previous' version to roll back to: restore the artifact from a trusted copy, or "
                   "remove the 'champion' alias so that the next challenger is judged as a first model")
    else:
        try:
            with tempfile.TemporaryDirectory(prefix="ml_assets_previous_") as tmp:
                registry.verify(previous.version, Path(tmp) / "model")
            way_out = (f"run the rollback job (champion <- previous v{previous.version}, whose artifact verifies) "
                       f"or restore the artifact from a trusted copy")
        except IntegrityError:
            way_out = (f"previous v{previous.version} fails its integrity check too: restore the artifacts from a "
                       f"trusted copy")
    return GateResult(
        "champion_challenger_baseline", False, None, None,
        f"SECURITY: the serving champion v{champion.version} fails its integrity check ({error}). Its artifact was "
        f"changed outside the pipeline; no champion/challenger comparison (P3) is possible and automatic promotion "
        f"is refused until an operator acts: {way_out}.",
        check=GOLDEN_SET_GATES, rule="champion artifact verifies (sha256 as registered)")


def latency(model: Any, golden: pd.DataFrame, contract: Contract) -> GateResult:
    g = contract.thresholds.gates
    features = golden[contract.feature_names]
    rows = [features.iloc[[i % len(features)]] for i in range(g.latency_requests)]
    return latency_gate(model.predict, rows, p99_limit_ms=g.latency_p99_ms, n_requests=g.latency_requests)


def baseline(registry: Registry, version: str, golden: pd.DataFrame, golden_version: str,
             contract: Contract, golden_source: str | None = None) -> dict[str, Any]:
    """Evaluate a version (hash-verified) on a golden version and record its golden_<version>_* metrics."""
    model, _ = registry.load_verified(version)
    metrics = evaluate(model, version, golden, contract).metrics
    registry.record_golden_metrics(version, baseline_tags(golden_version, metrics),
                                   golden_dataset(golden, golden_version, contract, golden_source))
    return metrics


def reference_auc(registry: Registry, version: str, golden: pd.DataFrame, golden_version: str,
                  contract: Contract) -> float | None:
    """A version's golden AUC on the current golden version; re-baselined on the spot when that
    version has no metric for it yet (it was registered against an older golden set)."""
    tag = registry.version(version).tags.get(golden_tag(golden_version, "roc_auc"))
    if tag is None:
        tag = baseline(registry, version, golden, golden_version, contract).get("roc_auc")
    return None if tag is None else float(tag)


@dataclass
class PromotionOutcome:
    outcome: str  # "promoted" | "rejected" | "already champion"
    challenger: ModelRef
    previous_champion: ModelRef | None
    decision: Decision | None
    rebaselined: dict[str, dict[str, Any]] = field(default_factory=dict)


def promote_if_passing(registry: Registry, golden: pd.DataFrame, golden_version: str, contract: Contract,
                       training_data: TrainingLookup | None = None,
                       log: Callable[[str], None] = lambda _: None,
                       golden_source: str | None = None) -> PromotionOutcome:
    """Move `champion` to `challenger` only when every gate passes; record the decision on the version.

    A refused challenger leaves every alias as it was; its tags say why
    (`promotion_decision`, `promotion_reasons`, `promotion_failed_gates`), and so does its
    description. The champion that stays is re-baselined on the current golden version if it
    has no metrics for it yet. `golden_source` is where the golden set was read from (its MLflow input).
    """
    challenger, champion = registry.alias(CHALLENGER), registry.alias(CHAMPION)
    if challenger is None:
        raise LookupError(f"model {registry.model_name}: no version carries the '{CHALLENGER}' alias; "
                          f"materialize registered_model first")
    rebaselined: dict[str, dict[str, Any]] = {}
    if champion is not None and champion.version == challenger.version:
        if golden_tag(golden_version, "roc_auc") not in champion.tags:
            rebaselined[champion.version] = baseline(registry, champion.version, golden, golden_version, contract,
                                                     golden_source)
        return PromotionOutcome("already champion", challenger, champion, None, rebaselined)
    if challenger.tags.get("rolled_back") == "true":
        # P7: a version taken out of service by a rollback is not put back by the next run or by automation;
        # only a newly registered version can become champion again.
        decision = Decision(challenger.version, champion.version if champion else None, golden_version, [GateResult(
            "not_rolled_back", False, None, None,
            f"v{challenger.version} was rolled back (champion returned to v{challenger.tags.get('rolled_back_to')}); "
            f"a rolled-back version is never promoted again: register a new version",
            check=None, rule="never rolled back")])
    else:
        decision = assess(registry, challenger, champion, golden, golden_version, contract, training_data, log)
    if decision.passed:
        registry.promote(challenger.version)
    outcome = "promoted" if decision.passed else "rejected"
    decided_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    registry.tag_version(challenger.version, {
        "promotion_decision": outcome,
        "promotion_decided_at": decided_at,
        "promotion_golden_version": golden_version,
        "promotion_failed_gates": ", ".join(decision.failed()) or "none",
        "promotion_reasons": " | ".join(decision.reasons)[:4000] or "all gates passed",
    })
    dataset = golden_dataset(golden, golden_version, contract, golden_source)
    registry.record_golden_metrics(challenger.version, baseline_tags(golden_version, decision.challenger_metrics),
                                   dataset)
    registry.describe_version(challenger.version, with_decision(registry.description(challenger.version), decision,
                                                                decided_at))
    if champion is not None and decision.champion_metrics and golden_tag(golden_version, "roc_auc") not in champion.tags:
        registry.record_golden_metrics(champion.version, baseline_tags(golden_version, decision.champion_metrics),
                                       dataset)
        rebaselined[champion.version] = decision.champion_metrics
    return PromotionOutcome(outcome, challenger, champion, decision, rebaselined)


DECISION_HEADING = "Promotion decision"


def with_decision(description: str, decision: Decision, decided_at: str) -> str:
    """A version's description with its latest promotion decision (replacing an earlier one), for people."""
    base = description.split(f"\n\n{DECISION_HEADING}", 1)[0].strip()
    champion = f"champion v{decision.champion}" if decision.champion else "no champion"
    if decision.passed:
        verdict = f"promoted over {champion}: all {len(decision.gates)} gates passed."
    else:
        verdict = (f"rejected ({champion} stays): failed " + ", ".join(decision.failed()) + ". "
                   + " ".join(f"{r.split(': ', 1)[0]}: {r.split(': ', 1)[-1][:300]}" for r in decision.reasons))
    text = f"{DECISION_HEADING} ({decided_at}, golden set {decision.golden_version}): {verdict}"
    return f"{base}\n\n{text}" if base else text


def verification_error(registry: Registry, version: str, dest: Path) -> str:
    """P6/P8: why `version`'s artifact does not verify against its registered sha256 ('' when it does)."""
    try:
        registry.verify(version, dest)
    except IntegrityError as e:
        return str(e)
    return ""
