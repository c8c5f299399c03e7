"""The sweep's memory (docvl.jobs.sweep, docvl.db.sweep_objects) on moto's S3 server and a real Postgres:
an object is read once per version (ETag and size, from the listing: no request per object), a change or a
job that is gone makes it read again, a sweep killed with SIGKILL takes each document in once when it runs
again, and the bucket's totals reach the platform metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

import pytest
from sqlalchemy import delete, select

from docvl.db import sweep_objects
from docvl.db.database import Database
from docvl.db.models import Job, SweepObject
from docvl.jobs import sweep
from docvl.jobs.context import Context
from docvl.observability.metrics.platform import PlatformCollector
from docvl.storage import OpenedObject, StoredObject
from docvl.storage.s3 import S3ObjectStore
from tests.support.helpers import ROOT, png, stop_process, wait_for
from tests.support.sweeper import sweep_request

CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
ONE_PAGE = (CORPUS / "001-trivial" / "minimal-document.pdf").read_bytes()
REDIS_URL = "redis://127.0.0.1:6379/0"


class CountingStore(S3ObjectStore):
    """The real S3 store, counting the requests a sweep could make per object: bodies opened, HEADs."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        super().__init__(endpoint, "testing", "testing", bucket)
        self.opened: list[str] = []
        self.stats: list[str] = []

    def open_version(self, key: str) -> AbstractContextManager[OpenedObject]:
        self.opened.append(key)
        return super().open_version(key)

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        if key not in self.opened:
            self.opened.append(key)
        return super().open(key)

    def stat(self, key: str) -> StoredObject | None:
        self.stats.append(key)
        return super().stat(key)

    def forget(self) -> None:
        self.opened.clear()
        self.stats.clear()


@pytest.fixture
def source(s3_endpoint: str) -> CountingStore:
    """A watched bucket of its own, beside the platform's (s3_store)."""
    store = CountingStore(s3_endpoint, f"incoming-{uuid.uuid4().hex[:12]}")
    store.ensure_ready()
    return store


def swept_jobs(db: Database) -> dict[str, int]:
    """How many jobs the sweep made per source object."""
    with db.transaction() as s:
        sources = [str(job.options["source"]) for job in s.execute(select(Job)).scalars()]
    return {key: sources.count(key) for key in sorted(set(sources))}


def test_a_second_sweep_over_an_unchanged_bucket_reads_no_object(
    db: Database, s3_store: S3ObjectStore, source: CountingStore
) -> None:
    ctx = Context(db, s3_store)
    documents = {"in/a.pdf": ONE_PAGE, "in/b.png": png(1, (32, 24)), "in/notes.txt": b"not a document"}
    for key, data in documents.items():
        source.put(key, data)
    first = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert (first.listed, first.read, first.made, first.failed) == (3, 3, 3, 1)
    assert first.bytes_read == sum(len(d) for d in documents.values())
    assert sorted(source.opened) == sorted(documents)
    assert source.stats == [], "sizes and ETags come from the listing, not a HEAD per object"

    source.forget()
    second = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert (second.listed, second.unchanged, second.read, second.bytes_read, second.made) == (3, 3, 0, 0, 0)
    assert source.opened == []
    assert source.stats == []

    with db.transaction() as s:
        totals = sweep_objects.totals(s, source.bucket)
        assert totals is not None
        assert (totals.sweeps, totals.objects_listed, totals.objects_read, totals.jobs_made) == (2, 6, 3, 3)
        assert totals.bytes_read == first.bytes_read
        remembered = sweep_objects.remembered(s, source.bucket, "in/")
    assert sorted(remembered) == sorted(documents)
    assert all(row.job_id is not None for row in remembered.values())

    collector = PlatformCollector(db.url, REDIS_URL, [], 2.0)
    samples = {(m.name, tuple(m.labels.values())): m.value for f in collector.collect() for m in f.samples}
    assert samples[("docvl_sweep_objects_read_total", (source.bucket,))] == 3
    assert samples[("docvl_sweep_objects_listed_total", (source.bucket,))] == 6
    assert samples[("docvl_sweep_bytes_read_total", (source.bucket,))] == first.bytes_read
    assert samples[("docvl_sweeps_total", (source.bucket,))] == 2


def test_a_changed_object_is_read_again_and_makes_a_new_job(
    db: Database, s3_store: S3ObjectStore, source: CountingStore
) -> None:
    ctx = Context(db, s3_store)
    source.put("in/a.png", png(1, (32, 24)))
    source.put("in/b.png", png(2, (32, 24)))
    assert sweep.sweep(ctx, source, source.bucket, "in/", sweep_request()).made == 2

    source.put("in/a.png", png(3, (32, 24)))  # the same size, other content: another ETag
    source.forget()
    again = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert (again.read, again.made) == (1, 1)
    assert source.opened == ["in/a.png"]
    assert swept_jobs(db) == {"in/a.png": 2, "in/b.png": 1}

    source.put("in/a.png", png(1, (32, 24)))  # back to its first content: read, its job found, none made
    source.forget()
    back = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert (back.read, back.made) == (1, 0)
    assert sweep.sweep(ctx, source, source.bucket, "in/", sweep_request()).read == 0


def test_deleted_and_uploaded_again_with_the_same_content_makes_no_new_job(
    db: Database, s3_store: S3ObjectStore, source: CountingStore
) -> None:
    """Same content and tasks: the same idempotency key, so no new job, whether or not a sweep saw the
    object gone in between (then it is read once more, and its job found)."""
    ctx = Context(db, s3_store)
    source.put("in/a.pdf", ONE_PAGE)
    assert sweep.sweep(ctx, source, source.bucket, "in/", sweep_request()).made == 1

    source.delete("in/a.pdf")
    source.put("in/a.pdf", ONE_PAGE)  # no sweep in between: the same ETag and size, not even read
    assert (sweep.sweep(ctx, source, source.bucket, "in/", sweep_request()).read) == 0

    source.delete("in/a.pdf")
    gone = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert gone.listed == 0
    with db.transaction() as s:
        assert sweep_objects.remembered(s, source.bucket, "in/") == {}, "a gone object is forgotten"
    source.put("in/a.pdf", ONE_PAGE)
    back = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert (back.read, back.made) == (1, 0)
    assert swept_jobs(db) == {"in/a.pdf": 1}


def test_a_job_gone_or_another_request_makes_the_object_read_again(
    db: Database, s3_store: S3ObjectStore, source: CountingStore
) -> None:
    """What the sweep remembers never keeps a document out: a job deleted (as retention would) or a request
    with other tasks has no job to find, so the object is read and taken in again."""
    ctx = Context(db, s3_store)
    source.put("in/a.pdf", ONE_PAGE)
    assert sweep.sweep(ctx, source, source.bucket, "in/", sweep_request()).made == 1
    with db.transaction() as s:
        s.execute(delete(Job))
        assert s.execute(select(SweepObject.job_id)).scalar_one() is None
    again = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert (again.read, again.made) == (1, 1)

    other = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request(("ocr", "chart2code")))
    assert (other.read, other.made) == (1, 1)
    assert sweep.sweep(ctx, source, source.bucket, "in/", sweep_request(("ocr", "chart2code"))).read == 0
    assert sweep.sweep(ctx, source, source.bucket, "in/", sweep_request(), read_all=True).read == 1


def test_a_crash_between_the_job_and_the_memory_leaves_neither(
    db: Database, s3_store: S3ObjectStore, source: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory is written in the job's transaction: a process dying before it is written leaves no job
    either, and the next sweep takes the document in once."""
    ctx = Context(db, s3_store)
    source.put("in/a.pdf", ONE_PAGE)

    def crash(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed between the job and the memory")

    with monkeypatch.context() as patched:
        patched.setattr(sweep_objects, "remember", crash)
        with pytest.raises(SystemExit):
            sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert swept_jobs(db) == {}
    assert (sweep.sweep(ctx, source, source.bucket, "in/", sweep_request()).made) == 1
    assert sweep.sweep(ctx, source, source.bucket, "in/", sweep_request()).read == 0
    assert swept_jobs(db) == {"in/a.pdf": 1}


def test_a_sweep_killed_with_sigkill_takes_each_document_in_once_when_run_again(
    db: Database, s3_store: S3ObjectStore, source: CountingStore, s3_endpoint: str, tmp_path: Path
) -> None:
    ctx = Context(db, s3_store)
    count = 60
    for index in range(count):
        source.put(f"in/{index:03d}.png", png(index, (16, 12)))
    log_path = tmp_path / "sweeper.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.sweeper",
                db.url,
                s3_endpoint,
                source.bucket,
                s3_store.bucket,
                "in/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        wait_for(lambda: sum(swept_jobs(db).values()) >= 5, 120, "the sweeper's first jobs", interval=0.02)
        assert process.poll() is None, f"the sweep ended before it was killed:\n{log_path.read_text()}"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(20)
    finally:
        stop_process(process)
    made_before = sum(swept_jobs(db).values())
    assert 5 <= made_before < count

    again = sweep.sweep(ctx, source, source.bucket, "in/", sweep_request())
    assert again.made == count - made_before
    assert again.read <= count - made_before + 1, (
        "only what the killed sweep had not taken in (and one in hand)"
    )
    assert swept_jobs(db) == {f"in/{index:03d}.png": 1 for index in range(count)}
    assert sweep.sweep(ctx, source, source.bucket, "in/", sweep_request()).read == 0
