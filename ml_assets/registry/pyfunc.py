"""The served model: preprocessing fitted on the training split + the network, as one
MLflow pyfunc (T5). Nothing serves bare weights."""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd


class PipelineModel(mlflow.pyfunc.PythonModel):
    """Scores raw feature rows: returns `score` (probability) and `prediction` (0/1)."""

    def load_context(self, context: Any) -> None:
        import torch

        from ml_assets.training.model import build_model
        from ml_assets.training.preprocess import Preprocessor

        with open(context.artifacts["result"]) as f:
            result = json.load(f)
        with open(context.artifacts["preprocessor"]) as f:
            self.preprocessor = Preprocessor.from_dict(json.load(f))
        self.threshold = float(result["threshold"])
        self.net = build_model(int(result["input_dim"]), list(result["hidden"]))
        # weights_only: the state dict is plain tensors, never arbitrary pickled objects (S3).
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()
        torch.set_num_threads(1)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        import torch

        x = torch.from_numpy(self.preprocessor.transform(model_input))
        with torch.no_grad():
            scores = torch.sigmoid(self.net(x)).reshape(-1).numpy().astype(np.float64)
        return pd.DataFrame({"score": scores, "prediction": (scores >= self.threshold).astype(np.int64)})
