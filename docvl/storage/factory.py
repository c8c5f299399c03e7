"""Picks the object store the settings name."""

from __future__ import annotations

from docvl.settings import CoreSettings
from docvl.storage.base import ObjectStore


def open_store(settings: CoreSettings) -> ObjectStore:
    if settings.object_store == "local":
        from docvl.storage.local import LocalObjectStore

        return LocalObjectStore(settings.storage_dir)
    from docvl.storage.s3 import S3ObjectStore

    return S3ObjectStore(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        settings.s3_bucket,
        settings.s3_region,
    )


def open_bucket(settings: CoreSettings, bucket: str, own: ObjectStore) -> ObjectStore:
    """The store for `bucket`: `own` (the platform's store) for its own bucket, and for any bucket when
    objects are kept in a local directory; another bucket with the same endpoint and credentials otherwise."""
    if bucket == settings.s3_bucket or settings.object_store == "local":
        return own
    return open_store(settings.model_copy(update={"s3_bucket": bucket}))
