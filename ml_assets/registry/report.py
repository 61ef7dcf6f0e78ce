"""What registered_model and champion_model tell a person: their metadata and the verdicts of
their checks, built from a promotion Decision and the registry's answers. Plain functions over
plain data; registry/assets.py wires them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ml_assets import links
from ml_assets.contract import Contract
from ml_assets.metadata import link, md_table
from ml_assets.registry import gates
from ml_assets.registry.mlflow_registry import CHALLENGER, ModelRef
from ml_assets.registry.promotion import Decision, PromotionOutcome


def decision_metadata(decision: Decision) -> dict[str, Any]:
    meta = {
        "decision": "promote" if decision.passed else "reject",
        "comparison": md_table(decision.side_by_side()),
        "gates": md_table(decision.table()),
        "failed_gates": ", ".join(decision.failed()) or "none",
        "golden_version": decision.golden_version,
    }
    if decision.slices is not None:
        meta["slices"] = md_table(decision.slices)
    fair = [g for g in decision.gates if g.check == gates.FAIRNESS]
    if fair:
        meta["fairness"] = fair[0].detail
    return meta


def check_verdicts(decision: Decision, contract: Contract,
                   checks: Iterable[str]) -> list[tuple[str, bool, dict[str, Any]]]:
    """(check name, passed, metadata) per check of registered_model, each judged by the gates that name it."""
    out = []
    for name in checks:
        judged_gates = [g for g in decision.gates if g.check == name]
        if judged_gates:
            judged = Decision(decision.challenger, decision.champion, decision.golden_version, judged_gates)
            passed = judged.passed
            meta = {"gates": md_table(judged.side_by_side()), "reasons": " | ".join(judged.reasons) or "none"}
        elif name == gates.FAIRNESS and not contract.slices.sensitive_attribute:
            passed, meta = True, {"note": "the contract declares no slices.sensitive_attribute"}
        else:  # not evaluated: the artifact was refused before any scoring
            passed, meta = False, {"reasons": "not evaluated: " + " | ".join(decision.reasons)}
        out.append((name, passed, meta))
    return out


def incident_details(decision: Decision) -> dict[str, Any]:
    return {"challenger_version": decision.challenger, "champion_version": decision.champion,
            "golden_version": decision.golden_version}


def registered_metadata(ref: ModelRef, experiment_id: str | None, tags: dict[str, Any],
                        golden_metrics: dict[str, float], decision: Decision,
                        importance: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_name": ref.name,
        "version": ref.version,
        "alias": CHALLENGER,
        "model_uri": ref.uri,
        "mlflow_run": link(links.mlflow_run_url(ref.run_id, experiment_id)) if ref.run_id else "",
        "mlflow_model_version": link(links.mlflow_model_version_url(ref.name, ref.version)),
        "artifact_sha256": ref.tags.get("artifact_sha256", ""),
        **{k: str(v) for k, v in tags.items()},
        **golden_metrics,
        **decision_metadata(decision),
        **importance,
    }


def no_champion(result: PromotionOutcome) -> str:
    decision = result.decision
    return (f"no champion: the first challenger v{result.challenger.version} was refused: "
            + " | ".join(decision.reasons if decision else []))


def champion_metadata(result: PromotionOutcome, current: ModelRef, aliases: dict[str, Any],
                      golden_version: str) -> dict[str, Any]:
    meta = {
        "outcome": result.outcome,
        "champion_version": current.version,
        "champion_link": link(links.mlflow_model_version_url(current.name, current.version)),
        "challenger_version": result.challenger.version,
        "previous_champion": result.previous_champion.version if result.previous_champion else "none",
        "golden_version": golden_version,
        **{f"alias_{k}": v for k, v in aliases.items()},
        **{f"champion_{k}": float(v) for k, v in current.tags.items() if k.startswith(f"golden_{golden_version}_")},
    }
    if result.rebaselined:
        meta["rebaselined"] = "; ".join(f"v{v} on golden {golden_version}: roc_auc "
                                        f"{m.get('roc_auc') or float('nan'):.4f}" for v, m in result.rebaselined.items())
    if result.decision is not None:
        meta.update(decision_metadata(result.decision))
        meta["reasons"] = " | ".join(result.decision.reasons) or "all gates passed"
    return meta
