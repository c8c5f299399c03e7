"""Object storage: one interface (ObjectStore), an S3/MinIO implementation and a local-directory one."""

from docvl.storage.base import ObjectStore, StoredInput, StoredObject
from docvl.storage.factory import open_store

__all__ = ["ObjectStore", "StoredInput", "StoredObject", "open_store"]
