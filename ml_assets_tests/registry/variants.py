"""Model variants for the promotion tests: the real trained pipeline, altered in one way each.

Every variant loads the real artifacts (preprocessor + network) through PipelineModel and
changes one behaviour, so a refusal can only come from the gate that judges that behaviour.
They are registered through the real Registry (cloudpickled by reference to this module).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.registry.pyfunc import PipelineModel


class SlowModel(PipelineModel):
    """Scores like the real model, but every request takes 60 ms: a p99 over the 50 ms limit."""

    delay_s = 0.06

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        time.sleep(self.delay_s)
        return super().predict(context, model_input, params)


class BiasedModel(PipelineModel):
    """Flags every customer of one age band, whatever the transaction: disparate impact."""

    attribute = "customer_age_band"
    band = "65+"

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        out = super().predict(context, model_input, params)
        hit = (model_input[self.attribute].astype(str) == self.band).to_numpy()
        out.loc[hit, "score"] = np.maximum(out.loc[hit, "score"].to_numpy(), 0.999)
        out["prediction"] = (out["score"] >= self.threshold).astype(np.int64)
        return out


class NeverFlagsModel(PipelineModel):
    """Never flags a customer of one age band: that band's frauds all go through (equal opportunity)."""

    attribute = "customer_age_band"
    band = "65+"

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        out = super().predict(context, model_input, params)
        hit = (model_input[self.attribute].astype(str) == self.band).to_numpy()
        out.loc[hit, "score"] = 0.0
        out["prediction"] = (out["score"] >= self.threshold).astype(np.int64)
        return out


class NoisyModel(PipelineModel):
    """A regressed model: a third of the real scores replaced by noise (fixed seed per batch size)."""

    share = 0.33

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        out = super().predict(context, model_input, params)
        rng = np.random.default_rng(len(out))
        scores = out["score"].to_numpy().copy()
        hit = rng.random(len(scores)) < self.share
        scores[hit] = rng.random(int(hit.sum()))
        return pd.DataFrame({"score": scores, "prediction": (scores >= self.threshold).astype(np.int64)})


class SquareRootModel(PipelineModel):
    """Same ranking and same decisions as the real model (score and threshold both square-rooted),
    but different score values: passes every gate, and its scores are told apart from the original's."""

    def load_context(self, context: Any) -> None:
        super().load_context(context)
        self.threshold = float(np.sqrt(self.threshold))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        out = super().predict(context, model_input, params)
        scores = np.sqrt(out["score"].to_numpy())
        return pd.DataFrame({"score": scores, "prediction": (scores >= self.threshold).astype(np.int64)})
