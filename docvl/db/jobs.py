"""Repository of jobs, their documents and their events (a job's pages and results: db/pages.py). Every
function runs in the caller's transaction.

Writes are idempotent where a retry can repeat them: a document per sha256, a job per (owner, idempotency
key).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, literal, select, text, tuple_
from sqlalchemy import insert as standard_insert
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from docvl.db import notifications
from docvl.db.models import Document, Job, JobEvent
from docvl.errors import Conflict, InvalidInput, NotFound
from docvl.job_status import JobStatus, check_transition
from docvl.tasks import TaskKind


@dataclass(frozen=True)
class NewJob:
    owner: str
    document_id: uuid.UUID
    tasks: list[TaskKind]
    options: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    api_key_id: uuid.UUID | None = None
    trace: tuple[str, str] | None = None  # (trace id, traceparent) of the submission, when traced


@dataclass(frozen=True)
class CancelOutcome:
    job: Job
    changed: bool
    message: str


# -- documents ------------------------------------------------------------------------------------------


def get_or_create_document(
    session: Session, *, sha256: str, size_bytes: int, media_type: str, object_key: str
) -> Document:
    """The document with this content hash; the same content uploaded twice is one row."""
    found = session.execute(select(Document).where(Document.sha256 == sha256)).scalar_one_or_none()
    if found is not None:  # seen before: no INSERT (PostgreSQL's ON CONFLICT form is compiled every time)
        return found
    session.execute(
        insert(Document)
        .values(
            id=uuid.uuid4(),
            sha256=sha256,
            size_bytes=size_bytes,
            media_type=media_type,
            object_key=object_key,
        )
        .on_conflict_do_nothing(index_elements=[Document.sha256])
    )
    return session.execute(select(Document).where(Document.sha256 == sha256)).scalar_one()


def reuse_allowed(job: Job) -> bool:
    """The job's own `reuse` option: False when it was submitted with reuse=false."""
    return job.options.get("reuse") != "false"


def document_of(session: Session, job: Job) -> Document:
    return session.execute(_DOCUMENT, {"id": job.document_id}).scalar_one()


_DOCUMENT = select(Document).where(Document.id == bindparam("id"))  # made once: every job's start reads it


def set_page_count(session: Session, document_id: uuid.UUID, count: int) -> None:
    session.execute(
        text("UPDATE documents SET page_count = :n WHERE id = :id"), {"n": count, "id": document_id}
    )


def set_converted(session: Session, document_id: uuid.UUID, key: str) -> None:
    """Record where an Office document's PDF is stored."""
    session.execute(
        text("UPDATE documents SET converted_key = :key WHERE id = :id"), {"key": key, "id": document_id}
    )


# -- jobs -----------------------------------------------------------------------------------------------


def create_job(session: Session, new: NewJob) -> tuple[Job, bool]:
    """(job, created). With an idempotency key, the same key and request return the first job; the same
    key with a different request (fingerprint) is a Conflict."""
    if not new.tasks:
        raise InvalidInput("a job needs at least one task")
    row = {
        "id": uuid.uuid4(),
        "owner": new.owner,
        "document_id": new.document_id,
        "tasks": [t.value for t in dict.fromkeys(new.tasks)],
        "options": new.options,
        "priority": new.priority,
        "status": JobStatus.QUEUED.value,
        "idempotency_key": new.idempotency_key,
        "request_fingerprint": new.request_fingerprint,
        "api_key_id": new.api_key_id,
        "trace_id": new.trace[0] if new.trace else None,
        "traceparent": new.trace[1] if new.trace else None,
    }
    if new.idempotency_key is None:  # nothing to conflict with: a plain INSERT (its compiled form is cached)
        job = session.scalars(standard_insert(Job).returning(Job), [row]).one()
        write_event(session, job.id, "status", JobStatus.QUEUED)
        return job, True
    inserted = session.execute(
        insert(Job)
        .values(**row)
        .on_conflict_do_nothing(index_elements=[Job.owner, Job.idempotency_key])
        .returning(Job.id)
    ).scalar_one_or_none()
    if inserted is None:
        existing = session.execute(
            select(Job).where(Job.owner == new.owner, Job.idempotency_key == new.idempotency_key)
        ).scalar_one()
        if existing.request_fingerprint != new.request_fingerprint:
            raise Conflict(
                f"idempotency key {new.idempotency_key!r} was used for another request (job {existing.id}): "
                "use a new key for a new request"
            )
        return existing, False
    write_event(session, inserted, "status", JobStatus.QUEUED)
    return get_job(session, inserted), True


def find_by_idempotency_key(session: Session, owner: str, key: str) -> Job | None:
    return session.execute(
        select(Job).where(Job.owner == owner, Job.idempotency_key == key)
    ).scalar_one_or_none()


def get_job(session: Session, job_id: uuid.UUID, *, owner: str | None = None, lock: bool = False) -> Job:
    """The job; NotFound when it does not exist or belongs to another owner."""
    job = session.execute(_JOB_LOCKED if lock else _JOB, {"id": job_id}).scalar_one_or_none()
    if job is None or (owner is not None and job.owner != owner):
        raise NotFound(f"no job {job_id}")
    return job


_JOB = select(Job).where(Job.id == bindparam("id")).execution_options(populate_existing=True)  # made once
_JOB_LOCKED = _JOB.with_for_update()


def list_jobs(
    session: Session,
    *,
    owner: str,
    status: JobStatus | None = None,
    limit: int = 1000,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[Job]:
    """The owner's jobs, newest first; `before` (created_at, id) continues after the last one seen."""
    query = select(Job).where(Job.owner == owner).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status.value)
    if before is not None:
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(literal(before[0]), literal(before[1])))
    return list(session.execute(query).scalars())


def lock_key_submissions(session: Session, api_key_id: uuid.UUID) -> None:
    """Serialise the key's submissions until the transaction ends: what is read after it (in_flight, an
    idempotency key) counts every job inserted by a submission that held it before."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"submit:{api_key_id}"})


def in_flight(session: Session, api_key_id: uuid.UUID) -> int:
    """The key's jobs queued or running (without a lock: a hint, exact only under lock_key_submissions)."""
    return session.execute(_IN_FLIGHT, {"key": api_key_id}).scalar_one()


_IN_FLIGHT = select(func.count()).where(  # made once: every submission asks
    Job.api_key_id == bindparam("key"), Job.status.in_([s.value for s in JobStatus if not s.finished])
)


def transition(
    session: Session,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    locked: Job | None = None,
) -> Job:
    """Move the job to `target` and record the event. Raises IllegalTransition (writing nothing) when the
    status machine forbids it; moving to the status it already has changes nothing. `locked`: the job as
    the caller read it with lock=True in this transaction (saves reading it again)."""
    job = locked if locked is not None else get_job(session, job_id, lock=True)
    current = JobStatus(job.status)
    if current is target:
        return job
    check_transition(current, target)
    job.status = target.value
    job.updated_at = func.now()
    if target is JobStatus.RUNNING:
        job.started_at = func.now()
    if target.finished:
        job.finished_at = func.now()
    if error_code is not None:
        job.error_code, job.error_message = error_code, error_message
    data = {"error": {"code": error_code, "message": error_message}} if error_code else {}
    write_event(session, job_id, "status", target, data)
    session.flush()
    session.refresh(job)
    return job


def cancel(session: Session, job_id: uuid.UUID, *, owner: str | None = None) -> CancelOutcome:
    """Cancel a job that has not finished; for a finished one, change nothing and say so."""
    job = get_job(session, job_id, owner=owner, lock=True)
    status = JobStatus(job.status)
    if status.finished:
        return CancelOutcome(job, False, f"job {job_id} has already finished ({status}): nothing to cancel")
    job = transition(session, job_id, JobStatus.CANCELLED, locked=job)
    return CancelOutcome(job, True, f"job {job_id} cancelled")


def set_outputs(job: Job, outputs: dict[str, Any]) -> None:
    """Record the document-level outputs on the job, read with lock=True (written with the session)."""
    job.outputs = outputs
    job.updated_at = func.now()


# -- events ---------------------------------------------------------------------------------------------


def events(session: Session, job_id: uuid.UUID, *, after_id: int = 0) -> list[JobEvent]:
    """The job's events in order, those after `after_id` (for resuming a stream)."""
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after_id).order_by(JobEvent.id)
    return list(session.execute(query).scalars())


def events_and_status(
    session: Session, job_id: uuid.UUID, *, owner: str, after_id: int = 0
) -> tuple[JobStatus, list[tuple[Any, ...]]]:
    """The job's status and its events after `after_id` (id, kind, status, data, created_at), read in one
    statement (an event stream looks at both several times per job); NotFound as get_job."""
    rows = session.execute(_EVENTS_AND_STATUS, {"job_id": job_id, "owner": owner, "after": after_id}).all()
    if not rows:
        raise NotFound(f"no job {job_id}")
    return JobStatus(rows[0][0]), [tuple(row[1:]) for row in rows if row[1] is not None]


_EVENTS_AND_STATUS = (  # made once: each event stream asks several times per job
    select(Job.status, JobEvent.id, JobEvent.kind, JobEvent.status, JobEvent.data, JobEvent.created_at)
    .select_from(Job)
    .outerjoin(JobEvent, and_(JobEvent.job_id == Job.id, JobEvent.id > bindparam("after")))
    .where(Job.id == bindparam("job_id"), Job.owner == bindparam("owner"))
    .order_by(JobEvent.id)
)


def add_event(session: Session, job_id: uuid.UUID, kind: str, data: dict[str, Any]) -> None:
    """An event that is not a status change (e.g. a webhook attempt), stamped with the current status."""
    job = get_job(session, job_id)
    write_event(session, job_id, kind, JobStatus(job.status), data)


# SQLAlchemy caches the compiled form of a standard INSERT, never of PostgreSQL's (ON CONFLICT): an event
# is written several times per job, and needs no ON CONFLICT
_INSERT_EVENT = standard_insert(JobEvent.__table__)  # type: ignore[arg-type]


def write_events(
    session: Session, job_id: uuid.UUID, events: list[tuple[str, JobStatus, dict[str, Any]]]
) -> None:
    """Append several events (kind, status, data) in one statement, and wake the streams once."""
    if events:
        session.execute(
            _INSERT_EVENT,
            [
                {"job_id": job_id, "kind": kind, "status": status.value, "data": data}
                for kind, status, data in events
            ],
        )
        notifications.notify(session, job_id)


def write_event(
    session: Session, job_id: uuid.UUID, kind: str, status: JobStatus, data: dict[str, Any] | None = None
) -> None:
    """Append an event stamped with `status` (the caller has it), and wake the streams that follow the job."""
    session.execute(
        _INSERT_EVENT,
        {"job_id": job_id, "kind": kind, "status": status.value, "data": data or {}},
    )
    notifications.notify(session, job_id)
