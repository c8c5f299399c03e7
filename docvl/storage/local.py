"""The object store in a local directory, for the embedded single-machine mode."""

from __future__ import annotations

import io
import mimetypes
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

from docvl.errors import InvalidInput, NotFound, StorageUnavailable
from docvl.storage.base import (
    CHUNK,
    HashingReader,
    ObjectStore,
    OpenedObject,
    StoredInput,
    StoredObject,
    check_key,
    input_key,
)


class LocalObjectStore(ObjectStore):
    """Keys are paths under `root`; writes go to a staging file first and are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.staging = self.root / ".staging"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def ensure_ready(self) -> None:
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create the storage directory {self.root}: {exc}") from exc

    def _spool(self, stream: BinaryIO | HashingReader) -> Path:
        """Copy the stream in chunks to a new file in the staging directory, synced to disk."""
        temporary = self.staging / uuid.uuid4().hex
        try:
            with temporary.open("wb") as out:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary

    def _move(self, temporary: Path, target: Path) -> None:
        """Rename into place (atomic), or drop the staged file."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def put_input(
        self,
        stream: BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredInput:
        reader = HashingReader(stream, max_bytes)
        try:
            temporary = self._spool(reader)
            key = input_key(reader.hexdigest())
            target = self._path(key)
            created = not target.exists()
            if created:
                self._move(temporary, target)
            else:
                temporary.unlink()
        except OSError as exc:
            raise StorageUnavailable(f"storing an input in {self.root} failed: {exc}") from exc
        return StoredInput(key=key, sha256=reader.hexdigest(), size=reader.size, created=created)

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> StoredObject:
        try:
            self._move(self._spool(io.BytesIO(data)), self._path(key))
        except OSError as exc:
            raise StorageUnavailable(f"storing {key} failed: {exc}") from exc
        return StoredObject(key=key, size=len(data), content_type=content_type)

    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None
        except OSError as exc:
            raise StorageUnavailable(f"reading {key} failed: {exc}") from exc

    def open_version(self, key: str) -> AbstractContextManager[OpenedObject]:
        @contextmanager
        def opened() -> Iterator[OpenedObject]:
            with self.open(key) as stream:
                yield OpenedObject(stream, _etag(os.fstat(stream.fileno())))  # the file being read

        return opened()

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            found = path.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(found.st_mode):
            return None
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return StoredObject(key=key, size=found.st_size, content_type=content_type, etag=_etag(found))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.is_relative_to(self.staging):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found = self.stat(key)
                    if found is not None:
                        yield found

    def presigned_get(self, key: str, expires_s: int) -> str:
        """A file:// URL: the embedded mode serves one machine, whose processes read the directory."""
        if expires_s < 1:
            raise InvalidInput("a link lifetime must be at least 1 s")
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no object {key}")
        return path.as_uri()


def _etag(found: os.stat_result) -> str:
    """The local store's ETag: a write puts a new file in place (a rename), so its inode and modification
    time change with its content; a change detector, not a content hash."""
    return f"{found.st_ino:x}-{found.st_mtime_ns:x}-{found.st_size:x}"
