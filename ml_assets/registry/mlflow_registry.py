"""The MLflow registry is the truth (P6): models are selected by alias, never by path.

Aliases: `challenger` (newest registered), `champion` (serving), `previous` (the champion
before the last promotion, for rollback). Every version carries its artifact's sha256,
recorded at registration and verified before promotion and before scoring (P8, S3).

What a person finds in the MLflow UI (and why it is logged that way):
- the training run's params (world size among them: a setting, not a measurement) and its
  per-epoch curves (`train_loss`, `val_auc`, ... at steps 1..N); final values that the curves
  already hold are not logged a second time, so no stray step-0 point sits next to them;
- the training set and the golden set as run inputs (`mlflow.log_input`): the lake object
  each was read from as the source, the project's content hash as the digest, the schema;
- golden-set metrics as metrics of the run and of the logged model, linked to the golden
  dataset, under one key per golden version (`golden_v1_roc_auc`): a chart never draws two
  versions as one series. The same values are version tags, which promotion reads;
- descriptions on the registered model and on each version: what it is, what it was
  trained on, and the promotion decision once it is taken.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
# MLflow writes this file into a download of a registered model; it is not part of the artifact.
_NOT_ARTIFACT = {"registered_model_meta"}


class IntegrityError(RuntimeError):
    """A model artifact does not match the sha256 recorded when it was registered."""


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as an MLflow run input: where it was read from, its content hash, its role.

    `context` is MLflow's input context ("training", "evaluation"); `frame` (optional) gives the
    schema and row count shown in the UI; `targets` names its label column. MLflow keeps at most
    36 characters of a digest: it gets the first 32 hex digits of the content hash, and the input's
    `content_hash` tag the whole of it.
    """

    name: str
    source: str
    digest: str
    context: str
    frame: pd.DataFrame | None = None
    targets: str | None = None

    @property
    def mlflow_digest(self) -> str:
        return self.digest[:32]

    @property
    def input_tags(self) -> dict[str, str]:
        return {"mlflow.data.context": self.context, "content_hash": self.digest}

    def to_mlflow(self) -> Any:
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.pandas_dataset import from_pandas

        with warnings.catch_warnings():
            # MLflow registers its local-file source class twice and then warns that the URI is ambiguous.
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            source = resolve_dataset_source(self.source)
        if self.frame is None:
            return MetaDataset(source, name=self.name, digest=self.mlflow_digest)
        return from_pandas(self.frame, source=source, targets=self.targets, name=self.name, digest=self.mlflow_digest)


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
        inputs: Sequence[DatasetRef] = (),
        description: str | None = None,
        model_description: str | None = None,
    ) -> ModelRef:
        """Log the pipeline as a pyfunc, register it, hash it and point `challenger` at it.

        `epoch_metrics` (rows of metrics.jsonl) become curves at step = epoch; a key that is also a
        param (world_size) is not a metric. `metrics` (the final values) are logged at the last
        epoch's step, except the ones the curves already end on. `inputs` are logged as run inputs;
        `description` goes on the new version, `model_description` on the registered model.
        """
        from mlflow.models import infer_signature

        signature = infer_signature(input_example, output_example)
        not_metrics = {"event", "epoch", *params}
        last_epoch = max((int(row.get("epoch", 0)) for row in epoch_metrics), default=0)
        in_curves = {k for row in epoch_metrics if int(row.get("epoch", 0)) == last_epoch for k in row}
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=run_name) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            for row in epoch_metrics:
                mlflow.log_metrics(
                    {k: float(v) for k, v in row.items()
                     if k not in not_metrics and isinstance(v, int | float) and not isinstance(v, bool)},
                    step=int(row.get("epoch", 0)),
                )
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and k not in in_curves},
                               step=last_epoch)
            for ref in inputs:
                mlflow.log_input(ref.to_mlflow(), context=ref.context, tags={"content_hash": ref.digest})
            mlflow.set_tags({k: str(v) for k, v in tags.items()})
            if description is not None:
                mlflow.set_tag("mlflow.note.content", description)  # the run page's description
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
        if model_description is not None:
            self.client.update_registered_model(self.model_name, description=model_description)
        if description is not None:
            self.client.update_model_version(self.model_name, version, description=description)
        self.set_alias(CHALLENGER, version)
        return self.version(version)

    def record_golden_metrics(self, version: str, metrics: dict[str, float], golden: DatasetRef | None = None) -> None:
        """Golden-set metrics of a version, already named per golden version (`golden_v1_roc_auc`): as
        version tags (what promotion and monitoring read) and as metrics of the version's run and
        logged model, linked to the golden dataset, which becomes an input of that run."""
        mv = self.client.get_model_version(self.model_name, str(version))
        # Registration and promotion both score the version on the same golden set: record each value once.
        values = {k: float(v) for k, v in metrics.items() if v is not None and mv.tags.get(k) != str(float(v))}
        if not values:
            return
        self.tag_version(version, values)
        if not mv.run_id:
            return
        if golden is not None:
            from mlflow.entities import DatasetInput, InputTag

            # The entity form of a dataset is what MlflowClient.log_inputs takes for a run that has ended.
            entity = golden.to_mlflow()._to_mlflow_entity()
            self.client.log_inputs(mv.run_id, [DatasetInput(entity, [InputTag(k, v)
                                                                     for k, v in golden.input_tags.items()])])
        now = int(time.time() * 1000)
        self.client.log_batch(mv.run_id, metrics=[
            Metric(key, value, now, 0, model_id=_logged_model_id(mv),
                   dataset_name=golden.name if golden else None, dataset_digest=golden.mlflow_digest if golden else None)
            for key, value in values.items()])

    def describe_version(self, version: str, text: str) -> None:
        self.client.update_model_version(self.model_name, str(version), description=text)

    def description(self, version: str) -> str:
        return self.client.get_model_version(self.model_name, str(version)).description or ""

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


def _logged_model_id(mv: Any) -> str | None:
    """The MLflow 3 logged model behind a version: its `model_id`, which the sqlite store leaves empty on the
    version and keeps in its source URI (`models:/<model id>`)."""
    if getattr(mv, "model_id", None):
        return mv.model_id
    source = mv.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/") and "/" not in source[8:] else None


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
