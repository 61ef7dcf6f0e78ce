"""What the MLflow UI says about the registered model and each version, in words a person reads first.

The registered model's description says what the model is and how its aliases are used; a
version's description says what was trained, on which data, and how it scored on validation
(the promotion decision is appended by `promotion.with_decision` once it is taken).
"""

from __future__ import annotations

from typing import Any

from ml_assets.contract import Contract


def model_description(contract: Contract) -> str:
    return (
        f"{contract.name}: {contract.description.strip()} Scores each record for "
        f"{contract.label} = {contract.labels.positive}: an MLflow pyfunc holding the fitted preprocessing and a "
        f"torch MLP, returning a score in [0, 1] and a 0/1 prediction at the version's own threshold "
        f"(features: {', '.join(contract.feature_names)}).\n\n"
        f"Aliases: 'champion' is the version in service (batch scoring loads it by alias after verifying its "
        f"sha256), 'challenger' the newest registered version, 'previous' the champion before the last promotion "
        f"(the rollback target). A version becomes champion only when every promotion gate passes on the golden "
        f"set (thresholds in the contract's thresholds.gates); each version's description and promotion_* tags "
        f"record the decision, and `ml-assets lineage --version N` shows its data, run and metrics."
    )


def version_description(result: dict[str, Any], training: dict[str, Any], golden_version: str,
                        golden_hash: str, code_version: str) -> str:
    """`result` is the training entry point's result.json; `training` the training set's manifest."""
    world = int(result.get("world_size") or 1)
    how = (f"DDP on {world} ranks ({result.get('backend')}, {result.get('device')})" if world > 1
           else f"one process ({result.get('device')})")
    auc = result.get("val_auc")
    return (
        f"MLP {result.get('hidden')} trained for {result.get('epochs')} epochs by {how} on training_set "
        f"{training['content_hash'][:12]} ({training['rows']} rows, {training['date_from']}..{training['date_to']}; "
        f"{result.get('train_rows')} train / {result.get('val_rows')} validation rows by time). Validation ROC AUC "
        f"{'undefined' if auc is None else f'{auc:.4f}'}, decision threshold {result.get('threshold', 0.5):.4f} "
        f"(F1-maximising on validation). Judged on golden set {golden_version} ({golden_hash[:12]}). "
        f"Code {code_version}."
    )
