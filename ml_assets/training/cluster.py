"""The cluster shape of GPU training: where and how it runs on Kubernetes, defined once.

Cluster shape is deployment config, not contract data. `GpuTrainingConfig` holds every setting with
its default and range; the launcher resource holds one (`KubernetesTorchrunLauncherResource.cluster`),
`training.k8s` renders manifests and step tags from it, and `config_from_env` is the one place the
deployment's ML_ASSETS_* variables are read. Kept free of the Kubernetes client, so the resource
definitions load without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg
from pydantic import ConfigDict, Field, ValidationError, field_validator

DEFAULT_K8S_VERSION = "1.33"


class GpuTrainingConfig(dg.Config):
    """Where and how training runs on the cluster (a Dagster config: the launcher resource's `cluster`)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is refused, not silently ignored

    image: str
    namespace: str = "ml-assets"
    nnodes: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=1, ge=1)
    gpu_resource: str = "nvidia.com/gpu"
    cpu: str = "8"
    memory: str = "32Gi"
    shm_size: str = "8Gi"
    node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    tolerations: list[dict[str, str]] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    service_account: str = "ml-assets-trainer"
    max_restarts: int = Field(default=2, ge=0)
    rdzv_port: int = Field(default=29400, ge=1, le=65535)
    nccl_debug: str = "WARN"
    dist_timeout_s: int = Field(default=1800, ge=1)
    env_secret: str | None = "ml-assets-env"  # S3 / MLflow credentials as env vars (S1); None: no secret
    run_as_user: int = 1000
    kubernetes_version: str = DEFAULT_K8S_VERSION  # the manifests are validated against this API version

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value:
            raise ValueError("image is empty: set the training image (ML_ASSETS_IMAGE)")
        return value

    @field_validator("run_as_user")
    @classmethod
    def _non_root(cls, value: int) -> int:
        if value == 0:
            raise ValueError("run_as_user 0 is root; containers must run as non-root (S4)")
        return value


# The deployment's variables (helm values) for the settings it may change.
ENV_VARS: dict[str, str] = {
    "namespace": "ML_ASSETS_K8S_NAMESPACE",
    "nnodes": "ML_ASSETS_TRAIN_NNODES",
    "gpus_per_node": "ML_ASSETS_TRAIN_GPUS_PER_NODE",
    "max_restarts": "ML_ASSETS_TRAIN_MAX_RESTARTS",
    "service_account": "ML_ASSETS_TRAIN_SERVICE_ACCOUNT",
}


def config_from_env(environ: Mapping[str, str] | None = None) -> GpuTrainingConfig:
    """The production cluster shape, from ML_ASSETS_* variables set by the deployment (helm values); a setting
    whose variable is unset or empty keeps its default. A bad value is refused naming the variable."""
    e = os.environ if environ is None else environ
    # The training pods run the code location's own image unless told otherwise: the Dagster chart sets
    # DAGSTER_CURRENT_IMAGE to it, so one `--set ...image.tag=` moves both together.
    values = {"image": e.get("ML_ASSETS_IMAGE") or e.get("DAGSTER_CURRENT_IMAGE") or "ml-assets:latest"}
    values |= {name: e[var] for name, var in ENV_VARS.items() if e.get(var)}
    try:
        return GpuTrainingConfig(**values)
    except ValidationError as err:
        problems = []
        for p in err.errors():
            name = str(p["loc"][0]) if p["loc"] else ""
            where = f"{ENV_VARS[name]}={values[name]!r}" if name in ENV_VARS else name or "cluster"
            problems.append(f"{where}: {p['msg'].removeprefix('Value error, ')}")
        raise ValueError("GPU training config from the environment is invalid: " + "; ".join(problems)) from None
