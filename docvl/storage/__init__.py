"""Object storage: one interface (ObjectStore), an S3/MinIO implementation and a local-directory one."""

from docvl.storage.base import ObjectStore, OpenedObject, StoredInput, StoredObject
from docvl.storage.factory import open_store

__all__ = ["ObjectStore", "OpenedObject", "StoredInput", "StoredObject", "open_store"]
