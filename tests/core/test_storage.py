"""Object storage through the real `minio` client against moto's S3 server, and the local directory store."""

from __future__ import annotations

import hashlib
import io
import threading
import tracemalloc
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from docvl.errors import InvalidInput, NotFound, StorageUnavailable, TooLarge
from docvl.settings import CoreSettings
from docvl.storage import ObjectStore, open_store
from docvl.storage.base import input_key, output_key, page_key
from docvl.storage.local import LocalObjectStore
from docvl.storage.s3 import S3ObjectStore
from tests.support.tcp_proxy import TcpProxy

MiB = 1024 * 1024


class Generated(io.RawIOBase):
    """`size` pseudo-random bytes, produced as they are read: nothing of it exists in memory at once."""

    def __init__(self, size: int, seed: int = 0, on_read: threading.Event | None = None) -> None:
        self.remaining = size
        self.block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
        self.on_read = on_read
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        out = (self.block * (size // len(self.block) + 1))[:size]
        self.remaining -= len(out)
        self.sha256.update(out)
        if self.on_read is not None:
            self.on_read.set()
        return out


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "s3":
        s3: S3ObjectStore = request.getfixturevalue("s3_store")
        return s3
    local = LocalObjectStore(tmp_path / "objects")
    local.ensure_ready()
    return local


def test_inputs_are_content_addressed_and_stored_once(store: ObjectStore) -> None:
    first = store.put_input(io.BytesIO(b"%PDF-1.7 one"), content_type="application/pdf")
    second = store.put_input(io.BytesIO(b"%PDF-1.7 one"), content_type="application/pdf")
    other = store.put_input(io.BytesIO(b"%PDF-1.7 two"))
    assert first.key == input_key(hashlib.sha256(b"%PDF-1.7 one").hexdigest())
    assert (first.created, second.created, other.created) == (True, False, True)
    assert second.key == first.key
    assert first.size == 12
    assert [o.key for o in store.list("inputs/")] == sorted([first.key, other.key])
    assert list(store.list("staging/")) == []
    assert store.get(first.key) == b"%PDF-1.7 one"


def test_the_listing_names_each_version_by_size_and_etag(store: ObjectStore) -> None:
    """What the sweep tells a change by without reading the object (docvl.jobs.sweep): the listing's size and
    ETag, the same ETag as a HEAD and as the read itself name; other bytes of the same size, another ETag."""
    store.put("in/a.pdf", b"%PDF-1.7 one")
    (listed,) = store.list("in/")
    assert (listed.key, listed.size) == ("in/a.pdf", 12)
    assert listed.etag
    stat = store.stat("in/a.pdf")
    assert stat is not None
    assert stat.etag == listed.etag
    with store.open_version("in/a.pdf") as opened:
        assert opened.stream.read() == b"%PDF-1.7 one"
        assert opened.etag == listed.etag
    store.put("in/a.pdf", b"%PDF-1.7 two")
    (changed,) = store.list("in/")
    assert changed.size == listed.size
    assert changed.etag != listed.etag
    with pytest.raises(NotFound), store.open_version("in/gone.pdf"):
        pass


def test_an_oversized_upload_is_cut_off_and_nothing_is_kept(store: ObjectStore) -> None:
    source = Generated(30 * MiB)
    with pytest.raises(TooLarge, match="over the limit of 10485760 bytes"):
        store.put_input(source, max_bytes=10 * MiB)  # type: ignore[arg-type]
    assert source.remaining >= 30 * MiB - 20 * MiB, "the stream was not read to its end"
    assert list(store.list("")) == []


def test_put_get_stat_list_delete(store: ObjectStore) -> None:
    job = uuid.uuid4()
    key = page_key(job, 3)
    store.put(key, b"png bytes", content_type="image/png")
    store.put(output_key(job, "document.md"), b"# Title")
    assert store.get(key) == b"png bytes"
    stat = store.stat(key)
    assert stat is not None
    assert stat.size == 9
    assert [o.key for o in store.list(f"jobs/{job}/")] == sorted([key, output_key(job, "document.md")])
    with store.open(key) as stream:
        assert stream.read(3) == b"png"
    store.delete(key)
    store.delete(key)
    assert store.stat(key) is None
    with pytest.raises(NotFound):
        store.get(key)
    for bad in ("../etc/passwd", "/abs", "a/../../b", ""):
        with pytest.raises(InvalidInput):
            store.put(bad, b"x")
    with pytest.raises(InvalidInput):
        output_key(job, "../escape")


def test_presigned_links_read_without_credentials_for_a_bounded_time(s3_store: S3ObjectStore) -> None:
    s3_store.put("jobs/x/outputs/result.md", b"# Result", content_type="text/markdown")
    url = s3_store.presigned_get("jobs/x/outputs/result.md", 60)
    assert "X-Amz-Expires=60" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"# Result"
    for bad in (0, 8 * 24 * 3600):
        with pytest.raises(InvalidInput, match="out of range"):
            s3_store.presigned_get("jobs/x/outputs/result.md", bad)


def test_local_links_are_file_urls(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.ensure_ready()
    store.put("jobs/x/outputs/a.md", b"A")
    url = store.presigned_get("jobs/x/outputs/a.md", 60)
    assert url.startswith("file://")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"A"


@pytest.mark.slow
def test_a_200_mb_upload_streams_in_bounded_memory(store: ObjectStore) -> None:
    size = 200 * MiB
    source = Generated(size, seed=1)
    tracemalloc.start()
    try:
        stored = store.put_input(source)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == size
    assert stored.sha256 == source.sha256.hexdigest()
    assert peak < 40 * MiB, f"peak Python memory {peak / MiB:.0f} MiB while streaming 200 MiB"
    stat = store.stat(stored.key)
    assert stat is not None
    assert stat.size == size


def test_the_factory_picks_the_store_from_settings(tmp_path: Path, s3_endpoint: str) -> None:
    local = open_store(CoreSettings(object_store="local", storage_dir=tmp_path))
    assert isinstance(local, LocalObjectStore)
    s3 = open_store(CoreSettings(object_store="s3", s3_endpoint=s3_endpoint.removeprefix("http://")))
    assert isinstance(s3, S3ObjectStore)
    s3.ensure_ready()
    s3.ensure_ready()  # a bucket that exists is fine


# -- outages ---------------------------------------------------------------------------------------------


@pytest.fixture
def s3_behind_proxy(s3_endpoint: str) -> Iterator[tuple[S3ObjectStore, TcpProxy]]:
    host, port = s3_endpoint.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port)).start()
    store = S3ObjectStore(
        f"http://127.0.0.1:{proxy.port}", "testing", "testing", f"docvl-{uuid.uuid4().hex[:12]}"
    )
    store.ensure_ready()
    yield store, proxy
    proxy.stop()


def test_s3_outage_mid_upload_is_typed_and_the_retry_stores_once(
    s3_behind_proxy: tuple[S3ObjectStore, TcpProxy],
) -> None:
    store, proxy = s3_behind_proxy
    reading = threading.Event()
    source = Generated(64 * MiB, seed=2, on_read=reading)
    failure: list[BaseException] = []

    def upload() -> None:
        try:
            store.put_input(source)  # type: ignore[arg-type]
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=upload)
    thread.start()
    assert reading.wait(30)
    proxy.stop()
    thread.join(120)
    assert len(failure) == 1
    assert isinstance(failure[0], StorageUnavailable)
    with pytest.raises(StorageUnavailable):
        store.stat("inputs/anything")
    proxy.start()
    stored = store.put_input(Generated(64 * MiB, seed=2))  # type: ignore[arg-type]
    again = store.put_input(Generated(64 * MiB, seed=2))  # type: ignore[arg-type]
    assert stored.created
    assert not again.created
    assert [o.key for o in store.list("inputs/")] == [stored.key]
    assert list(store.list("staging/")) == []


def test_unreadable_stream_errors_are_not_outages(store: ObjectStore) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise ValueError("the client disconnected")

    with pytest.raises(ValueError, match="client disconnected"):
        store.put_input(Broken())  # type: ignore[arg-type]
    assert list(store.list("")) == []
