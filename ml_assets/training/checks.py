"""The training group's asset check, declared once (`metadata.Check`); its outcome from `checkpoint.py`."""

from ml_assets.metadata import Check

VALIDATION_AUC = Check("validation_auc", "model_checkpoint",
                       "the trained network learned something: validation ROC AUC at least the golden-set gate")
