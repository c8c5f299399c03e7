"""The sweep's intake: an object in a watched bucket becomes a job, once per content, tasks, model and
prompt version. It goes through the front doors' intake: its tasks and priority are checked as a
submission's options are (intake.parse_request), and each document is copied and inspected as an upload
is (intake.copied and intake.inspected: the size limit, the media type by content, the page count, Office
documents), before anything is stored."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from docvl.db import jobs
from docvl.documents import DocumentError, sniff_media_type
from docvl.errors import TooLarge
from docvl.jobs import finish
from docvl.jobs.context import Context
from docvl.jobs.dispatch import Dispatch
from docvl.jobs.intake import Copied, JobRequest, Limits, copied, inspected
from docvl.observability import tracing
from docvl.storage import ObjectStore

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


def take_in(
    ctx: Context, source: ObjectStore, key: str, request: SweepRequest, dispatch: Dispatch | None = None
) -> Taken | None:
    """Check the object as a front door checks an upload, store it and make its job; None when the same
    request was made before, or when the object is refused without a job.

    A document intake refuses (not a document, damaged, empty, encrypted, too many pages, an Office
    document where they are not taken) still becomes a job, failed at once with the refusal's code and
    message: a sweep has no caller to answer, the job is where its owner sees why, and it is made once (the
    next sweep finds it and makes no other). An object over the size limit is refused without a job, and
    logged: it is not read past the limit, so it has no content hash to be taken in once by, and storing
    it only to record its refusal is what the limit is there to prevent."""
    found = source.stat(key)
    if found is None:  # gone since the listing
        return None
    if found.size > request.limits.max_upload_bytes:
        log.warning(
            "sweep: %s is %d bytes, over the limit of %d: not taken in",
            key,
            found.size,
            request.limits.max_upload_bytes,
        )
        return None
    try:
        with source.open(key) as stream, copied(stream, request.limits) as copy:
            return _take_in(ctx, key, request, copy, dispatch)
    except TooLarge as exc:  # it grew since the listing
        log.warning("sweep: %s: %s: not taken in", key, exc.message)
        return None


def _take_in(
    ctx: Context, key: str, request: SweepRequest, copy: Copied, dispatch: Dispatch | None
) -> Taken | None:
    idempotency = request.key(copy.sha256)
    with ctx.db.transaction() as s:
        if jobs.find_by_idempotency_key(s, request.owner, idempotency) is not None:
            return None  # taken in before: nothing to store
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
                options={"source": key},
                priority=request.request.priority,
                idempotency_key=idempotency,
                request_fingerprint=hashlib.sha256(idempotency.encode()).hexdigest(),
                trace=tracing.current_ids(),
            ),
        )
    if not created:
        return None
    if refused is not None:
        log.info("sweep: %s refused (%s): %s", key, refused.code, refused.message)
        finish.fail(ctx, job.id, refused.code, refused.message, dispatch)
    return Taken(job.id, failed=refused is not None)


def _media_type(copy: Copied) -> str:
    """What a refused document is, as far as its first bytes tell."""
    with copy.path.open("rb") as fh:
        head = fh.read(1024)
    try:
        return sniff_media_type(head)
    except DocumentError:
        return "application/octet-stream"
