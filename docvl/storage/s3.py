"""The object store on MinIO or any S3 API, through the `minio` SDK."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import BinaryIO, cast
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import MinioException, S3Error, ServerError

from docvl.errors import DocvlError, InvalidInput, NotFound, StorageUnavailable
from docvl.storage.base import (
    HashingReader,
    ObjectStore,
    OpenedObject,
    StoredInput,
    StoredObject,
    check_key,
    input_key,
)

log = logging.getLogger(__name__)
PART_SIZE = 5 * 1024 * 1024  # the S3 minimum: what one multipart part holds in memory
MAX_PRESIGN_S = 7 * 24 * 3600  # the S3 limit
_RETRYABLE_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted"}


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """SDK and network failures as docvl errors: outages become StorageUnavailable (retryable)."""
    try:
        yield
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            raise NotFound(f"{action}: no such object") from exc
        if exc.code in _RETRYABLE_CODES:
            raise StorageUnavailable(f"{action}: the object store is unavailable ({exc.code})") from exc
        raise DocvlError(f"{action}: the object store refused ({exc.code}: {exc.message})") from exc
    except (ServerError, urllib3.exceptions.HTTPError, OSError) as exc:
        raise StorageUnavailable(f"{action}: the object store is unreachable ({type(exc).__name__})") from exc
    except MinioException as exc:
        raise StorageUnavailable(f"{action}: the object store failed ({exc})") from exc


class S3ObjectStore(ObjectStore):
    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, bucket: str, region: str | None = None
    ) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=120),
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
            maxsize=16,
        )
        self.bucket = bucket
        self.client = Minio(
            parts.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parts.scheme == "https",
            region=region or "us-east-1",  # known up front: presigning then needs no round trip
            http_client=http,
        )

    def ensure_ready(self) -> None:
        with _translated(f"creating bucket {self.bucket}"):
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as exc:  # another process made it first
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
                log.info("created bucket %s", self.bucket)

    def put_input(
        self,
        stream: BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredInput:
        staging = f"staging/{uuid.uuid4().hex}"
        reader = HashingReader(stream, max_bytes)
        try:
            with _translated("storing an input"):
                self.client.put_object(
                    self.bucket,
                    staging,
                    cast(BinaryIO, reader),
                    length=-1,
                    part_size=PART_SIZE,
                    content_type=content_type,
                )
            key = input_key(reader.hexdigest())
            created = not self.exists(key)
            if created:
                with _translated("storing an input"):
                    self.client.copy_object(self.bucket, key, CopySource(self.bucket, staging))
        finally:
            self._delete_quietly(staging)
        return StoredInput(key=key, sha256=reader.hexdigest(), size=reader.size, created=created)

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> StoredObject:
        with _translated(f"storing {key}"):
            self.client.put_object(
                self.bucket, check_key(key), io.BytesIO(data), length=len(data), content_type=content_type
            )
        return StoredObject(key=key, size=len(data), content_type=content_type)

    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        @contextmanager
        def opened() -> Iterator[BinaryIO]:
            with _translated(f"reading {key}"):
                response = self.client.get_object(self.bucket, check_key(key))
            try:
                yield response  # type: ignore[misc]
            finally:
                response.close()
                response.release_conn()

        return opened()

    def open_version(self, key: str) -> AbstractContextManager[OpenedObject]:
        @contextmanager
        def opened() -> Iterator[OpenedObject]:
            with self.open(key) as stream:
                etag = cast(urllib3.BaseHTTPResponse, stream).headers.get("ETag", "")
                yield OpenedObject(stream, _unquoted(etag))

        return opened()

    def stat(self, key: str) -> StoredObject | None:
        try:
            with _translated(f"looking up {key}"):
                info = self.client.stat_object(self.bucket, check_key(key))
        except NotFound:
            return None
        return StoredObject(
            key=key,
            size=int(info.size or 0),
            content_type=info.content_type or "",
            etag=_unquoted(info.etag or ""),
        )

    def delete(self, key: str) -> None:
        with _translated(f"deleting {key}"):
            self.client.remove_object(self.bucket, check_key(key))

    def list(self, prefix: str) -> Iterator[StoredObject]:
        with _translated(f"listing {prefix}"):
            for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if item.object_name and not item.is_dir:
                    yield StoredObject(
                        key=item.object_name,
                        size=int(item.size or 0),
                        content_type="",
                        etag=_unquoted(item.etag or ""),
                    )

    def presigned_get(self, key: str, expires_s: int) -> str:
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise InvalidInput(f"a link lifetime of {expires_s} s is out of range: use 1..{MAX_PRESIGN_S} s")
        with _translated(f"signing {key}"):
            return str(
                self.client.presigned_get_object(
                    self.bucket, check_key(key), expires=timedelta(seconds=expires_s)
                )
            )

    def _delete_quietly(self, key: str) -> None:
        try:
            self.delete(key)
        except StorageUnavailable:
            log.warning("could not delete %s; a bucket lifecycle rule on staging/ should expire it", key)


def _unquoted(etag: str) -> str:
    """An ETag as the listing, HEAD and GET all spell it: without its quotes."""
    return etag.replace('"', "")
