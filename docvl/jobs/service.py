"""The service functions behind every front door: the REST API and the gRPC gateway call these, so both
give the same answers. Callers are API keys; a caller sees only its owner's jobs (others are NotFound)."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from docvl.db import api_keys, jobs, page_results
from docvl.db.api_keys import Caller
from docvl.db.database import Database
from docvl.db.notifications import EventNotifier
from docvl.documents import open_document
from docvl.errors import (
    Conflict,
    DocvlError,
    InvalidInput,
    NotFound,
    TooLarge,
    TooManySubmissions,
    Unauthenticated,
    Unavailable,
)
from docvl.job_status import JobStatus
from docvl.jobs import finish
from docvl.jobs.admission import Admission, Full, Ticket, unlimited
from docvl.jobs.context import Context
from docvl.jobs.dispatch import Dispatch
from docvl.jobs.intake import JobRequest, Limits, Spooled, parse_source, spooled
from docvl.jobs.quote import Pricing, QuoteView, quote
from docvl.jobs.views import EventView, JobPage, JobView, OutputFile, PageResult, PageView, ResultView
from docvl.jobs.watch import follow_blocking
from docvl.observability import logs, tracing
from docvl.office import ConversionFailed, OfficeConverter
from docvl.storage import ObjectStore
from docvl.tasks import TaskKind

log = logging.getLogger(__name__)
AUTHENTICATED_FOR_S = 1.0  # how long a key Postgres accepted is taken as valid without asking again
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


class JobService:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        limits: Limits,
        dispatch: Dispatch,
        *,
        source_store: Callable[[str], ObjectStore],
        presign_expiry_s: int = 3600,
        spool_dir: Path | None = None,
        notifier: EventNotifier | None = None,
        on_close: Callable[[], None] | None = None,
        converter: OfficeConverter | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.limits = limits
        self.dispatch = dispatch
        self.source_store = source_store
        self.presign_expiry_s = presign_expiry_s
        self.spool_dir = spool_dir
        self.notifier = notifier
        self.on_close = on_close
        self.converter = converter  # counts an Office document's pages for a quote
        self.pricing = pricing or Pricing()
        self.admission = Admission(self._key_state)
        self._callers: dict[str, tuple[float, Caller]] = {}  # by hashed key: when Postgres said so, who
        self._callers_lock = threading.Lock()

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.stop()
        if self.on_close is not None:
            self.on_close()

    # -- who is calling ------------------------------------------------------------------------------

    def authenticate(self, secret: str | None) -> Caller:
        """The caller behind the key, as Postgres said at most AUTHENTICATED_FOR_S ago (a key revoked
        meanwhile works that much longer in this process): a request costs no database read for it while
        its key is busy. Unknown and revoked keys are asked about every time."""
        given = _given(secret)
        hashed, now = api_keys.hash_secret(given), time.monotonic()
        with self._callers_lock:
            known = self._callers.get(hashed)
        if known is not None and now - known[0] < AUTHENTICATED_FOR_S:
            return known[1]
        with self.db.transaction() as s:
            caller = api_keys.authenticate(s, given)
        with self._callers_lock:
            if len(self._callers) >= 1000:  # many keys: forget those not used within the time
                self._callers = {k: v for k, v in self._callers.items() if now - v[0] < AUTHENTICATED_FOR_S}
            self._callers[hashed] = (now, caller)
        return caller

    def signing_key(self, key_id: uuid.UUID) -> tuple[Caller, str] | None:
        """The caller behind an unrevoked API key, and the key's stored hash: a secret only this server
        holds, to sign the links it gives that caller (the console's previews). None: unknown or revoked."""
        with self.db.transaction() as s:
            key = api_keys.live_key(s, key_id)
            return None if key is None else (Caller(key.owner, key.id), key.key_hash)

    # -- submitting ------------------------------------------------------------------------------------

    def admit(self, secret: str | None, idempotency_key: str | None = None) -> Ticket:
        """The early check of a submission, made from its key before its document is read
        (docvl/jobs/admission.py): Unauthenticated, or TooManySubmissions when the key has no room for
        another job in flight, or a ticket that holds a place until `submit` records the job or the
        caller releases it. A retry whose Idempotency-Key already made a job takes no place: it will be
        answered with that job. Reads the database at most once per key every FRESH_FOR_S."""
        decided = self.admission.admit(_given(secret), self.limits.max_in_flight)
        return self._admitted(decided, idempotency_key)

    def admit_from_memory(
        self, secret: str | None, idempotency_key: str | None = None, *, stale_ok: bool = False
    ) -> Ticket | None:
        """`admit` where it needs no database (a key read lately, or whenever if `stale_ok`: for a caller
        that waited for a read of it); None where it does."""
        decided = self.admission.from_memory(_given(secret), self.limits.max_in_flight, stale_ok=stale_ok)
        if decided is None or (isinstance(decided, Full) and idempotency_key):
            return None
        return self._admitted(decided, None)

    def _admitted(self, decided: Ticket | Full, idempotency_key: str | None) -> Ticket:
        if isinstance(decided, Ticket):
            return decided
        if idempotency_key:
            with self.db.transaction() as s:
                if jobs.find_by_idempotency_key(s, decided.caller.owner, idempotency_key) is not None:
                    return unlimited()
        raise self._too_many(decided.counted)

    def _key_state(self, secret: str) -> tuple[Caller, int]:
        """The key's caller and its jobs in flight, read together."""
        with self.db.transaction() as s:
            caller = api_keys.authenticate(s, secret)
            return caller, jobs.in_flight(s, caller.key_id)

    def submit(
        self,
        caller: Caller,
        request: JobRequest,
        *,
        document: BinaryIO | None = None,
        source: str | None = None,
        ticket: Ticket | None = None,
    ) -> tuple[JobView, bool]:
        """Check, store and queue a job for an uploaded document or one already in storage; returns (job,
        created). Nothing is stored or queued for a request that is refused. `ticket` (from `admit`) is
        marked recorded with the job; the caller releases it in any case (a no-op once recorded)."""
        if (document is None) == (source is None):
            raise InvalidInput("send the document as a file or name it with `source`, one of the two")
        with self._spooled(request, document, source) as spool:
            existing = self._replay(caller, request, spool.sha256)
            if existing is not None:
                return existing, False
            with self.db.transaction() as s:  # before storing anything; checked again below, under lock
                self._check_in_flight(s, caller, request.idempotency_key)
            with spool.path.open("rb") as fh:
                stored = self.store.put_input(fh, content_type=spool.media_type)
        with self.db.transaction() as s:
            self._check_in_flight(s, caller, request.idempotency_key)
            doc = jobs.get_or_create_document(
                s,
                sha256=stored.sha256,
                size_bytes=stored.size,
                media_type=spool.media_type,
                object_key=stored.key,
            )
            job, created = jobs.create_job(
                s,
                jobs.NewJob(
                    owner=caller.owner,
                    document_id=doc.id,
                    tasks=request.tasks,
                    options=request.options(),
                    priority=request.priority,
                    idempotency_key=request.idempotency_key,
                    request_fingerprint=request.fingerprint(spool.sha256),
                    api_key_id=caller.key_id,
                    trace=tracing.current_ids(),  # the submission's span: the job's spans go under it
                ),
            )
            view = JobView.of(job)
            if ticket is not None and created:
                ticket.recorded()  # before the commit: see docvl/jobs/admission.py
        if created:
            tracing.annotate(job_id=view.id)
            with logs.job_context(view.id):
                log.info("job submitted by %s: %s", caller.owner, ", ".join(t.value for t in view.tasks))
            self._start(view.id)
        return view, created

    def quote(
        self,
        caller: Caller,
        request: JobRequest,
        *,
        document: BinaryIO | None = None,
        source: str | None = None,
    ) -> QuoteView:
        """What the job would cost and when it would end, were it submitted now: the document is checked
        as `submit` checks it (the same refusals), an Office document converted to count its pages, and
        nothing is stored or queued."""
        if (document is None) == (source is None):
            raise InvalidInput("send the document as a file or name it with `source`, one of the two")
        with self._spooled(request, document, source) as spool:
            pages = spool.chosen_pages if spool.page_count else self._office_pages(spool, request)
        log.info("quote for %s: %d pages, %s", caller.owner, pages, ", ".join(t.value for t in request.tasks))
        return quote(self.db, request.tasks, pages, request.priority, self.pricing)

    def _office_pages(self, spool: Spooled, request: JobRequest) -> int:
        if self.converter is None:
            raise ConversionFailed("Office documents cannot be converted here to count their pages")
        conversion = self.converter.convert(spool.path, spool.media_type)
        try:
            with open_document(conversion.pdf, max_pages=self.limits.max_pages, pages=request.pages) as pdf:
                return len(pdf.chosen)
        finally:
            conversion.pdf.unlink(missing_ok=True)

    def _spooled(
        self, request: JobRequest, document: BinaryIO | None, source: str | None
    ) -> AbstractContextManager[Spooled]:
        if document is not None:
            return spooled(document, self.limits, self.spool_dir, request)
        assert source is not None
        bucket, key = parse_source(source, self.limits)
        try:
            store = self.source_store(bucket)
            found = store.stat(key)
        except Unavailable:
            raise
        except DocvlError as exc:  # no such bucket, access denied: the caller named something unreadable
            raise InvalidInput(f"cannot read {source}: {exc.message}") from exc
        except ValueError as exc:  # the S3 client refuses the bucket or key name itself
            raise InvalidInput(f"cannot read {source}: {exc}") from exc
        if found is None:
            raise InvalidInput(f"cannot read {source}: no such object (check the bucket and key)")
        if found.size > self.limits.max_upload_bytes:
            raise TooLarge(
                f"{source} is {found.size} bytes, over the limit of {self.limits.max_upload_bytes}"
            )
        return _spooled_object(store, key, self.limits, self.spool_dir, request)

    def _replay(self, caller: Caller, request: JobRequest, sha256: str) -> JobView | None:
        """The job an earlier submission with the same idempotency key made, if the request is the same;
        Conflict if it is not."""
        if request.idempotency_key is None:
            return None
        with self.db.transaction() as s:
            job = jobs.find_by_idempotency_key(s, caller.owner, request.idempotency_key)
            if job is None:
                return None
            if job.request_fingerprint != request.fingerprint(sha256):
                raise Conflict(
                    f"Idempotency-Key {request.idempotency_key!r} was used for another request (job "
                    f"{job.id}): use a new key for a new request"
                )
            return JobView.of(job)

    def _check_in_flight(self, s: Session, caller: Caller, idempotency_key: str | None) -> None:
        """Refuse a submission past the key's limit of jobs in flight: the exact check. The key's
        submissions are serialised until `s` ends, so that inside the submitting transaction concurrent
        ones cannot both slip in. A retry whose Idempotency-Key made a job meanwhile is not counted again
        (it returns that job)."""
        jobs.lock_key_submissions(s, caller.key_id)
        if idempotency_key and jobs.find_by_idempotency_key(s, caller.owner, idempotency_key):
            return
        in_flight = jobs.in_flight(s, caller.key_id)
        if in_flight >= self.limits.max_in_flight:
            raise self._too_many(in_flight)

    def _too_many(self, in_flight: int) -> TooManySubmissions:
        return TooManySubmissions(
            f"this API key has {in_flight} jobs queued, running or being submitted, the most it may: submit "
            f"again when one has finished (retry after {self.limits.retry_after_s} s)",
            retry_after_s=self.limits.retry_after_s,
        )

    def _start(self, job_id: uuid.UUID) -> None:
        """Ask for the job to be started, best effort: the job is committed, and one whose request is lost
        (broker or orchestrator away) is started by the reconciler once they are back."""
        try:
            self.dispatch.start_new_job()
        except Exception:  # whatever the broker's client raises, the committed job stands
            log.warning("could not ask for job %s to start; the reconciler will", job_id, exc_info=True)

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, caller: Caller, job_id: uuid.UUID) -> JobView:
        with self.db.transaction() as s:
            return JobView.of(jobs.get_job(s, job_id, owner=caller.owner))

    def result(self, caller: Caller, job_id: uuid.UUID) -> ResultView:
        with self.db.transaction() as s:
            job = jobs.get_job(s, job_id, owner=caller.owner)
            view = JobView.of(job)
            outputs = _output_keys(job.outputs)
            pages = [PageResult.of(r) for r in page_results.results(s, job_id)]
        files = {
            task: [
                OutputFile(
                    name=_file_name(key), key=key, url=self.store.presigned_get(key, self.presign_expiry_s)
                )
                for key in keys
            ]
            for task, keys in outputs.items()
        }
        return ResultView.of(view, files, pages)

    def open_output(self, caller: Caller, job_id: uuid.UUID, name: str) -> AbstractContextManager[BinaryIO]:
        """A stream of one of the job's document-level output files, by its file name."""
        with self.db.transaction() as s:
            outputs = _output_keys(jobs.get_job(s, job_id, owner=caller.owner).outputs)
        for keys in outputs.values():
            for key in keys:
                if _file_name(key) == name:
                    return self.store.open(key)
        raise NotFound(f"job {job_id} has no output named {name!r}")

    def pages(self, caller: Caller, job_id: uuid.UUID) -> list[PageView]:
        """The job's rendered pages so far, in order."""
        with self.db.transaction() as s:
            jobs.get_job(s, job_id, owner=caller.owner)
            return [PageView.of(p) for p in page_results.pages(s, job_id)]

    def page_result(self, caller: Caller, job_id: uuid.UUID, page: int, task: TaskKind) -> PageResult | None:
        """The page's result for `task` (page from 1), None until it is written."""
        with self.db.transaction() as s:
            jobs.get_job(s, job_id, owner=caller.owner)
            found = page_results.results(s, job_id, page_index=page - 1, task=task)
            return PageResult.of(found[0]) if found else None

    def open_page_image(
        self, caller: Caller, job_id: uuid.UUID, page: int
    ) -> tuple[str, AbstractContextManager[BinaryIO]]:
        """(media type, stream) of the page's rendered image (page from 1), as the model saw it."""
        with self.db.transaction() as s:
            jobs.get_job(s, job_id, owner=caller.owner)
            try:
                key = page_results.page(s, job_id, page - 1).image_key
            except NotFound:
                raise NotFound(f"job {job_id} has no page {page} (yet)") from None
        media_type = IMAGE_TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")
        return media_type, self.store.open(key)

    def poll_events(self, caller: Caller, job_id: uuid.UUID, after_id: int) -> tuple[list[EventView], bool]:
        """The events after `after_id`, and whether the job has ended with them (nothing more will come)."""
        with self.db.transaction() as s:
            status, found = jobs.events_and_status(s, job_id, owner=caller.owner, after_id=after_id)
        return [EventView.of_row(*row) for row in found], status.finished

    def watch(
        self,
        caller: Caller,
        job_id: uuid.UUID,
        *,
        after_id: int = 0,
        poll_s: float = 0.5,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> Iterator[EventView]:
        """The job's events as they happen, from after `after_id`, until the job has ended (the stream
        stops after the final status event) or `keep_going` says stop: the loop of watch.py, for a caller
        with a thread of its own (SSE runs the same loop async)."""
        self.get(caller, job_id)  # NotFound before the stream starts
        yield from follow_blocking(
            self, caller, job_id, after_id=after_id, poll_s=poll_s, keep_going=keep_going
        )

    def subscribed(self, job_id: uuid.UUID, wake: Callable[[], None]) -> AbstractContextManager[None]:
        """While the block runs, `wake()` is called as soon as the job has new events (when this service
        listens for them; otherwise never, and streams find them at their next poll)."""
        if self.notifier is None:
            return nullcontext()
        return self.notifier.subscribed(job_id, wake)

    def list(
        self, caller: Caller, *, status: JobStatus | None = None, cursor: str | None = None, limit: int = 50
    ) -> JobPage:
        if not 1 <= limit <= 500:
            raise InvalidInput(f"limit {limit} is out of range: use 1 to 500")
        with self.db.transaction() as s:
            found = jobs.list_jobs(
                s, owner=caller.owner, status=status, limit=limit + 1, before=_decode_cursor(cursor)
            )
            views = [JobView.of(j) for j in found[:limit]]
        more = len(found) > limit
        return JobPage(jobs=views, next_cursor=_encode_cursor(views[-1]) if more and views else None)

    # -- cancelling ------------------------------------------------------------------------------------

    def cancel(self, caller: Caller, job_id: uuid.UUID) -> JobView:
        """Cancel the job (its queued page tasks are revoked, its flow stops); a finished job is returned
        unchanged."""
        finish.cancel(Context(self.db, self.store), job_id, self.dispatch, owner=caller.owner)
        return self.get(caller, job_id)


def _given(secret: str | None) -> str:
    if not secret:
        raise Unauthenticated("this call needs an API key: send `Authorization: Bearer <key>`")
    return secret


def _output_keys(outputs: dict[str, Any]) -> dict[str, list[str]]:
    """The job's document outputs, task -> object keys (a task with one file stores its key alone)."""
    return {task: [keys] if isinstance(keys, str) else list(keys) for task, keys in outputs.items()}


def _file_name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _encode_cursor(job: JobView) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the cursor is not one this API gave: pass `next_cursor` unchanged") from exc


def _spooled_object(
    store: ObjectStore, key: str, limits: Limits, directory: Path | None, request: JobRequest
) -> AbstractContextManager[Spooled]:
    @contextmanager
    def opened() -> Iterator[Spooled]:
        with store.open(key) as stream, spooled(stream, limits, directory, request) as spool:
            yield spool

    return opened()
