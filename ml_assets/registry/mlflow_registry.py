"""The MLflow registry is the truth (P6): models are selected by alias, never by path.

Aliases: `challenger` (newest registered), `champion` (serving), `previous` (the champion
before the last promotion, for rollback). Every version carries its artifact's sha256,
recorded at registration and verified before promotion and before scoring (P8, S3).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
# MLflow writes this file into a download of a registered model; it is not part of the artifact.
_NOT_ARTIFACT = {"registered_model_meta"}


class IntegrityError(RuntimeError):
    """A model artifact does not match the sha256 recorded when it was registered."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def artifact_sha256(directory: str | Path) -> str:
    """Hash of every file's relative path and bytes, in sorted order."""
    directory = Path(directory)
    h = hashlib.sha256()
    for p in sorted(q for q in directory.rglob("*") if q.is_file() and q.name not in _NOT_ARTIFACT):
        h.update(str(p.relative_to(directory)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


class Registry:
    def __init__(self, tracking_uri: str, model_name: str, experiment: str, artifact_location: str | None = None):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.experiment = experiment
        self.artifact_location = artifact_location
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # ---- experiment and runs ---------------------------------------------------------
    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)
        except MlflowException:  # created concurrently
            return self.client.get_experiment_by_name(self.experiment).experiment_id

    def run_url(self, run_id: str) -> str:
        return f"{self.tracking_uri}#/experiments/{self.experiment_id()}/runs/{run_id}"

    # ---- versions and aliases ------------------------------------------------------------
    def version(self, version: str) -> ModelRef:
        mv = self.client.get_model_version(self.model_name, str(version))
        return ModelRef(self.model_name, str(mv.version), mv.run_id, dict(mv.tags))

    def alias(self, alias: str) -> ModelRef | None:
        try:
            mv = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None
        return ModelRef(self.model_name, str(mv.version), mv.run_id, dict(mv.tags))

    def aliases(self) -> dict[str, str]:
        out = {}
        for a in (CHAMPION, CHALLENGER, PREVIOUS):
            ref = self.alias(a)
            if ref:
                out[a] = ref.version
        return out

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        with contextlib.suppress(MlflowException):  # deleting an alias that is not set is a no-op
            self.client.delete_registered_model_alias(self.model_name, alias)

    def tag_version(self, version: str, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), k, str(v))

    # ---- artifacts ------------------------------------------------------------------------
    def download(self, version: str, dst: str | Path) -> Path:
        dst = Path(dst)
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.model_name}/{version}", dst_path=str(dst)))

    def verify(self, version: str, dst: str | Path) -> tuple[Path, str]:
        """Download a version and check its sha256 against the tag recorded at registration."""
        ref = self.version(version)
        expected = ref.tags.get("artifact_sha256")
        if not expected:
            raise IntegrityError(f"model {self.model_name} v{version} has no artifact_sha256 tag; refusing to load it")
        local = self.download(version, dst)
        actual = artifact_sha256(local)
        if actual != expected:
            raise IntegrityError(
                f"model {self.model_name} v{version}: artifact sha256 is {actual}, expected {expected} as recorded at "
                f"registration; the artifact was modified after registration and is refused"
            )
        return local, actual

    def load_verified(self, version: str) -> tuple[Any, str]:
        """Load a version only after its hash checks out; the files loaded are the ones hashed."""
        tmp = Path(tempfile.mkdtemp(prefix=f"ml_assets_{self.model_name}_v{version}_"))
        local, digest = self.verify(version, tmp / "model")
        return mlflow.pyfunc.load_model(str(local)), digest

    # ---- registration --------------------------------------------------------------------
    def register(
        self,
        python_model: mlflow.pyfunc.PythonModel,
        artifacts: dict[str, str],
        input_example: pd.DataFrame,
        output_example: pd.DataFrame,
        pip_requirements: list[str],
        params: dict[str, Any],
        metrics: dict[str, float],
        epoch_metrics: list[dict],
        tags: dict[str, Any],
        run_name: str,
    ) -> ModelRef:
        """Log the pipeline as a pyfunc, register it, hash it and point `challenger` at it."""
        from mlflow.models import infer_signature

        signature = infer_signature(input_example, output_example)
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=run_name) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
            for row in epoch_metrics:
                step = int(row.get("epoch", 0))
                mlflow.log_metrics(
                    {k: float(v) for k, v in row.items() if k not in ("event", "epoch") and isinstance(v, int | float)},
                    step=step,
                )
            mlflow.set_tags({k: str(v) for k, v in tags.items()})
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model,
                artifacts=artifacts,
                signature=signature,
                pip_requirements=pip_requirements,
            )
            mv = mlflow.register_model(info.model_uri, self.model_name, tags={k: str(v) for k, v in tags.items()})
        version = str(mv.version)
        with tempfile.TemporaryDirectory() as tmp:
            digest = artifact_sha256(self.download(version, Path(tmp) / "model"))
        self.tag_version(version, {"artifact_sha256": digest, "mlflow_run_id": run.info.run_id})
        self.set_alias(CHALLENGER, version)
        return self.version(version)

    # ---- promotion and rollback ------------------------------------------------------------
    def promote(self, version: str) -> dict[str, str | None]:
        """champion <- version; previous <- the old champion (kept for rollback)."""
        old = self.alias(CHAMPION)
        if old and old.version != str(version):
            self.set_alias(PREVIOUS, old.version)
        self.set_alias(CHAMPION, version)
        return {"champion": str(version), "previous": old.version if old else None}

    def rollback(self) -> dict[str, str]:
        """champion <- previous. The demoted version is tagged and `previous` removed, so a
        second rollback cannot bring the demoted model back."""
        prev, current = self.alias(PREVIOUS), self.alias(CHAMPION)
        if prev is None:
            raise RuntimeError(f"model {self.model_name} has no 'previous' alias: there is nothing to roll back to")
        self.set_alias(CHAMPION, prev.version)
        self.delete_alias(PREVIOUS)
        if current:
            self.tag_version(current.version, {"rolled_back": "true", "rolled_back_to": prev.version})
        return {"champion": prev.version, "demoted": current.version if current else ""}


def pip_requirements() -> list[str]:
    """Explicit requirements: a bare `torch==X` would make a rebuild pull the CUDA build."""
    import numpy
    import sklearn
    import torch

    return [
        "--extra-index-url https://download.pytorch.org/whl/cpu",
        f"torch=={torch.__version__}",
        f"mlflow=={mlflow.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={numpy.__version__}",
        f"scikit-learn=={sklearn.__version__}",
    ]


def code_version() -> str:
    """The git commit of the code that trained the model, or the package version."""
    sha = os.environ.get("ML_ASSETS_CODE_VERSION")
    if sha:
        return sha
    import subprocess

    # Outside a git checkout (an installed image) the package version is the code version.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                   text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    from importlib.metadata import version

    return f"ml-assets=={version('ml-assets')}"
