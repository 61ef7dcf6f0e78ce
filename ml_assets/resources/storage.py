
from abc import abstractmethod

import dagster as dg

from ml_assets.storage import LocalStore, ObjectStore, S3Store


class StorageResource(dg.ConfigurableResource):
    """Object storage for the lake or the landing zone (local directory or S3 prefix)."""

    @abstractmethod
    def get_store(self) -> ObjectStore: ...


class LocalStorageResource(StorageResource):
    root: str

    def get_store(self) -> ObjectStore:
        return LocalStore(self.root)


class S3StorageResource(StorageResource):
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None

    def get_store(self) -> ObjectStore:
        # Credentials come from the environment / IAM role, never from config (S1).
        return S3Store(self.bucket, self.prefix, self.endpoint_url, self.region)
