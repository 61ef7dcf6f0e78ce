"""Dagster resources. Each wraps a plain client from the logic modules; definitions.py
picks the implementation per environment, and asset code never knows which it got."""

from ml_assets.resources.alerts import AlertSinkResource, LogFileAlertSink
from ml_assets.resources.feast import FeastResource
from ml_assets.resources.lake_io import LakeInput, LakeIOManager, lake_resources, session
from ml_assets.resources.mlflow import MLflowResource
from ml_assets.resources.storage import LocalStorageResource, S3StorageResource, StorageResource
from ml_assets.resources.training import (
    KubernetesTorchrunLauncherResource,
    LocalTorchrunLauncherResource,
    TrainingLauncherResource,
)

__all__ = [
    "AlertSinkResource",
    "FeastResource",
    "KubernetesTorchrunLauncherResource",
    "LakeIOManager",
    "LakeInput",
    "LocalStorageResource",
    "LocalTorchrunLauncherResource",
    "LogFileAlertSink",
    "MLflowResource",
    "S3StorageResource",
    "StorageResource",
    "TrainingLauncherResource",
    "lake_resources",
    "session",
]
