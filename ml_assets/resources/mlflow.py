
import dagster as dg

from ml_assets.registry.mlflow_registry import Registry


class MLflowResource(dg.ConfigurableResource):
    """MLflow tracking + model registry (sqlite + local artifacts, or a tracking server).

    MLflow runs are opened and closed by the code that logs to them: dagster-mlflow's
    run-finished hook ends runs too early in multi-step jobs.
    """

    tracking_uri: str
    experiment: str = "ml_assets"
    model_name: str = "ml_assets_model"
    artifact_location: str | None = None

    def registry(self) -> Registry:
        return Registry(self.tracking_uri, self.model_name, self.experiment, self.artifact_location)
