"""The sweep's intake: an object in a watched bucket becomes a job, once per content, tasks, model and
prompt version. It goes through the front doors' intake: its tasks and priority are checked as a
submission's options are (intake.parse_request), and each document is copied and inspected as an upload
is (intake.copied and intake.inspected: the size limit, the media type by content, the page count, Office
documents), before anything is stored.

A sweep remembers what it read (docvl.db.sweep_objects): each object's version, by its ETag and size as the
listing gives them, and the sha256 of its content. An object listed with the version remembered, whose job
for this request exists, is not read again: a sweep over an unchanged bucket is a listing and a few
queries. The ETag only says whether the object changed (a multipart upload's ETag is no content hash); the
job is always found by the content hash the sweep computed itself. A changed object, or one whose job is
gone (deleted, or made for other tasks or another model), is read again. The memory is written in the
transaction that makes (or finds) the object's job, so a sweep killed at any line leaves either both or
neither, and a re-run takes each document in once."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from docvl.db import jobs, sweep_objects
from docvl.documents import DocumentError, sniff_media_type
from docvl.errors import NotFound, TooLarge
from docvl.jobs import finish
from docvl.jobs.context import Context
from docvl.jobs.dispatch import Dispatch
from docvl.jobs.intake import Copied, JobRequest, Limits, copied, inspected
from docvl.observability import tracing
from docvl.storage import ObjectStore, StoredObject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepRequest:
    owner: str
    request: JobRequest  # the sweep's tasks and priority, checked by intake.parse_request
    limits: Limits  # the job runners' (what they would refuse, the sweep refuses first)
    model_revision: str
    prompt_version: str

    def key(self, sha256: str) -> str:
        """Same content, tasks, model and prompt: same key, so a document is taken in once."""
        tasks = sorted(t.value for t in self.request.tasks)
        what = f"{tasks}|{self.model_revision}|{self.prompt_version}"
        return f"sweep:{sha256}:{hashlib.sha256(what.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class Taken:
    """A job the sweep made: queued, or already failed when intake refused its document."""

    job_id: uuid.UUID
    failed: bool


@dataclass(frozen=True)
class Intake:
    """What taking one listed object in did: the job it made (None: none made), and what it read."""

    taken: Taken | None
    bytes_read: int = 0
    read: bool = False  # its body was read (past the listing)


@dataclass(frozen=True)
class Plan:
    """A listing sorted into what must be read and what is known unchanged."""

    listed: int
    to_read: list[StoredObject]
    unchanged: int  # listed with the version remembered, and their job for this request exists
    forgotten: int  # remembered objects no longer listed, now forgotten


@dataclass
class Swept:
    """One sweep's summary (logged, and added to the bucket's totals)."""

    bucket: str
    prefix: str
    listed: int = 0
    unchanged: int = 0
    read: int = 0
    bytes_read: int = 0
    taken: list[Taken] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def made(self) -> int:
        return len(self.taken)

    @property
    def failed(self) -> int:
        return sum(1 for t in self.taken if t.failed)


def plan(
    ctx: Context,
    bucket: str,
    prefix: str,
    listing: Sequence[StoredObject],
    request: SweepRequest,
    *,
    read_all: bool = False,
) -> Plan:
    """Which listed objects must be read: those the sweep has not read in the version listed (a new or
    changed ETag or size, or no ETag at all), and those whose job for this request is gone. What it knew of
    objects no longer listed is forgotten. `read_all`: read every object, as if nothing were remembered."""
    with ctx.db.transaction() as s:
        known = sweep_objects.remembered(s, bucket, prefix)
        listed_keys = {item.key for item in listing}
        forgotten = sweep_objects.forget(s, bucket, known.keys() - listed_keys)
        wanted: dict[str, str] = {}  # object key -> the idempotency key of its job, when unchanged
        for item in listing:
            seen = known.get(item.key)
            if seen is not None and item.etag and (seen.etag, seen.size_bytes) == (item.etag, item.size):
                wanted[item.key] = request.key(seen.sha256)
        found = set() if read_all else sweep_objects.jobs_found(s, request.owner, set(wanted.values()))
    to_read = [item for item in listing if wanted.get(item.key) not in found]
    return Plan(len(listing), to_read, len(listing) - len(to_read), forgotten)


def sweep(
    ctx: Context,
    source: ObjectStore,
    bucket: str,
    prefix: str,
    request: SweepRequest,
    take: Callable[[StoredObject], Intake] | None = None,
    *,
    read_all: bool = False,
) -> Swept:
    """List the bucket under `prefix` and take in each object not known unchanged (with `take`, by
    default `take_in`); log the summary and add it to the bucket's totals."""
    started = time.monotonic()
    listing = list(source.list(prefix))
    planned = plan(ctx, bucket, prefix, listing, request, read_all=read_all)
    swept = Swept(bucket, prefix, listed=planned.listed, unchanged=planned.unchanged)
    for item in planned.to_read:
        intake = take(item) if take is not None else take_in(ctx, source, bucket, item, request)
        swept.read += int(intake.read)
        swept.bytes_read += intake.bytes_read
        if intake.taken is not None:
            swept.taken.append(intake.taken)
    swept.seconds = time.monotonic() - started
    with ctx.db.transaction() as s:
        sweep_objects.add_totals(
            s, bucket, listed=swept.listed, read=swept.read, bytes_read=swept.bytes_read, made=swept.made
        )
    log.info(
        "sweep of %s/%s: %d objects listed, %d unchanged (not read), %d read (%d bytes), %d forgotten "
        "(gone), %d jobs made (%d failed at intake) in %.2f s",
        bucket,
        prefix,
        swept.listed,
        swept.unchanged,
        swept.read,
        swept.bytes_read,
        planned.forgotten,
        swept.made,
        swept.failed,
        swept.seconds,
    )
    return swept


def take_in(
    ctx: Context,
    source: ObjectStore,
    bucket: str,
    item: StoredObject,
    request: SweepRequest,
    dispatch: Dispatch | None = None,
) -> Intake:
    """Check the listed object as a front door checks an upload, store it and make its job; no job when
    the same request was made before, or when the object is refused without a job.

    A document intake refuses (not a document, damaged, empty, encrypted, too many pages, an Office
    document where they are not taken) still becomes a job, failed at once with the refusal's code and
    message: a sweep has no caller to answer, the job is where its owner sees why, and it is made once (the
    next sweep finds it and makes no other). An object over the size limit is refused without a job, and
    logged: it is not read past the limit, so it has no content hash to be taken in once by, and storing
    it only to record its refusal is what the limit is there to prevent."""
    if item.size > request.limits.max_upload_bytes:
        log.warning(
            "sweep: %s is %d bytes, over the limit of %d: not taken in",
            item.key,
            item.size,
            request.limits.max_upload_bytes,
        )
        return Intake(None)
    try:
        with source.open_version(item.key) as opened, copied(opened.stream, request.limits) as copy:
            # The version read, as the read itself names it: a listing's ETag could be older than the
            # content read, and remembering a newer ETag with older content would hide a change.
            read = StoredObject(item.key, copy.size, item.content_type, opened.etag)
            return Intake(_take_in(ctx, bucket, read, request, copy, dispatch), copy.size, read=True)
    except NotFound:  # gone since the listing
        return Intake(None)
    except TooLarge as exc:  # it grew since the listing
        log.warning("sweep: %s: %s: not taken in", item.key, exc.message)
        return Intake(None, request.limits.max_upload_bytes, read=True)


def _take_in(
    ctx: Context,
    bucket: str,
    read: StoredObject,
    request: SweepRequest,
    copy: Copied,
    dispatch: Dispatch | None,
) -> Taken | None:
    idempotency = request.key(copy.sha256)
    with ctx.db.transaction() as s:
        found = jobs.find_by_idempotency_key(s, request.owner, idempotency)
        if found is not None:  # taken in before (under this name or another): nothing to store
            _remember(s, bucket, read, copy.sha256, found.id)
            return None
    refused: DocumentError | None = None
    try:
        spool = inspected(copy, request.limits, request.request)
        path, media_type = spool.path, spool.media_type
    except DocumentError as exc:
        refused, path, media_type = exc, copy.path, _media_type(copy)
    with path.open("rb") as stream:
        stored = ctx.store.put_input(stream, content_type=media_type)
    with ctx.db.transaction() as s:
        document = jobs.get_or_create_document(
            s, sha256=stored.sha256, size_bytes=stored.size, media_type=media_type, object_key=stored.key
        )
        job, created = jobs.create_job(
            s,
            jobs.NewJob(
                owner=request.owner,
                document_id=document.id,
                tasks=request.request.tasks,
                options={"source": read.key},
                priority=request.request.priority,
                idempotency_key=idempotency,
                request_fingerprint=hashlib.sha256(idempotency.encode()).hexdigest(),
                trace=tracing.current_ids(),
            ),
        )
        _remember(s, bucket, read, copy.sha256, job.id)  # with the job, or not at all
    if not created:
        return None
    if refused is not None:
        log.info("sweep: %s refused (%s): %s", read.key, refused.code, refused.message)
        finish.fail(ctx, job.id, refused.code, refused.message, dispatch)
    return Taken(job.id, failed=refused is not None)


def _remember(s: Session, bucket: str, read: StoredObject, sha256: str, job_id: uuid.UUID) -> None:
    if read.etag:  # without an ETag there is no telling a change: such an object is read every sweep
        sweep_objects.remember(
            s, bucket, read.key, etag=read.etag, size=read.size, sha256=sha256, job_id=job_id
        )


def _media_type(copy: Copied) -> str:
    """What a refused document is, as far as its first bytes tell."""
    with copy.path.open("rb") as fh:
        head = fh.read(1024)
    try:
        return sniff_media_type(head)
    except DocumentError:
        return "application/octet-stream"
