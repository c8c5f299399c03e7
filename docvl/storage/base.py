"""The object store interface, its key layout, and the hashing reader both implementations stream through."""

from __future__ import annotations

import hashlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from docvl.errors import InvalidInput, TooLarge

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str
    # What changes when the object does (S3's ETag; the local store's inode, mtime and size), "" when not
    # known. A change detector only, never a content hash: a multipart upload's ETag is not its MD5.
    etag: str = ""


@dataclass(frozen=True)
class OpenedObject:
    """An object opened for reading, with the ETag of the version being read (not of a listing before)."""

    stream: BinaryIO
    etag: str


@dataclass(frozen=True)
class StoredInput:
    key: str
    sha256: str
    size: int
    created: bool  # False: the same content was stored already, and this upload was discarded


# Where the platform keeps its own objects: never readable as a caller's `source`.
INTERNAL_PREFIXES = ("inputs/", "jobs/", "staging/", ".staging/")


def input_key(sha256: str) -> str:
    """Inputs are content-addressed: the same bytes are stored once."""
    return f"inputs/{sha256}"


def job_prefix(job_id: uuid.UUID) -> str:
    return f"jobs/{job_id}/"


def page_key(job_id: uuid.UUID, index: int, extension: str = "png") -> str:
    return f"{job_prefix(job_id)}pages/{index:05d}.{extension}"


def output_key(job_id: uuid.UUID, name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise InvalidInput(f"output name {name!r} must be a plain file name")
    return f"{job_prefix(job_id)}outputs/{name}"


def check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key or len(key) > 1024:
        raise InvalidInput(f"object key {key!r} is not a valid relative key")
    return key


class HashingReader:
    """A read-only stream over `source` that hashes and counts what passes, and stops past `max_bytes`."""

    def __init__(self, source: BinaryIO, max_bytes: int | None = None) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.size = 0
        self._sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        """At most CHUNK bytes at a time, whatever the caller asks, so no read holds much in memory."""
        data = self.source.read(CHUNK if size is None or size < 0 else min(size, CHUNK))
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise TooLarge(f"the upload is over the limit of {self.max_bytes} bytes: send a smaller file")
        self._sha256.update(data)
        return data

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


class ObjectStore(ABC):
    """Where inputs, page images and outputs live. Outages raise StorageUnavailable (retryable)."""

    @abstractmethod
    def ensure_ready(self) -> None:
        """Create the bucket (or directory) when missing."""

    @abstractmethod
    def put_input(
        self,
        stream: BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredInput:
        """Stream an input in chunks to inputs/<sha256>; past `max_bytes` it is cut off, nothing kept."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> StoredObject:
        """Store small bytes (a page image, an output) under `key`, replacing what was there."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; NotFound when missing."""

    @abstractmethod
    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """The object as a stream, for large objects."""

    @abstractmethod
    def open_version(self, key: str) -> AbstractContextManager[OpenedObject]:
        """The object as a stream with the ETag of the version the stream reads; NotFound when missing."""

    @abstractmethod
    def stat(self, key: str) -> StoredObject | None:
        """Size, type and ETag, or None when missing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under `prefix`, in key order, with its size and ETag as the listing gives them (no
        request per object)."""

    @abstractmethod
    def presigned_get(self, key: str, expires_s: int) -> str:
        """A URL that reads the object without credentials until it expires."""

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None
