
from abc import abstractmethod

import dagster as dg
from dagster_aws.s3 import S3Resource

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
    """A bucket and prefix on S3 (or an S3-compatible server at `endpoint_url`). The boto3 client comes
    from dagster-aws's S3Resource, so retries and client options are Dagster's standard ones."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None

    def get_store(self) -> ObjectStore:
        # Credentials come from the environment / IAM role, never from config (S1): S3Resource is given
        # only the address, and boto3 finds the credentials as it does for any client.
        client = S3Resource(endpoint_url=self.endpoint_url or None, region_name=self.region or None).get_client()
        return S3Store(self.bucket, self.prefix, client=client)
